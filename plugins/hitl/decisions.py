"""The decision service: the one place a decision is written.

Every channel (review page, JSON API, CLI, Slack) calls ``decide``. It checks who may decide,
what may be approved, and the request's deadline; writes the decision under a row lock; then
ends the parked gate at once where it can (``hitl.gate_end.DirectRoute``).

Three decisions: approve (maybe with an edit), reject (with a reason), and request changes (with
feedback, while the gate's ``maxRevisions`` allows): the request closes as ``changes_requested``,
never approved, and the gated step runs again in the same DAG run with the feedback
(``hitl.rerun.StepRerun``); its new draft is the gate's next request.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any, Literal

from hitl.access import Action as AccessAction
from hitl.access import Refusal, access, closed_message, not_found
from hitl.gate_end import DirectRoute
from hitl.identity import Reviewer
from hitl.metrics import metrics
from hitl.outputs import field_errors, sendable_errors
from hitl.policy import Verdict
from hitl.rerun import GateNotWaiting, RerunUnavailable, StepRerun
from hitl.store import APPROVED, CHANGES_REQUESTED, PENDING, REJECTED, ApprovalRequest, Store, utcnow

log = logging.getLogger(__name__)


Action = Literal["approve", "reject", "request_changes"]
ACTIONS: tuple[str, ...] = ("approve", "reject", "request_changes")
MAX_COMMENT = 2000  # characters of a reason, feedback or comment, on every channel


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


class NoRevisionsLeft(NotAllowed):
    """The gate's ``maxRevisions`` change requests are used up: only approve or reject remain (403)."""

    code = "no_revisions_left"


class RerunRefused(DecisionError):
    """Changes cannot be requested from this process: the step could not be re-run; nothing was written (503)."""

    code = "rerun_unavailable"


class GateGone(DecisionError):
    """Changes cannot be requested: the gate is not deferred on this request any more (stopped, cleared) (409)."""

    code = "gate_not_waiting"


class StaleOutput(DecisionError):
    """The output changed since the reviewer opened it (409)."""

    code = "stale"


class InvalidEdit(DecisionError):
    """An edit, or the output itself, cannot be acted on; ``errors`` maps each field to why (400)."""

    code = "invalid_edit"

    def __init__(self, errors: dict[str, str]) -> None:
        self.errors = errors
        super().__init__("invalid edit: " + "; ".join(errors.values()))


REFUSALS: dict[Refusal, type[DecisionError]] = {
    Refusal.NOT_FOUND: NotFound,
    Refusal.ALREADY_DECIDED: AlreadyDecided,
    Refusal.NOT_ALLOWED: NotAllowed,
    Refusal.NO_REVISIONS_LEFT: NoRevisionsLeft,
}


@dataclass(frozen=True)
class Outcome:
    """What ``decide`` did: the request as it now stands, and the message for the reviewer."""

    request: ApprovalRequest
    final: bool  # False while a quorum still waits for more approvals
    message: str
    gate_ended: bool = False  # True when this process ended the parked gate (DirectRoute), else its trigger will


