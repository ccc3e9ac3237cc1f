"""What the decision store holds: statuses, the request as the sensor asks for it and as it is stored, queries.

Plain values, no database access: ``hitl.store.repository`` reads and writes them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, false, or_, select

from hitl.gate import GateOptions
from hitl.identity import Reviewer
from hitl.policy import Verdict
from hitl.store.schema import approval_request, request_approver

PENDING, APPROVED, REJECTED, SUPERSEDED = "pending", "approved", "rejected", "superseded"
TIMED_OUT = "timed_out"  # the gate task's timeout passed: closed, never approved; clearing the gate asks again
# A reviewer sent the draft back with feedback: closed, never approved; the gated step runs again in the same
# DAG run and its new draft becomes the gate's next request (``revision`` + 1, ``previous_request_id``).
CHANGES_REQUESTED = "changes_requested"
DECIDED = (APPROVED, REJECTED, TIMED_OUT, CHANGES_REQUESTED)
NOT_DECIDED = (PENDING, SUPERSEDED)  # every status is in exactly one of DECIDED and NOT_DECIDED
EXPIRY_ACTOR = "hitl:expiry"
TIMEOUT_ACTOR = "hitl:timeout"
NOTIFY_CHANNEL = "hitl_decision"


def utcnow() -> datetime:
    return datetime.now(UTC)


def _aware(value: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes; everything we store is UTC.
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def content_hash(value: Any) -> str:
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()


@dataclass(frozen=True)
class GateRequest:
    """What the sensor knows when it asks for a decision: which gate instance, what output, and the gate's options."""

    dag_id: str
    run_id: str
    step_id: str
    gate_task_id: str
    output: Any
    options: GateOptions = field(default_factory=GateOptions)
    output_kind: str = "json"
    summary: str = ""
    map_index: int = -1
    try_number: int = 1
    triggered_by: str | None = None
    verdict: Verdict | None = None  # the gate policy's, recorded with the request (hitl.policy)
    # outputs of ungated steps the steps after the gate read (step id -> output), bound to the approval (hitl.guard)
    bound: dict[str, Any] | None = None

    def columns(self) -> dict[str, Any]:
        """Column values for ``hitl_approval_request`` (JSON fields as canonical JSON text)."""
        o = self.options
        return {
            "dag_id": self.dag_id,
            "run_id": self.run_id,
            "step_id": self.step_id,
            "gate_task_id": self.gate_task_id,
            "map_index": self.map_index,
            "try_number": self.try_number,
            "triggered_by": self.triggered_by,
            "output": canonical_json(self.output),
            "output_kind": self.output_kind,
            "summary": self.summary[:500],
            "approve_label": o.approve_label[:200],
            "approvers": canonical_json(o.approvers),
            "min_approvals": o.min_approvals,
            "allow_self_approval": o.allow_self_approval,
            "owner": o.owner,
            "notify": canonical_json(o.notify),
            "remind_after": o.remind_after,
            "escalate_after": o.escalate_after,
            "escalate_to": canonical_json(o.escalate_to),
            "expire_after": o.expire_after,
            "timeout": o.timeout,
            "max_revisions": o.max_revisions,
        }


@dataclass(frozen=True)
class ApprovalRequest:
    id: int
    dag_id: str
    run_id: str
    step_id: str
    gate_task_id: str
    map_index: int
    try_number: int
    output_kind: str
    output: Any
    output_hash: str
    summary: str
    approve_label: str
    approvers: list[dict[str, str]]
    min_approvals: int
    allow_self_approval: bool
    triggered_by: str | None
    status: str
    created_at: datetime
    decided_at: datetime | None
    decided_by: str | None
    comment: str | None
    edited_output: Any | None
    superseded_by: int | None
    owner: str | None = None
    notify: dict[str, Any] = field(default_factory=dict)
    remind_after: int | None = None
    escalate_after: int | None = None
    escalate_to: list[dict[str, str]] = field(default_factory=list)
    expire_after: int | None = None
    reminders: int = 0
    reminded_at: datetime | None = None
    escalated_at: datetime | None = None
    timeout: int | None = None
    revision: int = 1  # the draft's number: 1, then one more after each "request changes"
    previous_request_id: int | None = None  # the request whose feedback this draft answers
    max_revisions: int = 3  # how many times changes may be requested on this gate in one run

    @property
    def revisions_used(self) -> int:
        """Change requests already made on this gate in this run (before this draft)."""
        return self.revision - 1

    @property
    def revisions_left(self) -> int:
        return max(0, self.max_revisions - self.revisions_used)

    def deadline(self) -> tuple[datetime, str] | None:
        """The first time bound that closes this request unanswered, and what it does: "expire" or "timeout"."""
        bounds = []
        if self.expire_after is not None:
            bounds.append((self.created_at + timedelta(seconds=self.expire_after), "expire"))
        if self.timeout is not None:
            bounds.append((self.created_at + timedelta(seconds=self.timeout), "timeout"))
        return min(bounds) if bounds else None

    def overdue(self, now: datetime) -> tuple[datetime, str] | None:
        """The passed deadline, while the request is still pending."""
        bound = self.deadline()
        return bound if self.status == PENDING and bound is not None and now >= bound[0] else None

    @property
    def final_output(self) -> Any:
        """What downstream steps receive: the edit when there is one."""
        return self.edited_output if self.edited_output is not None else self.output

    def as_dict(self) -> dict[str, Any]:
        return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in self.__dict__.items()}

    @classmethod
    def from_row(cls, row: Any) -> ApprovalRequest:
        m = row._mapping
        return cls(
            id=m["id"],
            dag_id=m["dag_id"],
            run_id=m["run_id"],
            step_id=m["step_id"],
            gate_task_id=m["gate_task_id"],
            map_index=m["map_index"],
            try_number=m["try_number"],
            output_kind=m["output_kind"],
            output=json.loads(m["output"]),
            output_hash=m["output_hash"],
            summary=m["summary"],
            approve_label=m["approve_label"],
            approvers=json.loads(m["approvers"]),
            min_approvals=m["min_approvals"],
            allow_self_approval=bool(m["allow_self_approval"]),
            triggered_by=m["triggered_by"],
            status=m["status"],
            created_at=_aware(m["created_at"]),  # type: ignore[arg-type]
            decided_at=_aware(m["decided_at"]),
            decided_by=m["decided_by"],
            comment=m["comment"],
            edited_output=json.loads(m["edited_output"]) if m["edited_output"] is not None else None,
            superseded_by=m["superseded_by"],
            owner=m["owner"],
            notify=json.loads(m["notify"] or "{}"),
            remind_after=m["remind_after"],
            escalate_after=m["escalate_after"],
            escalate_to=json.loads(m["escalate_to"] or "[]"),
            expire_after=m["expire_after"],
            reminders=m["reminders"] or 0,
            reminded_at=_aware(m["reminded_at"]),
            escalated_at=_aware(m["escalated_at"]),
            timeout=m.get("timeout"),
            revision=m.get("revision") or 1,
            previous_request_id=m.get("previous_request_id"),
            max_revisions=m["max_revisions"] if m.get("max_revisions") is not None else 3,
        )


