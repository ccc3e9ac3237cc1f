"""The decision service: the one place a decision is written.

Every channel (review page, CLI, Slack) calls ``decide``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Literal

from hitl.identity import Reviewer, describe_approvers, may_decide
from hitl.outputs import field_errors
from hitl.store import APPROVED, PENDING, REJECTED, SUPERSEDED, ApprovalRequest, Store

log = logging.getLogger(__name__)

Action = Literal["approve", "reject"]
END_GATE_NOW = True  # benchmarks/decision_latency.py --trigger-only turns it off to time the trigger path


class DecisionError(Exception):
    """A refused decision; ``str()`` is the one-line reason shown to the reviewer."""

    code = "refused"


class NotFound(DecisionError):
    code = "not_found"


class AlreadyDecided(DecisionError):
    code = "already_decided"


class NotAllowed(DecisionError):
    code = "not_allowed"


class StaleOutput(DecisionError):
    code = "stale"


class InvalidEdit(DecisionError):
    code = "invalid_edit"

    def __init__(self, errors: dict[str, str]) -> None:
        self.errors = errors
        super().__init__("invalid edit: " + "; ".join(errors.values()))


@dataclass(frozen=True)
class Outcome:
    request: ApprovalRequest
    final: bool  # False while a quorum still waits for more approvals
    message: str


def already_decided_message(req: ApprovalRequest) -> str:
    if req.status == SUPERSEDED:
        return f"request {req.id} was superseded by request {req.superseded_by}: the step's output changed"
    when = req.decided_at.strftime("%Y-%m-%d %H:%M:%S UTC") if req.decided_at else "an unknown time"
    return f"already decided by {req.decided_by} at {when} ({req.status})"


def decide(
    store: Store,
    request_id: int,
    reviewer: Reviewer,
    action: Action,
    *,
    comment: str | None = None,
    edited_output: Any | None = None,
    seen_hash: str | None = None,
    channel: str = "api",
) -> Outcome:
    """Approve, reject, or edit & approve a pending request, after checking the reviewer may.

    ``seen_hash`` is the output hash the reviewer looked at: a decision on content that has
    since changed is refused. Refusals are audited too.
    """
    req = store.get(request_id)
    if req is None:
        raise NotFound(f"no approval request {request_id}")

    def refuse(exc: DecisionError) -> DecisionError:
        store.audit(req.id, "refused", reviewer.name, action=action, reason=str(exc), channel=channel)
        return exc

    if req.status != PENDING:
        raise refuse(AlreadyDecided(already_decided_message(req)))
    if action not in ("approve", "reject"):
        raise refuse(DecisionError(f"unknown action {action!r}"))
    if not may_decide(reviewer, req.approvers):
        raise refuse(
            NotAllowed(
                f"{reviewer.name} is not an approver of request {req.id} "
                f"({req.dag_id}.{req.step_id}; approvers: {describe_approvers(req.approvers)})"
            )
        )
    if action == "approve" and not req.allow_self_approval and req.triggered_by == reviewer.name:
        raise refuse(NotAllowed(f"{reviewer.name} triggered this run and may not approve it (self-approval is off)"))
    if seen_hash and seen_hash != req.output_hash:
        raise refuse(
            StaleOutput(f"the output of request {req.id} changed since you opened it: reload and review again")
        )
    if action == "reject" and not (comment or "").strip():
        raise refuse(DecisionError("a reason is required to reject"))
    if edited_output is not None:
        if action != "approve":
            raise refuse(DecisionError("an edit can only be approved"))
        if req.min_approvals > 1:  # approvers would be approving different versions
            raise refuse(
                DecisionError(f"edit & approve is not available when {req.min_approvals} approvals are needed")
            )
        errors = field_errors(req.output_kind, edited_output)
        if errors:
            raise refuse(InvalidEdit(errors))
        if edited_output == req.output:
            edited_output = None  # nothing changed: a plain approval

    with store.writing() as conn:
        if action == "reject":
            store.add_vote(conn, req.id, reviewer.name, REJECTED)
            won = store.close_request(
                conn, req.id, status=REJECTED, user=reviewer.name, comment=comment, edited_output=None
            )
            final = True
        else:
            if not store.add_vote(conn, req.id, reviewer.name, APPROVED):
                won, final = False, False
            elif store.count_votes(conn, req.id, APPROVED) < req.min_approvals:
                won, final = True, False
            else:
                won = store.close_request(
                    conn, req.id, status=APPROVED, user=reviewer.name, comment=comment, edited_output=edited_output
                )
                final = True
        if won:
            event = "rejected" if action == "reject" else ("edited" if edited_output is not None else "approved")
            if action == "approve" and not final:
                event = "approval_vote"
            store.record_audit(
                conn,
                req.id,
                event,
                reviewer.name,
                {
                    "channel": channel,
                    "comment": comment,
                    **({"edited_output": edited_output} if edited_output is not None else {}),
                },
            )
    if not won:
        current = store.get(req.id)
        assert current is not None
        if current.status == PENDING:
            raise refuse(
                AlreadyDecided(f"{reviewer.name} already approved request {req.id}; waiting for more approvers")
            )
        raise refuse(AlreadyDecided(already_decided_message(current)))
    current = store.get(req.id)
    assert current is not None
    if not final:
        approvals = len([v for v in store.votes(req.id) if v[1] == APPROVED])
        return Outcome(current, False, f"approval {approvals} of {req.min_approvals} recorded for request {req.id}")
    log.info("request %s %s by %s via %s", req.id, current.status, reviewer.name, channel)
    end_gate_now(current)
    if current.status == REJECTED:
        _note_rejection_on_run(current)
    return Outcome(current, True, f"request {req.id} {current.status} by {reviewer.name}")


def end_gate_now(req: ApprovalRequest) -> bool:
    """End the parked gate task from this process, as Airflow's own HITL endpoint does.

    Where this process may use Airflow's database (the api-server behind the review page,
    the CLI), the decision reaches the task at once instead of on the trigger's next look,
    and even before a freshly parked trigger has been loaded by the triggerer. Elsewhere,
    or if anything goes wrong, the trigger delivers the same event. Airflow applies only
    the first of the two: it ends deferred task instances only.
    """
    if not END_GATE_NOW:
        return False
    try:
        from airflow.models.taskinstance import TaskInstance
        from airflow.models.trigger import handle_event_submit
        from airflow.utils.session import create_session
        from airflow.utils.state import TaskInstanceState
        from sqlalchemy import select

        from hitl.trigger import end_event

        with create_session() as session:
            ti = session.scalars(
                select(TaskInstance)
                .where(
                    TaskInstance.dag_id == req.dag_id,
                    TaskInstance.run_id == req.run_id,
                    TaskInstance.task_id == req.gate_task_id,
                    TaskInstance.map_index == req.map_index,
                    TaskInstance.state == TaskInstanceState.DEFERRED,
                )
                .with_for_update()
            ).one_or_none()
            if ti is None:
                return False
            event = end_event(
                request_id=req.id,
                status=req.status,
                decided_by=req.decided_by,
                decided_at=req.decided_at.isoformat() if req.decided_at else None,
                comment=req.comment,
                final_output=req.final_output,
                edited=req.edited_output is not None,
            )
            handle_event_submit(event, task_instance=ti, session=session)
        log.info("request %s: ended gate task %s/%s at once", req.id, req.run_id, req.gate_task_id)
        return True
    except Exception as exc:  # the trigger delivers the decision instead
        log.debug("request %s: leaving the gate to its trigger (%s)", req.id, exc)
        return False


def _note_rejection_on_run(req: ApprovalRequest) -> None:
    """Best effort: put who rejected, when and why on the DAG run's note, where this process may use Airflow's DB.

    Channels run in the api-server or the CLI, which may; task and trigger code may not.
    """
    try:
        from airflow.models.dagrun import DagRun
        from airflow.utils.session import create_session

        with create_session() as session:
            run = session.query(DagRun).filter(DagRun.dag_id == req.dag_id, DagRun.run_id == req.run_id).one_or_none()
            if run is not None:
                when = req.decided_at.strftime("%Y-%m-%d %H:%M UTC") if req.decided_at else ""
                run.note = f"Rejected at step {req.step_id} by {req.decided_by} at {when}: {req.comment}"
    except Exception as exc:  # the decision stands whatever happens here
        log.debug("could not set the run note: %s", exc)
