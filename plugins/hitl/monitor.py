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
    from hitl.metrics import metrics
    from hitl.notify import notify, notify_requested
    from hitl.store import PENDING, get_store, utcnow

    store = store or get_store()
    now = now or utcnow()
    done: dict[str, list[int]] = {"expired": [], "escalated": [], "reminded": [], "renotified": []}
    ids, failed = store.sweep_candidates()
    for request_id in ids:
        req = store.get(request_id)
        if req is None or req.status != PENDING:
            continue
        age = (now - req.created_at).total_seconds()
        if req.overdue(now):
            with store.writing() as conn:
                closed = store.close_overdue(conn, req, now)
            if closed:
                done["expired"].append(req.id)
                metrics.decided(store.get(req.id) or req, "expiry")
            continue
        if req.escalate_after is not None and req.escalated_at is None and age >= req.escalate_after:
            if store.escalate(req, now):
                done["escalated"].append(req.id)
                escalated = store.get(req.id)
                if escalated is not None:
                    notify(escalated, "escalated", escalated.escalate_to, store=store)
            continue
        if req.remind_after is not None:
            since = req.reminded_at or req.created_at
            if (now - since).total_seconds() >= req.remind_after:
                n = store.count_reminder(req, now)
                if n:
                    done["reminded"].append(req.id)
                    current = store.get(req.id)
                    if current is not None:
                        notify(current, f"reminder-{n}", current.approvers, store=store)
    for request_id in failed:  # a channel was down: try the first announcement again
        req = store.get(request_id)
        if req is not None and req.status == PENDING:
            notify_requested(req, store=store)
            done["renotified"].append(request_id)
    metrics.pending(store.pending_by_workflow())
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
