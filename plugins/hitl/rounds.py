"""Rounds of review: what a re-run step knows of the feedback that sent its earlier drafts back.

After "request changes" (``hitl.decisions``) the gated step runs again in the same DAG run. Its config
is rendered with a ``review`` variable, read from the decision store by (DAG, run, gate task):

- ``review.feedback``: the latest reviewer feedback ("" on the first draft);
- ``review.round``: the number of the draft being made (1, then 2 after the first change request, ...);
- ``review.rounds``: every earlier round, oldest first, each ``{feedback, draft, by, at, request_id}``.

Spec steps get it by themselves (``hitl.steps.operator``); ``aiAction`` also adds the feedback to a
model's prompt. Hand-written DAGs call ``review_feedback(gate, context)`` in the gated task.
"""

from __future__ import annotations

from typing import Any

from hitl.store import Store, get_store

FIRST_ROUND: dict[str, Any] = {"round": 1, "feedback": "", "rounds": []}


def review_of(
    dag_id: str, run_id: str, gate_task_id: str, map_index: int = -1, *, store: Store | None = None
) -> dict[str, Any]:
    """The ``review`` variable for the gated step of ``gate_task_id`` in this run.

    Read through a store outage (bounded, ``hitl.store.outage``): a re-run step must not make its next
    draft without the feedback it answers, nor fail for a store that is back a minute later.
    """
    from hitl.store.outage import through_outage

    found = store or get_store()
    earlier = through_outage(
        f"reading the review rounds of gate {gate_task_id} in run {run_id}",
        lambda: found.rounds(dag_id, run_id, gate_task_id, map_index),
    )
    if not earlier:
        return {**FIRST_ROUND, "rounds": []}
    rounds = [
        {
            "feedback": r.comment or "",
            "draft": r.output,
            "by": r.decided_by,
            "at": r.decided_at.isoformat() if r.decided_at else None,
            "request_id": r.id,
            "revision": r.revision,
        }
        for r in earlier
    ]
    return {"round": earlier[-1].revision + 1, "feedback": rounds[-1]["feedback"], "rounds": rounds}


def review_feedback(gate: Any, context: Any = None) -> dict[str, Any]:
    """For hand-written DAGs: ``{feedback, round, rounds}`` for the gated task, in the running DAG run.

    ``gate``: the ``ApprovalSensor`` (or its task id) that reviews this task's output. Call it in the
    gated task; on the first draft ``feedback`` is "" and ``round`` is 1::

        review = review_feedback("draft__approval")
        prompt = base_prompt + (f"\\nReviewer feedback: {review['feedback']}" if review["feedback"] else "")
    """
    if context is None:
        from airflow.sdk import get_current_context

        context = get_current_context()
    ti = context["ti"]
    gate_id = gate if isinstance(gate, str) else gate.task_id
    map_index = ti.map_index if ti.map_index is not None and ti.map_index >= 0 else -1
    return review_of(ti.dag_id, ti.run_id, gate_id, map_index)


def feedback_prompt(review: dict[str, Any]) -> str:
    """What a model is told after its draft was sent back: the feedback, and the draft it answers."""
    import json

    if not review.get("feedback"):
        return ""
    last = review["rounds"][-1] if review.get("rounds") else {}
    draft = last.get("draft")
    shown = draft if isinstance(draft, str) else json.dumps(draft, ensure_ascii=False, indent=2)
    return (
        f"\n\nA reviewer sent your previous draft back (this is draft {review.get('round', 2)}). "
        f"Their feedback:\n{review['feedback']}\n\nYour previous draft:\n{shown}\n\n"
        "Write a new draft that addresses the feedback."
    )