def already_decided_message(req: ApprovalRequest) -> str:
    """The one line a reviewer reads when the request is closed already."""
    return closed_message(req)


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
    """Approve, reject, edit & approve, or request changes on a pending request, after checking the reviewer may.

    ``seen_hash`` is the output hash the reviewer looked at: a decision on content that has
    since changed is refused. ``comment`` is the reason of a reject and the feedback of a change
    request (required for both). Refusals are audited too.
    """
    req = store.get(request_id)
    if req is None:
        raise NotFound(not_found(request_id))

    def refuse(exc: DecisionError) -> DecisionError:
        try:
            store.audit(req.id, "refused", reviewer.name, action=str(action)[:20], reason=str(exc), channel=channel)
        except Exception as audit_exc:  # the store went down: the refusal is still the answer, not the outage
            log.warning("request %s: could not audit a refusal (%s): %s", req.id, type(audit_exc).__name__, exc)
        metrics.refused(exc.code, channel)
        return exc

    if not reviewer.may_read(req.dag_id):  # Airflow hides the DAG from this reviewer: so is its request
        raise refuse(NotFound(not_found(request_id)))
    what = "feedback" if action == "request_changes" else "reason"
    if comment is not None and not isinstance(comment, str):
        raise refuse(DecisionError(f"the {what} must be text"))
    if comment is not None and len(comment) > MAX_COMMENT:
        raise refuse(DecisionError(f"the {what} is too long ({len(comment)} characters; at most {MAX_COMMENT})"))
    rights = access(req, reviewer)
    closed = rights.why_not(AccessAction.APPROVE)
    if closed is not None and closed.reason is Refusal.ALREADY_DECIDED:  # whatever the action
        raise refuse(AlreadyDecided(closed.message))
    if action not in ACTIONS:
        raise refuse(DecisionError(f"unknown action {str(action)[:40]!r}: approve, reject or request_changes"))
    denied = rights.why_not(action)
    if denied is not None:
        raise refuse(REFUSALS[denied.reason](denied.message))
    if seen_hash and seen_hash != req.output_hash:
        raise refuse(
            StaleOutput(f"the output of request {req.id} changed since you opened it: reload and review again")
        )
    if action == "reject" and not (comment or "").strip():
        raise refuse(DecisionError("a reason is required to reject"))
    if action == "request_changes":
        if not (comment or "").strip():
            raise refuse(DecisionError("feedback is required to request changes: what should the next draft change?"))
        if edited_output is not None:
            raise refuse(DecisionError("an edit can only be approved"))
        return _request_changes(store, req, reviewer, comment.strip() if comment else "", channel, refuse)
    if edited_output is not None:
        if action != "approve":
            raise refuse(DecisionError("an edit can only be approved"))
        no_edit = rights.why_not(AccessAction.EDIT)
        if no_edit is not None:
            raise refuse(REFUSALS[no_edit.reason](no_edit.message))
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
    approvals = 0
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
        elif (approvals := store.count_votes(conn, req.id, APPROVED)) < req.min_approvals:
            won, final = True, False  # this vote's own count, under the lock: not a later voter's
        else:
            won = store.close_request(
                conn, req.id, status=APPROVED, user=reviewer.name, comment=comment, edited_output=edited_output
            )
            final = True
        verdict: Verdict | None = None
        if won:
            event = "rejected" if action == "reject" else ("edited" if edited_output is not None else "approved")
            if action == "approve" and not final:
                event = "approval_vote"
            verdict = store.verdict(req.id, conn)  # what the gate's policy would have done, beside the decision
            store.record_audit(
                conn,
                req.id,
                event,
                reviewer.name,
                {
                    "channel": channel,
                    "comment": comment,
                    **({"edited_output": edited_output} if edited_output is not None else {}),
                    **({"policy": verdict.as_dict()} if verdict is not None else {}),
                },
            )
        current = store.get_in(conn, req.id)  # the request as this transaction leaves it: no second read
    assert current is not None
    if overdue is not None:
        metrics.decided(current, "expiry")
        DirectRoute.end(current)
        raise refuse(AlreadyDecided(f"request {req.id} {overdue}"))
    if not won:
        if current.status == PENDING:
            raise refuse(
                AlreadyDecided(f"{reviewer.name} already approved request {req.id}; waiting for more approvers")
            )
        raise refuse(AlreadyDecided(already_decided_message(current)))
    if not final:
        return Outcome(current, False, f"approval {approvals} of {req.min_approvals} recorded for request {req.id}")
    log.info("request %s %s by %s via %s", req.id, current.status, reviewer.name, channel)
    metrics.decided(current, channel)
    if verdict is not None:
        metrics.policy(verdict, human=human_outcome(current))
    ended = DirectRoute.end(current)  # a rejection also goes on the run's note there
    how = "the gate task ended at once" if ended else "its trigger ends the gate task"
    return Outcome(current, True, f"request {req.id} {current.status} by {reviewer.name}; {how}", ended)