@dataclass(frozen=True)
class RequestQuery:
    """Which requests the inbox, the CLI or the API asks for. ``status``: a status, "decided" or "all"."""

    status: str = PENDING
    dag_id: str | None = None
    search: str | None = None  # in workflow, run or step id
    decidable_by: Reviewer | None = None  # "needs my attention": listed for this reviewer (same rule as may_decide)
    older_than: datetime | None = None
    dags: frozenset[str] | None = None  # only these workflows (what the reader may read); None: every one

    @classmethod
    def for_reader(cls, reviewer: Reviewer, **fields: Any) -> RequestQuery:
        """A query narrowed to the DAGs ``reviewer`` may read: what every channel lists and counts with."""
        return cls(dags=reviewer.dags, **fields)

    def conditions(self) -> list[Any]:
        c = approval_request.c
        where: list[Any] = []
        if self.status == "decided":
            # Said as "not pending or superseded" (the same set): an IN list of statuses keeps the databases from
            # walking the created_at index in order, and a deep history page then sorts every decided request.
            where.append(c.status.not_in(NOT_DECIDED))
        elif self.status != "all":
            where.append(c.status == self.status)
        if self.dag_id:
            where.append(c.dag_id == self.dag_id)
        if self.search:  # literal text: % and _ in the search are not wildcards
            like = "%" + self.search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            where.append(or_(*(col.like(like, escape="\\") for col in (c.dag_id, c.run_id, c.step_id))))
        if self.decidable_by is not None:
            where.append(_decidable(self.decidable_by))
        if self.older_than is not None:
            where.append(c.created_at < self.older_than)
        if self.dags is not None:
            where.append(c.dag_id.in_(sorted(self.dags)) if self.dags else false())
        return where


@dataclass(frozen=True)
class Comment:
    """One comment on a request: never a decision."""

    id: int
    request_id: int
    author: str
    body: str
    mentions: list[str]
    created_at: datetime

    def as_dict(self) -> dict[str, Any]:
        return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in self.__dict__.items()}


@dataclass(frozen=True)
class AuditEvent:
    id: int
    request_id: int | None
    event: str
    actor: str | None
    at: datetime
    detail: dict[str, Any]


def approver_rows(approvers: list[dict[str, str]]) -> list[tuple[str, str]]:
    """(kind, value) rows for ``hitl_request_approver``; with no approvers listed, admins decide."""
    rows = set()
    for entry in approvers:
        for kind in ("userId", "email", "role"):
            if kind in entry:
                rows.add((kind, entry[kind] if kind == "userId" else entry[kind].lower()))
    return sorted(rows) or [("role", "admin")]


def _decidable(reviewer: Reviewer) -> Any:
    """The request lists this reviewer (by name, email or role): the same rule as ``may_decide``.

    One primary-key probe of ``hitl_request_approver`` per candidate request (a correlated subquery with
    LIMIT 1, which PostgreSQL keeps as a per-row probe): the pending requests are few, while the approver
    rows of one user cover their whole history (a join would read them all for the badge's count).
    """
    if not reviewer.can_decide_anything:
        return false()
    a = request_approver.c
    matches = [and_(a.kind == "userId", a.value == reviewer.name)]
    if reviewer.email:
        matches.append(and_(a.kind == "email", a.value == reviewer.email.lower()))
    if reviewer.roles:
        matches.append(and_(a.kind == "role", a.value.in_(sorted(reviewer.roles))))
    probe = select(a.request_id).where(a.request_id == approval_request.c.id, or_(*matches)).limit(1)
    return probe.scalar_subquery().is_not(None)


def human_duration(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
