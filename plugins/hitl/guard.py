"""The approval is the only key: what a step after a gate checks before it acts.

Anyone whose Airflow role may edit task instances can mark a gate task ``success`` and write its
XCom through Airflow's REST API or UI. So nothing after a gate trusts the gate's state or XCom:
it asks the decision store for the approved request of this gate in this run, for the output the
reviewer saw, and takes the approved (maybe edited) output from there. Without one the step fails
with a one-line reason, no retries, and the refusal is audited. A store that cannot be reached is
waited out (``hitl.store.outage``, bounded): an approved run does not fail on an outage, and nothing
acts before its approval was read.

Spec steps do this by themselves (``hitl.steps.operator``). Hand-written DAGs call
``approved_output`` in the task that acts, or pass ``gate.output`` of an ``ApprovalSensor`` to a
``@task`` (it resolves through this module too).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from hitl.store import APPROVED, Store, content_hash, get_store
from hitl.store.outage import through_outage

log = logging.getLogger(__name__)

_UNSET: Any = object()


class GateNotApproved(Exception):
    """A step after a gate was about to act without a recorded approval. ``str()`` is the one-line reason."""


def check_approval(
    *,
    dag_id: str,
    run_id: str,
    gate_task_id: str,
    map_index: int = -1,
    step_output: Any = _UNSET,
    acting_task: str | None = None,
    store: Store | None = None,
    binds: Sequence[str] = (),
    output_now: Callable[[str], Any] | None = None,
) -> Any:
    """The approved output of gate ``gate_task_id`` in this run, from the decision store.

    ``step_output``: the gated step's output as it is now; when given, it must be the output the
    reviewer approved (its hash), or the approval does not count for it.
    Raises ``GateNotApproved`` (audited as ``gate_bypass_refused``) when there is no such approval.

    ``binds``: ungated steps whose outputs the acting step reads, and ``output_now(step)`` their outputs as
    they are now. Each must be what the request recorded when the reviewer saw it (``Store.bound_inputs``);
    one that changed since, or that the approval never covered, refuses the step, audited as
    ``bound_input_refused``: what the reviewer saw and what the step acts on are the same.
    """
    store = store or get_store()
    found = store  # for the closures below (mypy: not None)
    where = f"gate {gate_task_id} in run {run_id}" + (f" (item {map_index})" if map_index >= 0 else "")
    req = through_outage(
        f"checking the approval of {where}", lambda: found.current_for_gate(dag_id, run_id, gate_task_id, map_index)
    )
    reason = None
    if req is None or req.status != APPROVED:
        state = f" (request {req.id} is {req.status})" if req is not None else " (no approval request was made)"
        reason = f"no recorded approval for gate {gate_task_id} in run {run_id}{state}"
    elif step_output is not _UNSET and content_hash(step_output) != req.output_hash:
        reason = (
            f"no recorded approval for gate {gate_task_id} in run {run_id}: the output of step {req.step_id} "
            f"changed after request {req.id} was approved"
        )
    event = "gate_bypass_refused"
    if reason is None and req is not None and binds:
        assert output_now is not None, "binds need output_now"
        approved = req
        recorded = through_outage(f"reading what {where} bound", lambda: found.bound_inputs(approved.id)) or {}
        for step in binds:
            if step not in recorded:
                reason = (
                    f"step {acting_task or '?'} reads the output of step {step}, which request {req.id} of {where} "
                    "did not bind: the approval does not cover it"
                )
            elif content_hash(output_now(step)) != content_hash(recorded[step]):
                reason = (
                    f"the output of step {step} changed after request {req.id} of {where} was reviewed: "
                    "the approval covers what the reviewer saw, not the new value"
                )
            if reason is not None:
                event = "bound_input_refused"
                break
    if reason is not None:
        refuse(
            found,
            req.id if req is not None else None,
            event,
            reason,
            dag_id=dag_id,
            run_id=run_id,
            gate=gate_task_id,
            map_index=map_index,
            acting_task=acting_task,
        )
    assert req is not None
    return req.final_output


def refuse(store: Store, request_id: int | None, event: str, reason: str, **detail: Any) -> NoReturn:
    """Audit the refusal (waiting out an outage: the audit line is part of the refusal), log it, and raise it."""
    through_outage(
        f"auditing {event} ({detail.get('acting_task') or '?'})",
        lambda: store.audit(request_id, event, None, **detail, reason=reason),
    )
    log.error("%s", reason)
    raise GateNotApproved(reason)


def check_recorded_output(
    *,
    dag_id: str,
    run_id: str,
    step_task_id: str,
    value: Any,
    map_index: int = -1,
    acting_task: str | None = None,
    gate_task_id: str | None = None,
    store: Store | None = None,
) -> None:
    """A step after a gate reads the output of another step after a gate (not reviewed itself): it must be what that
    step returned (recorded as it finished, ``record_output``), or it was changed in between, unseen by anyone.

    Raises ``GateNotApproved`` (audited as ``step_output_refused`` on the request of ``gate_task_id``, the approval
    the chain comes from) on a difference or a missing record."""
    store = store or get_store()
    found = store
    recorded = through_outage(
        f"reading what step {step_task_id} returned in run {run_id}",
        lambda: (
            found.step_output_hash(dag_id, run_id, step_task_id, map_index)
            or (found.step_output_hash(dag_id, run_id, step_task_id, -1) if map_index >= 0 else None)
        ),
    )
    if recorded is None:
        reason = (
            f"step {acting_task or '?'} reads the output of step {step_task_id} in run {run_id}, which that step never"
            " recorded after its approval: the value did not come from the approved chain"
        )
    elif recorded != content_hash(value):
        reason = (
            f"the output of step {step_task_id} in run {run_id} changed after the step returned it: step"
            f" {acting_task or '?'} acts on what the approved chain produced, not on a changed value"
        )
    else:
        return
    approval = (
        through_outage(
            f"finding the approval of {gate_task_id}",
            lambda: found.current_for_gate(dag_id, run_id, gate_task_id, map_index),
        )
        if gate_task_id
        else None
    )
    refuse(
        found,
        approval.id if approval is not None else None,
        "step_output_refused",
        reason,
        dag_id=dag_id,
        run_id=run_id,
        source=step_task_id,
        map_index=map_index,
        acting_task=acting_task,
    )


def record_output(
    *, dag_id: str, run_id: str, task_id: str, value: Any, map_index: int = -1, store: Store | None = None
) -> None:
    """Record what a step after a gate returned, for the later steps that read it (``check_recorded_output``)."""
    found = store or get_store()
    through_outage(
        f"recording what step {task_id} returned in run {run_id}",
        lambda: found.record_step_output(dag_id, run_id, task_id, map_index, content_hash(value)),
    )


def approved_output(
    gate_task_id: str, context: Any = None, *, step_id: str | None = None, binds: Sequence[str] = ()
) -> Any:
    """For hand-written DAGs: the approved output of ``gate_task_id`` in the running DAG run.

    Call it in the task that acts (sends, publishes, commits). ``step_id``: the gated task, whose
    current output must be what was approved. ``binds``: the other (ungated) tasks whose outputs this task also
    reads; the gate must have been given the same ``binds`` (``ApprovalSensor(binds=...)``), so the reviewer saw
    them, and each must be unchanged since. Fails the task (no retries) without a recorded approval.
    """
    from airflow.sdk.exceptions import AirflowFailException

    from hitl.upstream import output_of

    if context is None:
        from airflow.sdk import get_current_context

        context = get_current_context()
    ti = context["ti"]
    map_index = ti.map_index if ti.map_index is not None and ti.map_index >= 0 else -1
    try:
        return check_approval(
            dag_id=ti.dag_id,
            run_id=ti.run_id,
            gate_task_id=gate_task_id,
            map_index=map_index,
            step_output=output_of(context, step_id) if step_id else _UNSET,
            acting_task=ti.task_id,
            binds=binds,
            output_now=lambda task_id: output_of(context, task_id),
        )
    except GateNotApproved as exc:
        raise AirflowFailException(str(exc)) from None
