"""Reminders, escalation and expiry with a controlled clock."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest

from helpers import gate
from hitl.decisions import NotAllowed, decide
from hitl.identity import Reviewer
from hitl.monitor import EXPIRY_ACTOR, sweep
from hitl.store import APPROVED, PENDING, REJECTED, RequestQuery, Store


@pytest.fixture(autouse=True)
def _settings(configured: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__HITL__USER_EMAILS", "alice:alice@example.com,lead:lead@example.com")


def test_nothing_happens_without_time_bounds(sqlite_store: Store) -> None:
    req, _ = sqlite_store.record_request(gate())
    assert sweep(sqlite_store, req.created_at + timedelta(days=365)) == {
        "expired": [],
        "escalated": [],
        "reminded": [],
        "renotified": [],
    }
    assert sqlite_store.get(req.id).status == PENDING  # type: ignore[union-attr]


def test_reminders_repeat_every_interval_and_email_once_each(sqlite_store: Store, smtp_server: Any) -> None:
    req, _ = sqlite_store.record_request(gate(remind_after=3600))
    t0 = req.created_at
    assert sweep(sqlite_store, t0 + timedelta(minutes=59))["reminded"] == []
    assert sweep(sqlite_store, t0 + timedelta(minutes=61))["reminded"] == [req.id]
    assert sweep(sqlite_store, t0 + timedelta(minutes=62))["reminded"] == []  # not again within the interval
    assert sweep(sqlite_store, t0 + timedelta(minutes=122))["reminded"] == [req.id]
    assert [m["Subject"].split("]")[0] for m in smtp_server.messages] == [
        "[Reminder: approval needed",
        "[Reminder: approval needed",
    ]
    assert [e.detail["count"] for e in sqlite_store.history(req.id) if e.event == "reminded"] == [1, 2]


def test_escalation_notifies_and_lets_the_new_approver_decide(sqlite_store: Store, smtp_server: Any) -> None:
    req, _ = sqlite_store.record_request(gate(escalate_after=7200, escalate_to=[{"userId": "lead"}]))
    lead = Reviewer("lead", roles=frozenset({"user"}))
    with pytest.raises(NotAllowed):
        decide(sqlite_store, req.id, lead, "approve")
    assert sweep(sqlite_store, req.created_at + timedelta(hours=2))["escalated"] == [req.id]
    assert sweep(sqlite_store, req.created_at + timedelta(hours=3))["escalated"] == []  # once
    assert [m["To"] for m in smtp_server.messages] == ["lead@example.com"]
    assert smtp_server.messages[0]["Subject"].startswith("[Escalated: approval needed]")
    assert sqlite_store.count(RequestQuery(decidable_by=lead)) == 1  # the inbox shows it to the lead now
    assert decide(sqlite_store, req.id, lead, "approve").request.status == APPROVED


def test_expiry_rejects_once_and_never_approves(sqlite_store: Store) -> None:
    req, _ = sqlite_store.record_request(gate(expire_after=86400))
    assert sweep(sqlite_store, req.created_at + timedelta(hours=23))["expired"] == []
    assert sweep(sqlite_store, req.created_at + timedelta(hours=25))["expired"] == [req.id]
    assert sweep(sqlite_store, req.created_at + timedelta(hours=26))["expired"] == []
    final = sqlite_store.get(req.id)
    assert final is not None and final.status == REJECTED and final.decided_by == EXPIRY_ACTOR
    assert final.comment is not None and final.comment.endswith("no decision within 1d (onExpire: reject)")
    assert [e.event for e in sqlite_store.history(req.id)].count("expired") == 1


def test_an_expired_gate_skips_downstream(sqlite_store: Store) -> None:
    from airflow.triggers.base import TaskSkippedEvent

    from hitl.trigger import ApprovalTrigger

    req, _ = sqlite_store.record_request(gate(expire_after=60))
    sweep(sqlite_store, req.created_at + timedelta(minutes=2))

    async def first() -> Any:
        agen = ApprovalTrigger(request_id=req.id, poll_interval=0.1).run()
        try:
            return await asyncio.wait_for(agen.__anext__(), 10)
        finally:
            await agen.aclose()  # type: ignore[attr-defined]

    event = asyncio.run(first())
    assert isinstance(event, TaskSkippedEvent)
    assert event.xcoms["hitl_decision"]["decided_by"] == EXPIRY_ACTOR  # type: ignore[call-overload, index]


# -- the monitor's cost and its absence ---------------------------------------------------------------------


def test_a_sweep_leaves_a_heartbeat_and_a_bounded_gate_warns_without_one(sqlite_store: Store) -> None:
    from hitl.monitor import monitor_warning

    req, _ = sqlite_store.record_request(gate(remind_after=3600, expire_after=7200))
    unbounded, _ = sqlite_store.record_request(gate(run_id="manual__2"))
    warning = monitor_warning(sqlite_store, req, req.created_at)
    assert warning is not None and warning.startswith("remind_after and expire_after are set, but the hitl_monitor")
    assert "no sweep has ever run" in warning and "python -m hitl monitor install" in warning
    assert monitor_warning(sqlite_store, unbounded, req.created_at) is None  # nothing to remind: nothing to say

    sweep(sqlite_store, req.created_at)
    assert monitor_warning(sqlite_store, req, req.created_at + timedelta(minutes=10)) is None
    stale = monitor_warning(sqlite_store, req, req.created_at + timedelta(hours=1))  # 3 x 300 s + 60 s passed
    assert stale is not None and "its last sweep was at" in stale


def test_the_monitor_dag_runs_once_a_day_and_a_run_by_hand_sweeps_once() -> None:
    from types import SimpleNamespace

    from hitl.factory import build_monitor_dag
    from hitl.monitor import monitor_interval, sweeping_until

    dag = build_monitor_dag()
    assert dag.timetable.expression == "0 0 * * *"  # once a day
    assert dag.max_active_runs == 2  # the day's run and one started by hand, side by side
    end = utc(2026, 12, 3)
    scheduled = {"dag_run": SimpleNamespace(run_type="scheduled"), "data_interval_end": end}
    assert sweeping_until(scheduled) == end + timedelta(days=1) - monitor_interval() / 2
    assert sweeping_until({"dag_run": SimpleNamespace(run_type="manual"), "data_interval_end": end}) is None


def utc(*args: int) -> Any:
    from datetime import UTC, datetime

    return datetime(*args, tzinfo=UTC)  # type: ignore[arg-type, misc]
