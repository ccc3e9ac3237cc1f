"""The decision store's reads and writes. Every method is one short transaction.

Plain SQLAlchemy Core on a database of the project's own (Airflow's metadata DB is off
limits to task and trigger code).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import fields as dataclass_fields
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from hitl.policy import Verdict
from hitl.store.engine import make_engines
from hitl.store.model import (
    CHANGES_REQUESTED,
    EXPIRY_ACTOR,
    PENDING,
    REJECTED,
    SUPERSEDED,
    TIMED_OUT,
    TIMEOUT_ACTOR,
    ApprovalRequest,
    AuditEvent,
    Comment,
    GateRequest,
    RequestQuery,
    _aware,
    approver_rows,
    canonical_json,
    content_hash,
    human_duration,
    utcnow,
)
from hitl.store.schema import (
    approval_request,
    approval_vote,
    audit_event,
    bound_input,
    comment,
    policy_verdict,
    request_approver,
    side_effect,
    step_output,
)

NOTIFY_CHANNEL = "hitl_decision"


def verdict_of(row: Any) -> Verdict:
    """A ``hitl_policy_verdict`` row as the value the policy made (its columns are the value's fields)."""
    m = row._mapping
    return Verdict(**{f.name: m[f.name] for f in dataclass_fields(Verdict)})


class Store:
    def __init__(self, url: str) -> None:
        self.url = url
        self.engine, self.write_engine = make_engines(url)
        self.dialect = self.engine.dialect.name

    # -- schema -----------------------------------------------------------------------
    def upgrade(self, target: str = "head") -> str:
        """Apply the migrations up to ``target`` in one transaction; returns the revision now recorded.

        A failure raises ``hitl.store.migrate.MigrationFailed`` (which migration, and why) with the store
        unchanged; see that module.
        """
        from hitl.store.migrate import upgrade

        return upgrade(self, target)

    @contextmanager
    def writing(self) -> Iterator[Connection]:
        with self.write_engine.begin() as conn:
            yield conn

    # -- requests ---------------------------------------------------------------------
    def record_request(self, gate: GateRequest) -> tuple[ApprovalRequest, bool]:
        """Record the gate's request, idempotently. Returns (request, created).

        The same output for the same gate instance reuses the latest request (a retry, or a
        triggerer that lost its trigger, finds the decision already made); a changed output
        supersedes a pending request so nobody approves stale content. After "request changes"
        the step's next draft is the gate's next round: a new request, ``revision`` + 1, linked to
        the one whose feedback it answers (even when the draft came out the same). A superseding
        request keeps its round.
        """
        digest = content_hash(gate.output)
        now = utcnow()
        with self.writing() as conn:
            latest = conn.execute(
                self._current_query(gate.dag_id, gate.run_id, gate.gate_task_id, gate.map_index)
            ).first()
            asks_again = latest is not None and latest.status in (TIMED_OUT, CHANGES_REQUESTED)
            bound_hash = content_hash(gate.bound) if gate.bound else None
            if (
                latest is not None
                and latest.output_hash == digest
                and not asks_again
                and self._bound_hash(conn, latest.id) == bound_hash
            ):
                return ApprovalRequest.from_row(latest), False
            revision, previous = 1, None
            if latest is not None and latest.status == CHANGES_REQUESTED:
                revision, previous = (latest.revision or 1) + 1, latest.id
            elif latest is not None:  # the same round, asked again
                revision, previous = latest.revision or 1, latest.previous_request_id
            new_id = conn.execute(
                insert(approval_request).values(
                    **gate.columns(),
                    output_hash=digest,
                    status=PENDING,
                    created_at=now,
                    reminders=0,
                    revision=revision,
                    previous_request_id=previous,
                )
            ).inserted_primary_key[0]  # type: ignore[index]
            conn.execute(
                insert(request_approver),
                [{"request_id": new_id, "kind": k, "value": v} for k, v in approver_rows(gate.options.approvers)],
            )
            self.record_audit(
                conn,
                new_id,
                "requested",
                None,
                {
                    "try_number": gate.try_number,
                    "hash": digest,
                    **({"revision": revision, "previous_request_id": previous} if previous is not None else {}),
                },
            )
            if gate.bound:  # with the request, so no one can approve it before what it binds is recorded
                conn.execute(
                    insert(bound_input).values(
                        request_id=new_id, inputs=canonical_json(gate.bound), inputs_hash=bound_hash
                    )
                )
            if gate.verdict is not None:
                self._record_verdict(conn, new_id, gate, revision, now)
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
    def _bound_hash(conn: Connection, request_id: int) -> str | None:
        return conn.execute(select(bound_input.c.inputs_hash).where(bound_input.c.request_id == request_id)).scalar()

    def bound_inputs(self, request_id: int) -> dict[str, Any] | None:
        """The ungated steps' outputs recorded with a request (step id -> output), or None when it binds none."""
        with self.engine.connect() as conn:
            raw = conn.execute(select(bound_input.c.inputs).where(bound_input.c.request_id == request_id)).scalar()
        return None if raw is None else dict(json.loads(raw))

    # -- outputs of steps after a gate (the chain from an approval to the action) -------
    def record_step_output(self, dag_id: str, run_id: str, task_id: str, map_index: int, output_hash: str) -> None:
        """What this run of a post-gate step returned; a retry records its own new output over it."""
        key = {"dag_id": dag_id, "run_id": run_id, "task_id": task_id, "map_index": map_index}
        t = step_output.c
        with self.writing() as conn:
            conn.execute(delete(step_output).where(*(getattr(t, k) == v for k, v in key.items())))
            conn.execute(insert(step_output).values(**key, output_hash=output_hash, recorded_at=utcnow()))

    def step_output_hash(self, dag_id: str, run_id: str, task_id: str, map_index: int) -> str | None:
        t = step_output.c
        query = select(t.output_hash).where(
            t.dag_id == dag_id, t.run_id == run_id, t.task_id == task_id, t.map_index == map_index
        )
        with self.engine.connect() as conn:
            return conn.execute(query).scalar()

    def _record_verdict(
        self, conn: Connection, request_id: int, gate: GateRequest, revision: int, now: datetime
    ) -> None:
        """The policy's verdict beside its request, held where a policy may never act (quorum, a change request)."""
        verdict = gate.verdict
        assert verdict is not None
        if verdict.decision == "approve" and gate.options.min_approvals > 1:
            verdict = verdict.holding(f"the gate needs {gate.options.min_approvals} approvals")
        if verdict.decision != "none" and revision > 1:
            verdict = verdict.holding(f"draft {revision}: a reviewer asked for changes in this run")
        conn.execute(
            insert(policy_verdict).values(
                request_id=request_id,
                dag_id=gate.dag_id,
                mode=verdict.mode,
                decision=verdict.decision,
                rule=verdict.rule,
                rule_hash=verdict.rule_hash,
                sampled=verdict.sampled,
                held=(verdict.held or "")[:250] or None,
                reason=verdict.reason[:500],
                at=now,
            )
        )
        self.record_audit(conn, request_id, "policy_verdict", f"policy:{gate.gate_task_id}", verdict.as_dict())

    def verdict(self, request_id: int, conn: Connection | None = None) -> Verdict | None:
        """The gate policy's verdict on a request, or None when its gate has no policy."""
        query = select(policy_verdict).where(policy_verdict.c.request_id == request_id)
        if conn is not None:
            row = conn.execute(query).first()
        else:
            with self.engine.connect() as c:
                row = c.execute(query).first()
        return None if row is None else verdict_of(row)

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

    def rounds(self, dag_id: str, run_id: str, gate_task_id: str, map_index: int = -1) -> list[ApprovalRequest]:
        """The gate instance's requests sent back with feedback ("changes requested"), oldest first."""
        t = approval_request.c
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(approval_request)
                .where(
                    t.dag_id == dag_id,
                    t.run_id == run_id,
                    t.gate_task_id == gate_task_id,
                    t.map_index == map_index,
                    t.status == CHANGES_REQUESTED,
                )
                .order_by(t.id)
            ).all()
        return [ApprovalRequest.from_row(r) for r in rows]

    def get(self, request_id: int) -> ApprovalRequest | None:
        with self.engine.connect() as conn:
            return self.get_in(conn, request_id)

    @staticmethod
    def get_in(conn: Connection, request_id: int) -> ApprovalRequest | None:
        """The request as this transaction sees it (after its own writes)."""
        row = conn.execute(select(approval_request).where(approval_request.c.id == request_id)).first()
        return ApprovalRequest.from_row(row) if row else None

    def list_requests(
        self, query: RequestQuery | None = None, *, limit: int = 50, offset: int = 0
    ) -> list[ApprovalRequest]:
        """Newest first; the default query is every pending request.

        The page's ids first, then their rows: the ids come from an index alone (the rows skipped by a
        deep page's offset are never read), and only the page's rows are fetched.
        """
        t = approval_request.c
        newest_first = (t.created_at.desc(), t.id.desc())
        page = (
            select(t.id)
            .where(*(query or RequestQuery()).conditions())
            .order_by(*newest_first)
            .limit(limit)
            .offset(offset)
            .subquery()
        )
        select_rows = select(approval_request).join(page, page.c.id == t.id).order_by(*newest_first)
        with self.engine.connect() as conn:
            return [ApprovalRequest.from_row(r) for r in conn.execute(select_rows)]

    def count(self, query: RequestQuery | None = None) -> int:
        count_rows = select(func.count()).select_from(approval_request).where(*(query or RequestQuery()).conditions())
        with self.engine.connect() as conn:
            return int(conn.execute(count_rows).scalar_one())

    def dag_ids(self) -> list[str]:
        """The workflows with requests, in order: one index seek per workflow (not a scan of every request)."""
        t = approval_request.c
        found = select(func.min(t.dag_id).label("dag_id")).cte("dag_ids", recursive=True)
        after = select(func.min(t.dag_id)).where(t.dag_id > found.c.dag_id).scalar_subquery()
        found = found.union_all(select(after).where(found.c.dag_id.is_not(None)))
        with self.engine.connect() as conn:
            return list(conn.execute(select(found.c.dag_id).where(found.c.dag_id.is_not(None))).scalars())

    def pending_by_workflow(self) -> dict[str, int]:
        """Pending requests per workflow (the ``hitl.pending`` gauges): one grouped count over the status index."""
        t = approval_request.c
        counted = select(t.dag_id, func.count()).where(t.status == PENDING).group_by(t.dag_id)
        with self.engine.connect() as conn:
            return {dag_id: int(n) for dag_id, n in conn.execute(counted)}

    # -- votes and decisions ----------------------------------------------------------
    def lock_status(self, conn: Connection, request_id: int) -> str | None:
        """The request's status, with its row locked until the transaction ends.

        Serializes decisions on one request: on PostgreSQL (READ COMMITTED) two approvals of a
        quorum gate would otherwise each count only their own vote. SQLite's write transactions
        (BEGIN IMMEDIATE) are serialized already.
        """
        status = conn.execute(
            select(approval_request.c.status).where(approval_request.c.id == request_id).with_for_update()
        ).scalar_one_or_none()
        return None if status is None else str(status)

    def close_overdue(self, conn: Connection, req: ApprovalRequest, now: datetime) -> str | None:
        """Apply a passed deadline: ``expireAfter`` rejects, the gate's ``timeout`` closes as timed out.

        Returns the one-line reason, or None when nothing was due (or another writer closed it first).
        """
        due = req.overdue(now)
        if due is None:
            return None
        at, kind = due
        when = at.strftime("%Y-%m-%d %H:%M:%S UTC")
        if kind == "expire":
            assert req.expire_after is not None
            reason = f"expired at {when}: no decision within {human_duration(req.expire_after)} (onExpire: reject)"
            status, actor, event, detail = REJECTED, EXPIRY_ACTOR, "expired", {"after_seconds": req.expire_after}
        else:
            assert req.timeout is not None
            reason = f"timed out at {when}: the gate's timeout of {human_duration(req.timeout)} passed"
            status, actor, event, detail = TIMED_OUT, TIMEOUT_ACTOR, "timed_out", {"after_seconds": req.timeout}
        if not self.close_request(conn, req.id, status=status, user=actor, comment=reason, edited_output=None):
            return None
        self.record_audit(conn, req.id, event, actor, detail)
        return reason

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

    # -- the monitor's sweep ------------------------------------------------------------
    def sweep_candidates(self) -> tuple[list[int], list[int]]:
        """(pending requests with a time bound, pending requests whose notification failed)."""
        t = approval_request.c
        bounded = or_(
            t.expire_after.is_not(None),
            t.timeout.is_not(None),
            t.escalate_after.is_not(None),
            t.remind_after.is_not(None),
        )
        with self.engine.connect() as conn:
            ids = list(conn.execute(select(t.id).where(t.status == PENDING, bounded).order_by(t.id)).scalars())
            failed = list(
                conn.execute(
                    select(audit_event.c.request_id)
                    .distinct()
                    .where(
                        audit_event.c.event == "notify_failed",
                        audit_event.c.request_id.in_(select(t.id).where(t.status == PENDING)),
                    )
                ).scalars()
            )
        return ids, failed

    def escalate(self, req: ApprovalRequest, now: datetime) -> bool:
        """Add ``escalate_to`` to the request's approvers, once (a conditional update); audited."""
        t = approval_request.c
        approvers = req.approvers + [a for a in req.escalate_to if a not in req.approvers]
        with self.writing() as conn:
            won = conn.execute(
                update(approval_request)
                .where(t.id == req.id, t.status == PENDING, t.escalated_at.is_(None))
                .values(escalated_at=now, approvers=canonical_json(approvers))
            ).rowcount
            if not won:
                return False
            have = {
                (r.kind, r.value)
                for r in conn.execute(select(request_approver).where(request_approver.c.request_id == req.id))
            }
            new = [
                {"request_id": req.id, "kind": k, "value": v}
                for k, v in approver_rows(req.escalate_to)
                if (k, v) not in have
            ]
            if new:
                conn.execute(insert(request_approver), new)
            self.record_audit(conn, req.id, "escalated", None, {"to": req.escalate_to})
        return True

    def count_reminder(self, req: ApprovalRequest, now: datetime) -> int | None:
        """Record the next reminder, once (a conditional update); its number, or None when another sweep won."""
        t = approval_request.c
        n = req.reminders + 1
        with self.writing() as conn:
            won = conn.execute(
                update(approval_request)
                .where(t.id == req.id, t.status == PENDING, t.reminders == req.reminders)
                .values(reminders=n, reminded_at=now)
            ).rowcount
            if not won:
                return None
            self.record_audit(conn, req.id, "reminded", None, {"count": n})
        return n

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

    def audit_page(
        self, which: Any, *, after_id: int = 0, limit: int = 1000
    ) -> list[tuple[AuditEvent, ApprovalRequest | None]]:
        """One page of audit events after ``after_id``, oldest first, each with its request (``hitl.audit_export``).

        ``which`` is an ``AuditFilter`` (request, workflow, time range). The page's events first (by id), then their
        requests in one query: two short reads a page, whatever the size of the export.
        """
        a, t = audit_event.c, approval_request.c
        conditions: list[Any] = [a.id > after_id]
        if which.request_id is not None:
            conditions.append(a.request_id == which.request_id)
        if which.workflow is not None:
            conditions.append(a.request_id.in_(select(t.id).where(t.dag_id == which.workflow)))
        if which.since is not None:
            conditions.append(a.at >= which.since)
        if which.until is not None:
            conditions.append(a.at < which.until)
        with self.engine.connect() as conn:
            events = conn.execute(select(audit_event).where(*conditions).order_by(a.id).limit(limit)).all()
            ids = {r.request_id for r in events if r.request_id is not None}
            requests = (
                {r.id: ApprovalRequest.from_row(r) for r in conn.execute(select(approval_request).where(t.id.in_(ids)))}
                if ids
                else {}
            )
        return [
            (
                AuditEvent(r.id, r.request_id, r.event, r.actor, _aware(r.at), json.loads(r.detail)),  # type: ignore[arg-type]
                requests.get(r.request_id) if r.request_id is not None else None,
            )
            for r in events
        ]

    # -- comments ---------------------------------------------------------------------
    def add_comment(
        self,
        request_id: int,
        author: str,
        body: str,
        mentions: list[str],
        *,
        max_per_request: int,
        max_per_author: int,
        channel: str,
    ) -> Comment | str:
        """Append a comment (audited). At a bound, nothing is written and the bound's name comes back instead:
        "request" (the request holds ``max_per_request``) or "author" (this author wrote ``max_per_author``)."""
        now = utcnow()
        with self.writing() as conn:
            self.lock_status(conn, request_id)  # one writer at a time per request: the bounds hold under races
            on_request = select(func.count()).select_from(comment).where(comment.c.request_id == request_id)
            if conn.execute(on_request).scalar_one() >= max_per_request:
                return "request"
            if conn.execute(on_request.where(comment.c.author == author)).scalar_one() >= max_per_author:
                return "author"
            new_id = conn.execute(
                insert(comment).values(
                    request_id=request_id, author=author, body=body, mentions=canonical_json(mentions), created_at=now
                )
            ).inserted_primary_key[0]  # type: ignore[index]
            self.record_audit(
                conn, request_id, "commented", author, {"comment_id": new_id, "mentions": mentions, "channel": channel}
            )
        return Comment(int(new_id), request_id, author, body, list(mentions), now)

    def comments(self, request_id: int, *, limit: int = 500) -> list[Comment]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(comment).where(comment.c.request_id == request_id).order_by(comment.c.id).limit(limit)
            ).all()
        return [
            Comment(r.id, r.request_id, r.author, r.body, json.loads(r.mentions or "[]"), _aware(r.created_at))  # type: ignore[arg-type]
            for r in rows
        ]

    # -- the monitor's heartbeat --------------------------------------------------------
    # One row of hitl_side_effect (key MONITOR_HEARTBEAT) holds when the last sweep ran and its interval: a gate
    # with time bounds and the review page warn when no monitor sweeps. A row, not a table: no migration.
    MONITOR_HEARTBEAT = "hitl_monitor:heartbeat"

    def monitor_alive(self, now: datetime, interval: float) -> None:
        detail = canonical_json({"at": now.isoformat(), "interval": interval})
        row = {"key": self.MONITOR_HEARTBEAT, "kind": "heartbeat", "status": "done", "created_at": now}
        row["detail"] = detail
        with self.writing() as conn:
            changed = conn.execute(
                update(side_effect)
                .where(side_effect.c.key == self.MONITOR_HEARTBEAT)
                .values(status="done", created_at=now, detail=detail)
            ).rowcount
            if not changed:
                try:
                    with conn.begin_nested():
                        conn.execute(insert(side_effect).values(**row))
                except IntegrityError:  # another sweep wrote it first: it is alive either way
                    pass

    def monitor_last_seen(self) -> tuple[datetime, float] | None:
        """When the monitor last swept and at which interval (seconds), or None if it never did."""
        with self.engine.connect() as conn:
            row = conn.execute(select(side_effect).where(side_effect.c.key == self.MONITOR_HEARTBEAT)).first()
        at = _aware(row.created_at) if row is not None else None
        if row is None or at is None:
            return None
        return at, float(json.loads(row.detail or "{}").get("interval", 300))

    # -- at-most-once side effects ----------------------------------------------------
    def claim_side_effect(self, key: str, kind: str, *, claim: str | None = None) -> bool:
        """True for the first caller only: what it guards (sending an email) happens at most once.

        ``claim``: the caller's own token, for a caller that repeats the claim after an outage (the first
        try's commit may have reached the store while its answer did not): a claim already recorded
        with the same token, still started, is the caller's own, True again.
        """
        detail = canonical_json({"claim": claim}) if claim else "{}"
        try:
            with self.writing() as conn:
                conn.execute(
                    insert(side_effect).values(key=key, kind=kind, status="started", created_at=utcnow(), detail=detail)
                )
        except IntegrityError:
            if claim is None:
                return False
            found = self.side_effect(key)
            return found is not None and found[0] == "started" and found[1].get("claim") == claim
        return True

    def finish_side_effect(self, key: str, detail: dict[str, Any]) -> None:
        with self.writing() as conn:
            conn.execute(
                update(side_effect).where(side_effect.c.key == key).values(status="done", detail=canonical_json(detail))
            )

    def note_side_effect(self, key: str, detail: dict[str, Any]) -> None:
        """What a started side effect is about to do (its message id), kept while it is still "started"."""
        with self.writing() as conn:
            conn.execute(
                update(side_effect)
                .where(side_effect.c.key == key, side_effect.c.status == "started")
                .values(detail=canonical_json(detail))
            )

    def release_side_effect(self, key: str) -> None:
        with self.writing() as conn:
            conn.execute(delete(side_effect).where(side_effect.c.key == key, side_effect.c.status == "started"))

    def side_effect(self, key: str) -> tuple[str, dict[str, Any]] | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(side_effect).where(side_effect.c.key == key)).first()
        return (row.status, json.loads(row.detail)) if row else None

    def count_side_effects(self, prefix: str) -> int:
        """How many side-effect records have a key starting with ``prefix`` (the slots of a budget).

        LIKE, escaped, not a range on the key: a PostgreSQL collation need not order ``:`` and ``-`` as bytes."""
        with self.engine.connect() as conn:
            found = conn.execute(
                select(func.count())
                .select_from(side_effect)
                .where(side_effect.c.key.startswith(prefix, autoescape=True))
            ).scalar_one()
        return int(found)