def _decided_meanwhile(store: Store, request_id: int) -> ApprovalRequest | None:
    """The request, if another decision closed it; read under its row lock, so a decision still committing
    (the one that won a deadlock in Airflow's database a moment ago) is waited for, not missed."""
    with store.writing() as conn:
        status = store.lock_status(conn, request_id)
    return store.get(request_id) if status is not None and status != PENDING else None


def _request_changes(
    store: Store,
    req: ApprovalRequest,
    reviewer: Reviewer,
    feedback: str,
    channel: str,
    refuse: Any,
) -> Outcome:
    """Close the request as ``changes_requested`` and clear the gated step in its DAG run, or neither.

    The step's task instances are found first (``StepRerun``): a process that cannot reach Airflow's
    database, or a gate that is not deferred on this request, is refused before anything is written.
    They are cleared (flushed, rows locked) and Airflow's commit is made inside the store's write
    transaction, after the request is closed and before the store commits: if Airflow's commit fails
    the store rolls back (refused, nothing written); if the store's commit fails after it, the step
    re-runs without feedback and its draft reuses or supersedes the still-pending request (harmless).
    A lost race (already decided) rolls the clearing back.
    """
    try:
        rerun = StepRerun(req).__enter__()
    except RerunUnavailable as exc:
        # A simultaneous change request may have cleared the gate a moment ago, or deadlocked with this one in
        # Airflow's database (RerunConflict): if it decided, that is "already decided", not "try again".
        current = _decided_meanwhile(store, req.id)
        if current is not None:
            raise refuse(AlreadyDecided(already_decided_message(current))) from None
        if isinstance(exc, GateNotWaiting) and not exc.transient:
            raise refuse(GateGone(str(exc))) from None
        raise refuse(RerunRefused(str(exc))) from None
    cleared: list[str] = []
    overdue: str | None = None
    try:
        cleared = rerun.clear()
        with store.writing() as conn:
            status = store.lock_status(conn, req.id)
            won = False
            if status != PENDING:
                pass
            elif req.overdue(utcnow()):
                overdue = store.close_overdue(conn, req, utcnow())
            else:
                won = store.close_request(
                    conn, req.id, status=CHANGES_REQUESTED, user=reviewer.name, comment=feedback, edited_output=None
                )
            if won:
                store.record_audit(
                    conn,
                    req.id,
                    "changes_requested",
                    reviewer.name,
                    {
                        "channel": channel,
                        "comment": feedback,
                        "revision": req.revision,
                        "used": req.revisions_used + 1,
                        "max_revisions": req.max_revisions,
                        "cleared": cleared,
                    },
                )
                # Airflow's commit, before the store's: a failure here rolls the store back (RerunUnavailable).
                rerun.commit()
        if not won:
            raise _NotWritten()
    except BaseException as exc:
        try:
            rerun.__exit__(type(exc), exc, exc.__traceback__)  # rolls back what was not committed
        except Exception as closing:  # Airflow's database is gone: the reason given is the first one
            if closing is not exc:
                log.debug("request %s: rolling the clearing back failed too: %s", req.id, closing)
        if isinstance(exc, RerunUnavailable):  # Airflow's commit failed: the store rolled back too
            current = _decided_meanwhile(store, req.id)  # a simultaneous change request that won the deadlock
            if current is not None:
                raise refuse(AlreadyDecided(already_decided_message(current))) from None
            raise refuse(RerunRefused(str(exc))) from None
        if not isinstance(exc, _NotWritten):
            raise
        if overdue is not None:
            closed = store.get(req.id)
            if closed is not None:
                metrics.decided(closed, "expiry")
                DirectRoute.end(closed)
            raise refuse(AlreadyDecided(f"request {req.id} {overdue}")) from None
        current = store.get(req.id)
        assert current is not None
        raise refuse(AlreadyDecided(already_decided_message(current))) from None
    # Both committed: the decision stands whatever happens from here on (never "nothing was decided").
    try:
        rerun.__exit__(None, None, None)
    except Exception as exc:  # committed already; closing the session is all that failed
        log.debug("request %s: closing Airflow's session failed after the commit: %s", req.id, exc)
    try:
        current = store.get(req.id)
    except Exception as exc:  # the store was written; reading it back failed
        log.warning("request %s: changes requested, but reading it back failed: %s", req.id, exc)
        current = None
    if current is None:
        current = replace(
            req, status=CHANGES_REQUESTED, decided_by=reviewer.name, decided_at=utcnow(), comment=feedback
        )
    log.info(
        "request %s: changes requested by %s via %s; re-running %s in run %s",
        req.id,
        reviewer.name,
        channel,
        ", ".join(cleared),
        req.run_id,
    )
    metrics.decided(current, channel)
    left = req.revisions_left - 1
    return Outcome(
        current,
        True,
        f"changes requested on request {req.id} by {reviewer.name}; step {req.step_id} runs again with the "
        f"feedback and its new draft will be a new request ({left} change request{'s' if left != 1 else ''} left)",
        True,
    )


