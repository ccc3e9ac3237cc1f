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
            await agen.aclose()

    event = asyncio.run(first())
    assert isinstance(event, TaskSkippedEvent)
    assert event.xcoms["hitl_decision"]["decided_by"] == EXPIRY_ACTOR  # type: ignore[index]
