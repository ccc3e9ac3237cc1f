"""The decision store: approval requests, votes, the append-only audit log, at-most-once side effects.

Plain SQLAlchemy Core on a database of the project's own (Airflow's metadata DB is off
limits to task and trigger code). Every method is one short transaction.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, and_, delete, false, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from hitl.identity import Reviewer
from hitl.store.engine import make_engines
from hitl.store.schema import approval_request, approval_vote, audit_event, request_approver, side_effect

PENDING, APPROVED, REJECTED, SUPERSEDED = "pending", "approved", "rejected", "superseded"
DECIDED = (APPROVED, REJECTED)
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
    """What the sensor knows when it asks for a decision."""

    dag_id: str
    run_id: str
    step_id: str
    gate_task_id: str
    output: Any
    output_kind: str = "json"
    summary: str = ""
    map_index: int = -1
    try_number: int = 1
    approve_label: str = "Approve"
    approvers: list[dict[str, str]] = field(default_factory=list)
    min_approvals: int = 1
    allow_self_approval: bool = True
    triggered_by: str | None = None
    owner: str | None = None
    notify: dict[str, Any] = field(default_factory=dict)
    remind_after: int | None = None
    escalate_after: int | None = None
    escalate_to: list[dict[str, str]] = field(default_factory=list)
    expire_after: int | None = None

    def columns(self) -> dict[str, Any]:
        """Column values for ``hitl_approval_request`` (JSON fields as canonical JSON text)."""
        values = asdict(self)
        for key in ("output", "approvers", "notify", "escalate_to"):
            values[key] = canonical_json(values[key])
        values["summary"] = self.summary[:500]
        return values


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
        )


@dataclass(frozen=True)
class RequestQuery:
    """Which requests the inbox, the CLI or the API asks for. ``status``: a status, "decided" or "all"."""

    status: str = PENDING
    dag_id: str | None = None
    search: str | None = None  # in workflow, run or step id
    decidable_by: Reviewer | None = None  # "needs my attention": listed for this reviewer (same rule as may_decide)
    older_than: datetime | None = None

    def conditions(self) -> list[Any]:
        c = approval_request.c
        where: list[Any] = []
        if self.status == "decided":
            where.append(c.status.in_(DECIDED))
        elif self.status != "all":
            where.append(c.status == self.status)
        if self.dag_id:
            where.append(c.dag_id == self.dag_id)
        if self.search:
            like = f"%{self.search}%"
            where.append(or_(c.dag_id.like(like), c.run_id.like(like), c.step_id.like(like)))
        if self.decidable_by is not None:
            where.append(c.id.in_(_decidable_ids(self.decidable_by)))
        if self.older_than is not None:
            where.append(c.created_at < self.older_than)
        return where


@dataclass(frozen=True)
class AuditEvent:
    id: int
    request_id: int | None
    event: str
    actor: str | None
    at: datetime
    detail: dict[str, Any]


class Store:
    def __init__(self, url: str) -> None:
        self.url = url
        self.engine, self.write_engine = make_engines(url)
        self.dialect = self.engine.dialect.name

    # -- schema -----------------------------------------------------------------------
    def upgrade(self) -> str:
        """Apply Alembic migrations; returns the head revision."""
        from alembic import command
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
        with self.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
        with self.engine.connect() as conn:
            return str(conn.exec_driver_sql("SELECT version_num FROM hitl_alembic_version").scalar())

    @contextmanager
    def writing(self) -> Iterator[Connection]:
        with self.write_engine.begin() as conn:
            yield conn

    # -- requests ---------------------------------------------------------------------
    def record_request(self, gate: GateRequest) -> tuple[ApprovalRequest, bool]:
        """Record the gate's request, idempotently. Returns (request, created).

        The same output for the same gate instance reuses the latest request (a retry, or a
        triggerer that lost its trigger, finds the decision already made); a changed output
        supersedes a pending request so nobody approves stale content.
        """
        digest = content_hash(gate.output)
        now = utcnow()
        with self.writing() as conn:
            latest = conn.execute(
                self._current_query(gate.dag_id, gate.run_id, gate.gate_task_id, gate.map_index)
            ).first()
            if latest is not None and latest.output_hash == digest:
                return ApprovalRequest.from_row(latest), False
            new_id = conn.execute(
                insert(approval_request).values(
                    **gate.columns(), output_hash=digest, status=PENDING, created_at=now, reminders=0
                )
            ).inserted_primary_key[0]  # type: ignore[index]
            conn.execute(
                insert(request_approver),
                [{"request_id": new_id, "kind": k, "value": v} for k, v in approver_rows(gate.approvers)],
            )
            self.record_audit(conn, new_id, "requested", None, {"try_number": gate.try_number, "hash": digest})
            if latest is not None and latest.status == PENDING:
                conn.execute(
                    update(approval_request)
                    .where(approval_request.c.id == latest.id, approval_request.c.status == PENDING)
                    .values(status=SUPERSEDED, superseded_by=new_id, decided_at=now)
                )
                self.record_audit(conn, latest.id, "superseded", None, {"by": new_id})
                self.notify_decided(conn, latest.id)
            row = conn.execute(select(approval_request).where(approval_request.c.id == new_id)).one()
        return ApprovalRequest.from_row(row), True

    @staticmethod
    def _current_query(dag_id: str, run_id: str, gate_task_id: str, map_index: int) -> Any:
        return (
            select(approval_request)
            .where(
                approval_request.c.dag_id == dag_id,
                approval_request.c.run_id == run_id,
                approval_request.c.gate_task_id == gate_task_id,
                approval_request.c.map_index == map_index,
                approval_request.c.status != SUPERSEDED,
            )
            .order_by(approval_request.c.id.desc())
            .limit(1)
        )

    def current_for_gate(
        self, dag_id: str, run_id: str, gate_task_id: str, map_index: int = -1
    ) -> ApprovalRequest | None:
        """The gate instance's live request (the newest one not superseded)."""
        with self.engine.connect() as conn:
            row = conn.execute(self._current_query(dag_id, run_id, gate_task_id, map_index)).first()
        return ApprovalRequest.from_row(row) if row else None

    def get(self, request_id: int) -> ApprovalRequest | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(approval_request).where(approval_request.c.id == request_id)).first()
        return ApprovalRequest.from_row(row) if row else None

    def list_requests(
        self, query: RequestQuery | None = None, *, limit: int = 50, offset: int = 0
    ) -> list[ApprovalRequest]:
        """Newest first; the default query is every pending request."""
        select_rows = (
            select(approval_request)
            .where(*(query or RequestQuery()).conditions())
            .order_by(approval_request.c.created_at.desc(), approval_request.c.id.desc())
            .limit(limit)
            .offset(offset)
        )
        with self.engine.connect() as conn:
            return [ApprovalRequest.from_row(r) for r in conn.execute(select_rows)]

    def count(self, query: RequestQuery | None = None) -> int:
        count_rows = select(func.count()).select_from(approval_request).where(*(query or RequestQuery()).conditions())
        with self.engine.connect() as conn:
            return int(conn.execute(count_rows).scalar_one())

    def dag_ids(self) -> list[str]:
        with self.engine.connect() as conn:
            return list(
                conn.execute(select(approval_request.c.dag_id).distinct().order_by(approval_request.c.dag_id)).scalars()
            )

    # -- votes and decisions ----------------------------------------------------------
    def votes(self, request_id: int) -> list[tuple[str, str, datetime]]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(approval_vote.c.user, approval_vote.c.decision, approval_vote.c.at)
                .where(approval_vote.c.request_id == request_id)
                .order_by(approval_vote.c.id)
            ).all()
        return [(r.user, r.decision, _aware(r.at)) for r in rows]  # type: ignore[misc]

    def add_vote(self, conn: Connection, request_id: int, user: str, decision: str) -> bool:
        """False when this user already voted on this request."""
        try:
            with conn.begin_nested():
                conn.execute(
                    insert(approval_vote).values(request_id=request_id, user=user, decision=decision, at=utcnow())
                )
        except IntegrityError:
            return False
        return True

    def count_votes(self, conn: Connection, request_id: int, decision: str) -> int:
        return int(
            conn.execute(
                select(func.count())
                .select_from(approval_vote)
                .where(approval_vote.c.request_id == request_id, approval_vote.c.decision == decision)
            ).scalar_one()
        )

    def close_request(
        self,
        conn: Connection,
        request_id: int,
        *,
        status: str,
        user: str,
        comment: str | None,
        edited_output: Any | None,
    ) -> bool:
        """Move a pending request to its final state. Exactly one caller wins: the update is conditional."""
        result = conn.execute(
            update(approval_request)
            .where(approval_request.c.id == request_id, approval_request.c.status == PENDING)
            .values(
                status=status,
                decided_by=user,
                decided_at=utcnow(),
                comment=comment,
                edited_output=canonical_json(edited_output) if edited_output is not None else None,
            )
        )
        if result.rowcount != 1:
            return False
        self.notify_decided(conn, request_id)
        return True

    def notify_decided(self, conn: Connection, request_id: int) -> None:
        """Wake the triggers at once on PostgreSQL (delivered on commit); SQLite relies on polling."""
        if self.dialect == "postgresql":
            conn.exec_driver_sql(f"SELECT pg_notify('{NOTIFY_CHANNEL}', '{int(request_id)}')")

    # -- audit ------------------------------------------------------------------------
    def record_audit(
        self, conn: Connection, request_id: int | None, event: str, actor: str | None, detail: dict[str, Any]
    ) -> None:
        conn.execute(
            insert(audit_event).values(
                request_id=request_id, event=event, actor=actor, at=utcnow(), detail=canonical_json(detail)
            )
        )

    def audit(self, request_id: int | None, event: str, actor: str | None = None, **detail: Any) -> None:
        with self.writing() as conn:
            self.record_audit(conn, request_id, event, actor, detail)

    def history(self, request_id: int) -> list[AuditEvent]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(audit_event).where(audit_event.c.request_id == request_id).order_by(audit_event.c.id)
            ).all()
        return [
            AuditEvent(r.id, r.request_id, r.event, r.actor, _aware(r.at), json.loads(r.detail))  # type: ignore[arg-type]
            for r in rows
        ]

    # -- at-most-once side effects ----------------------------------------------------
    def claim_side_effect(self, key: str, kind: str) -> bool:
        """True for the first caller only: what it guards (sending an email) happens at most once."""
        try:
            with self.writing() as conn:
                conn.execute(
                    insert(side_effect).values(key=key, kind=kind, status="started", created_at=utcnow(), detail="{}")
                )
        except IntegrityError:
            return False
        return True

    def finish_side_effect(self, key: str, detail: dict[str, Any]) -> None:
        with self.writing() as conn:
            conn.execute(
                update(side_effect).where(side_effect.c.key == key).values(status="done", detail=canonical_json(detail))
            )

    def release_side_effect(self, key: str) -> None:
        with self.writing() as conn:
            conn.execute(delete(side_effect).where(side_effect.c.key == key, side_effect.c.status == "started"))

    def side_effect(self, key: str) -> tuple[str, dict[str, Any]] | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(side_effect).where(side_effect.c.key == key)).first()
        return (row.status, json.loads(row.detail)) if row else None


