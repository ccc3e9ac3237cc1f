"""The monitor: acts on pending requests that have waited too long (remind, escalate, expire).

Time bounds are off unless a spec sets them. Every action is a conditional update, so two
sweeps at once still remind, escalate or expire a request once, and each is audited once.
Expiry only ever rejects: a gate never opens because nobody answered.

The ``hitl_monitor`` DAG (built by ``hitl.factory.build_monitor_dag``) runs ``sweep``. Its cost is kept
honest: one run a day (not one every 5 minutes, which made 288 runs a day in Airflow's DAG list), whose one
task sweeps, then *defers* for ``[hitl] monitor_interval_seconds`` (a timer in the triggerer: no worker
slot held) and sweeps again, until the day is over. A run started by hand (Trigger) sweeps once and ends.

Each sweep writes a heartbeat in the store (``Store.monitor_alive``). A gate with time bounds logs a
warning, and its review page shows one, when no sweep has been seen lately (``monitor_warning``): without
the DAG, ``remind_after``, ``escalate_after`` and ``expire_after`` would silently do nothing. A team without
a specs folder gets the DAG with ``python -m hitl monitor install`` (``hitl.monitor_install``).
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
    try:
        store.monitor_alive(now, monitor_interval().total_seconds())
    except Exception as exc:  # the heartbeat only feeds a warning: a sweep that acted is not undone by it
        log.warning("hitl monitor: could not record its heartbeat: %s", exc)
    return done


class SweepOperator(BaseOperator):
    """The monitor DAG's one task: sweep, wait ``monitor_interval`` deferred, sweep again, until the day ends."""

    ui_color = "#e0e7ff"
    template_fields: Sequence[str] = ()

    def execute(self, context: Any) -> dict[str, list[int]] | None:
        return self._look(context)

    def look_again(self, context: Any, event: Any = None) -> dict[str, list[int]] | None:
        return self._look(context)

    def _look(self, context: Any) -> dict[str, list[int]] | None:
        from hitl.store import utcnow

        done = sweep()
        self.log.info("hitl monitor: %s", {k: len(v) for k, v in done.items()})
        until = sweeping_until(context)
        next_look = utcnow() + monitor_interval()
        if until is None or next_look >= until:
            return done
        from airflow.providers.standard.triggers.temporal import DateTimeTrigger

        self.defer(trigger=DateTimeTrigger(moment=next_look), method_name="look_again")
        return None  # pragma: no cover - defer raises


def sweeping_until(context: Any) -> datetime | None:
    """When a run of the monitor stops looking: a scheduled (daily) run just before the next one is due, a run
    started by hand after one sweep (None)."""
    dag_run = context.get("dag_run")
    if dag_run is None or str(getattr(dag_run, "run_type", "")).lower().rsplit(".", 1)[-1] != "scheduled":
        return None
    end = context.get("data_interval_end") or getattr(dag_run, "data_interval_end", None)
    if end is None:
        return None
    return end + MONITOR_RUN_SPAN - monitor_interval() / 2


MONITOR_RUN_SPAN = timedelta(days=1)  # the DAG's schedule: one run a day


def monitor_interval() -> timedelta:
    from hitl.settings import number

    return timedelta(seconds=max(number("monitor_interval_seconds"), 1.0))


def monitor_warning(store: Any, req: Any, now: datetime | None = None) -> str | None:
    """Why ``req``'s time bounds may do nothing (no monitor sweep seen lately), or None when all is well."""
    from hitl.store import utcnow

    bounds = [
        name
        for name, value in (
            ("remind_after", req.remind_after),
            ("escalate_after", req.escalate_after),
            ("expire_after", req.expire_after),
        )
        if value is not None
    ]
    if not bounds:
        return None
    now = now or utcnow()
    try:
        seen = store.monitor_last_seen()
    except Exception:  # the store is down: the page and the gate say so elsewhere
        return None
    if seen is not None:
        at, interval = seen
        if (now - at).total_seconds() <= 3 * interval + 60:
            return None
        since = f"its last sweep was at {at.isoformat(timespec='seconds')}"
    else:
        since = "no sweep has ever run"
    return (
        f"{' and '.join(bounds)} {'is' if len(bounds) == 1 else 'are'} set, but the hitl_monitor DAG is not running"
        f" ({since}): reminders, escalation and expiry will not happen. Add it with `python -m hitl monitor install`"
        " (or the DAG file dags/hitl_workflows.py) and unpause it."
    )
