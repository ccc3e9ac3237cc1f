"""What a reviewer may do with a request, and why not: the one answer every channel renders and ``decide`` enforces.

The review page's buttons, the inbox's checkboxes, the bulk confirmation, the request-changes partial, the Slack
actions, the JSON API and the CLI all ask ``access(request, reviewer)``; ``hitl.decisions.decide`` raises the
refusal it gives. A request of a DAG the reviewer may not read (``Reviewer.may_read``, asked of Airflow's auth
manager) does not exist for them: every action, reading included, is "no such request", as Airflow answers a
DAG it hides.

Pure: no store, no Airflow. The deadline is the decision service's (it closes an overdue request as it
refuses), and so is the edit's content check.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from hitl.identity import Reviewer, describe_approvers, may_decide
from hitl.store.model import CHANGES_REQUESTED, PENDING, SUPERSEDED, ApprovalRequest


class Action(StrEnum):
    READ = "read"
    COMMENT = "comment"
    APPROVE = "approve"
    EDIT = "edit"  # approve with a changed output
    REJECT = "reject"
    REQUEST_CHANGES = "request_changes"


class Refusal(StrEnum):
    """Why an action is refused; each maps to one ``DecisionError`` class (and HTTP status) in ``decisions``."""

    NOT_FOUND = "not_found"
    ALREADY_DECIDED = "already_decided"
    NOT_ALLOWED = "not_allowed"
    NO_REVISIONS_LEFT = "no_revisions_left"


@dataclass(frozen=True)
class Denied:
    reason: Refusal
    message: str


@dataclass(frozen=True)
class Access:
    """A reviewer's rights on one request: an action absent from ``denied`` is allowed."""

    request_id: int
    denied: Mapping[Action, Denied] = field(default_factory=dict)

    def may(self, action: Action | str) -> bool:
        return Action(action) not in self.denied

    def why_not(self, action: Action | str) -> Denied | None:
        return self.denied.get(Action(action))

    @property
    def may_decide(self) -> bool:
        """Any decision at all (the inbox's checkbox, the page's decision form)."""
        return any(self.may(a) for a in (Action.APPROVE, Action.REJECT, Action.REQUEST_CHANGES))


def closed_message(req: ApprovalRequest) -> str:
    """The one line a reviewer reads when the request is closed already."""
    if req.status == SUPERSEDED:
        return f"request {req.id} was superseded by request {req.superseded_by}: the step's output changed"
    when = req.decided_at.strftime("%Y-%m-%d %H:%M:%S UTC") if req.decided_at else "an unknown time"
    if req.status == CHANGES_REQUESTED:
        return (
            f"changes already requested by {req.decided_by} at {when}: the step makes a new draft, "
            "which is a new request of this gate"
        )
    return f"already decided by {req.decided_by} at {when} ({req.status})"


def not_found(request_id: int) -> str:
    return f"no approval request {request_id}"


def access(req: ApprovalRequest, reviewer: Reviewer) -> Access:
    """Every action's answer for ``reviewer`` on ``req``, in the order ``decide`` checks them."""
    if not reviewer.may_read(req.dag_id):
        hidden = Denied(Refusal.NOT_FOUND, not_found(req.id))
        return Access(req.id, {a: hidden for a in Action})
    denied: dict[Action, Denied] = {}
    decisions = (Action.APPROVE, Action.EDIT, Action.REJECT, Action.REQUEST_CHANGES)
    if req.status != PENDING:
        closed = Denied(Refusal.ALREADY_DECIDED, closed_message(req))
        return Access(req.id, dict.fromkeys(decisions, closed))
    if not may_decide(reviewer, req.approvers):
        why = (
            f"{reviewer.name} may not decide approvals (Airflow permission 'can edit on Approvals')"
            if not reviewer.decide_permission
            else f"{reviewer.name} is not an approver of request {req.id} "
            f"({req.dag_id}.{req.step_id}; approvers: {describe_approvers(req.approvers)})"
        )
        return Access(req.id, dict.fromkeys(decisions, Denied(Refusal.NOT_ALLOWED, why)))
    if not req.allow_self_approval and req.triggered_by == reviewer.name:
        for action, verb in (
            (Action.APPROVE, "approve it"),
            (Action.EDIT, "approve it"),
            (Action.REQUEST_CHANGES, "request changes on it"),
        ):
            denied[action] = Denied(
                Refusal.NOT_ALLOWED, f"{reviewer.name} triggered this run and may not {verb} (self-approval is off)"
            )
    if req.min_approvals > 1:  # approvers would be approving different versions
        denied.setdefault(
            Action.EDIT,
            Denied(
                Refusal.NOT_ALLOWED, f"edit & approve is not available when {req.min_approvals} approvals are needed"
            ),
        )
    if req.revisions_left <= 0:
        denied.setdefault(
            Action.REQUEST_CHANGES,
            Denied(
                Refusal.NO_REVISIONS_LEFT,
                f"no change requests left: {req.revisions_used} of {req.max_revisions} used; approve or reject",
            ),
        )
    return Access(req.id, denied)