def approver_rows(approvers: list[dict[str, str]]) -> list[tuple[str, str]]:
    """(kind, value) rows for ``hitl_request_approver``; with no approvers listed, admins decide."""
    rows = set()
    for entry in approvers:
        for kind in ("userId", "email", "role"):
            if kind in entry:
                rows.add((kind, entry[kind] if kind == "userId" else entry[kind].lower()))
    return sorted(rows) or [("role", "admin")]


def _decidable_ids(reviewer: Reviewer) -> Any:
    """Request ids this reviewer is listed for (by name, email or role): the same rule as ``may_decide``."""
    matches = [and_(request_approver.c.kind == "userId", request_approver.c.value == reviewer.name)]
    if reviewer.email:
        matches.append(and_(request_approver.c.kind == "email", request_approver.c.value == reviewer.email.lower()))
    if reviewer.roles:
        matches.append(and_(request_approver.c.kind == "role", request_approver.c.value.in_(sorted(reviewer.roles))))
    if not reviewer.can_decide_anything:
        return select(request_approver.c.request_id).where(false())
    return select(request_approver.c.request_id).where(or_(*matches))


@cache
def _store_for(url: str) -> Store:
    return Store(url)


def get_store(url: str | None = None) -> Store:
    """The process-wide store for the configured URL (engines are pooled per URL)."""
    if url is None:
        from hitl.config import load_settings

        url = load_settings().store_url
    return _store_for(url)
