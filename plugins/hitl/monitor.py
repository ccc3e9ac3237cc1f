"""The monitor: acts on pending requests that have waited too long (remind, escalate, expire).

Time bounds are off unless a spec sets them. Every action is a conditional update, so two
sweeps at once still remind, escalate or expire a request once, and each is audited once.
Expiry only ever rejects: a gate never opens because nobody answered.
The ``hitl_monitor`` DAG (built by ``hitl.factory.build_monitor_dag``) runs ``sweep``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import BaseOperator

log = logging.getLogger(__name__)
EXPIRY_ACTOR = "hitl:expiry"  # = hitl.store.EXPIRY_ACTOR; not imported here: the DAG file must not load the store


def sweep(store: Any = None, now: datetime | None = None) -> dict[str, list[int]]:
    """One pass over pending requests. Returns the ids acted on, per action."""
    from sqlalchemy import insert, or_, select, update

    from hitl.notify import notify, notify_requested
    from hitl.store import PENDING, approver_rows, canonical_json, get_store, utcnow
    from hitl.store.schema import approval_request, audit_event, request_approver

    store = store or get_store()
    now = now or utcnow()
    done: dict[str, list[int]] = {"expired": [], "escalated": [], "reminded": [], "renotified": []}
    t = approval_request.c
    with store.engine.connect() as conn:
        ids = list(
            conn.execute(
                select(t.id).where(
                    t.status == PENDING,
                    or_(
                        t.expire_after.is_not(None),
                        t.timeout.is_not(None),
                        t.escalate_after.is_not(None),
                        t.remind_after.is_not(None),
                    ),
                )
            ).scalars()
        )
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
    for request_id in ids:
        req = store.get(request_id)
        if req is None or req.status != PENDING:
            continue
        age = (now - req.created_at).total_seconds()
        if req.overdue(now):
            with store.writing() as conn:
                if store.close_overdue(conn, req, now):
                    done["expired"].append(req.id)
            continue
        if req.escalate_after is not None and req.escalated_at is None and age >= req.escalate_after:
            approvers = req.approvers + [a for a in req.escalate_to if a not in req.approvers]
            with store.writing() as conn:
                won = conn.execute(
                    update(approval_request)
                    .where(t.id == req.id, t.status == PENDING, t.escalated_at.is_(None))
                    .values(escalated_at=now, approvers=canonical_json(approvers))
                ).rowcount
                if won:
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
                    store.record_audit(conn, req.id, "escalated", None, {"to": req.escalate_to})
            if won:
                done["escalated"].append(req.id)
                escalated = store.get(req.id)
                if escalated is not None:
                    notify(escalated, "escalated", escalated.escalate_to, store=store)
            continue
        if req.remind_after is not None:
            since = req.reminded_at or req.created_at
            if (now - since).total_seconds() >= req.remind_after:
                n = req.reminders + 1
                with store.writing() as conn:
                    won = conn.execute(
                        update(approval_request)
                        .where(t.id == req.id, t.status == PENDING, t.reminders == req.reminders)
                        .values(reminders=n, reminded_at=now)
                    ).rowcount
                    if won:
                        store.record_audit(conn, req.id, "reminded", None, {"count": n})
                if won:
                    done["reminded"].append(req.id)
                    current = store.get(req.id)
                    if current is not None:
                        notify(current, f"reminder-{n}", current.approvers, store=store)
    for request_id in failed:  # a channel was down: try the first announcement again
        req = store.get(request_id)
        if req is not None and req.status == PENDING:
            notify_requested(req, store=store)
            done["renotified"].append(request_id)
    return done


class SweepOperator(BaseOperator):
    """The monitor DAG's one task."""

    ui_color = "#e0e7ff"
    template_fields: Sequence[str] = ()

    def execute(self, context: Any) -> dict[str, list[int]]:
        done = sweep()
        self.log.info("hitl monitor: %s", {k: len(v) for k, v in done.items()})
        return done


def monitor_interval() -> timedelta:
    from hitl.config import conf_get

    return timedelta(seconds=int(conf_get("hitl", "monitor_interval_seconds", "300")))