def human_outcome(req: ApprovalRequest) -> str:
    """A human's closing decision in the policy's terms: approve, reject, edited or changes (for agreement)."""
    if req.status == APPROVED:
        return "edited" if req.edited_output is not None else "approve"
    if req.status == REJECTED:
        return "reject"
    return "changes" if req.status == CHANGES_REQUESTED else req.status


def policy_actor(req: ApprovalRequest) -> str:
    """Who a policy decision is by, in the history and the audit: ``policy:<gate task id>``."""
    return f"policy:{req.gate_task_id}"


def decide_by_policy(store: Store, req: ApprovalRequest, verdict: Verdict) -> Outcome:
    """Write an enforced policy's decision, as a decision like any other: audited, "already decided" after it.

    Called by the gate itself (``ApprovalSensor.execute``) right after it records the draft, so nothing else ends
    the gate: the sensor returns the approved output or skips. A policy never approves what a human could not
    (the same sendability checks), never under a quorum, never after a change request in this run (``held``:
    the store sets it when the verdict is recorded), and never a request that is not pending.
    """
    actor = policy_actor(req)
    if not verdict.acts:
        raise NotAllowed(f"the policy may not decide request {req.id}: {verdict.describe()}")
    action: Action = "approve" if verdict.decision == "approve" else "reject"
    if action == "approve":
        if req.min_approvals > 1:  # also held by the store; checked again where the decision is written
            raise NotAllowed(f"a policy never approves under a quorum of {req.min_approvals}")
        problems = sendable_errors(req.output_kind, req.output)
        if problems:
            raise InvalidEdit({k: f"cannot be acted on as it is: {v}" for k, v in problems.items()})
    comment = f"{verdict.rule} matched (rule {verdict.rule_hash})"
    with store.writing() as conn:
        status = store.lock_status(conn, req.id)
        won = False
        if status == PENDING and not req.overdue(utcnow()):
            status_to = APPROVED if action == "approve" else REJECTED
            store.add_vote(conn, req.id, actor, status_to)
            won = store.close_request(conn, req.id, status=status_to, user=actor, comment=comment, edited_output=None)
        if won:
            store.record_audit(
                conn,
                req.id,
                "approved" if action == "approve" else "rejected",
                actor,
                {"channel": "policy", "comment": comment, "policy": verdict.as_dict()},
            )
        current = store.get_in(conn, req.id)
    assert current is not None
    if not won:
        raise AlreadyDecided(already_decided_message(current))
    log.info("request %s %s by %s (%s)", req.id, current.status, actor, verdict.describe())
    metrics.decided(current, "policy")
    metrics.policy(verdict, human=None)
    return Outcome(current, True, f"request {req.id} {current.status} by {actor}: {comment}")


class _NotWritten(Exception):
    """The change request lost its race (or the deadline passed): the clearing is rolled back."""
