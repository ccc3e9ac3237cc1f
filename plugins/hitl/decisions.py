"""The decision service: the one place a decision is written.

Every channel (review page, JSON API, CLI, Slack) calls ``decide``. It checks who may decide,
what may be approved, and the request's deadline; writes the decision under a row lock; then
ends the parked gate at once where it can (``hitl.gate_end.DirectRoute``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Literal

from hitl.gate_end import DirectRoute
from hitl.identity import Reviewer, describe_approvers, may_decide
from hitl.outputs import field_errors, sendable_errors
from hitl.store import APPROVED, PENDING, REJECTED, SUPERSEDED, ApprovalRequest, Store, utcnow

log = logging.getLogger(__name__)


Action = Literal["approve", "reject"]
MAX_COMMENT = 2000  # characters of a reason or comment, on every channel


class DecisionError(Exception):
    """A refused decision; ``str()`` is the one-line reason shown to the reviewer."""

    code = "refused"


class NotFound(DecisionError):
    """No such request (404)."""

    code = "not_found"


class AlreadyDecided(DecisionError):
    """The request is closed (decided, expired, timed out, superseded), or this approver already voted (409)."""

    code = "already_decided"


class NotAllowed(DecisionError):
    """The reviewer may not decide this request (403)."""

    code = "not_allowed"


class StaleOutput(DecisionError):
    """The output changed since the reviewer opened it (409)."""

    code = "stale"


class InvalidEdit(DecisionError):
    """An edit, or the output itself, cannot be acted on; ``errors`` maps each field to why (400)."""

    code = "invalid_edit"

    def __init__(self, errors: dict[str, str]) -> None:
        self.errors = errors
        super().__init__("invalid edit: " + "; ".join(errors.values()))


@dataclass(frozen=True)
class Outcome:
    """What ``decide`` did: the request as it now stands, and the message for the reviewer."""

    request: ApprovalRequest
    final: bool  # False while a quorum still waits for more approvals
    message: str
    gate_ended: bool = False  # True when this process ended the parked gate (DirectRoute), else its trigger will


def already_decided_message(req: ApprovalRequest) -> str:
    """The one line a reviewer reads when the request is closed already."""
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
        store.audit(req.id, "refused", reviewer.name, action=str(action)[:20], reason=str(exc), channel=channel)
        return exc

    if comment is not None and not isinstance(comment, str):
        raise refuse(DecisionError("the reason must be text"))
    if comment is not None and len(comment) > MAX_COMMENT:
        raise refuse(DecisionError(f"the reason is too long ({len(comment)} characters; at most {MAX_COMMENT})"))
    if req.status != PENDING:
        raise refuse(AlreadyDecided(already_decided_message(req)))
    if action not in ("approve", "reject"):
        raise refuse(DecisionError(f"unknown action {str(action)[:40]!r}: approve or reject"))
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
    if action == "approve" and edited_output is None:
        problems = sendable_errors(req.output_kind, req.output)
        if problems:  # refused now, with the reason, rather than failing downstream
            raise refuse(InvalidEdit({k: f"cannot be acted on as it is: {v}" for k, v in problems.items()}))

    overdue: str | None = None
    with store.writing() as conn:
        # The row lock serializes every decision on this request (a quorum's votes are counted one
        # at a time), and a vote is only ever written while the request is pending.
        status = store.lock_status(conn, req.id)
        if status != PENDING:
            won, final = False, True
        elif req.overdue(utcnow()):
            overdue = store.close_overdue(conn, req, utcnow())
            won, final = False, True
        elif action == "reject":
            store.add_vote(conn, req.id, reviewer.name, REJECTED)
            won = store.close_request(
                conn, req.id, status=REJECTED, user=reviewer.name, comment=comment, edited_output=None
            )
            final = True
        elif not store.add_vote(conn, req.id, reviewer.name, APPROVED):
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
    if overdue is not None:
        closed = store.get(req.id)
        if closed is not None:
            DirectRoute.end(closed)
        raise refuse(AlreadyDecided(f"request {req.id} {overdue}"))
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
    ended = DirectRoute.end(current)
    if current.status == REJECTED:
        _note_rejection_on_run(current)
    how = "the gate task ended at once" if ended else "its trigger ends the gate task"
    return Outcome(current, True, f"request {req.id} {current.status} by {reviewer.name}; {how}", ended)


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
