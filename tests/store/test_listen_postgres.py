"""PostgreSQL only: a decision's NOTIFY wakes the parked trigger before its poll interval."""

from __future__ import annotations

import asyncio

import pytest
from airflow.triggers.base import TaskSuccessEvent, TriggerEvent

from helpers import first_event, gate
from hitl.decisions import decide
from hitl.identity import Reviewer
from hitl.store import Store
from hitl.store.watcher import watcher_for
from hitl.trigger import ApprovalTrigger

ALICE = Reviewer("alice")


def test_postgres_listen_wakes_the_trigger_before_the_poll_interval(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store(pg_url)
    store.upgrade()
    monkeypatch.setenv("AIRFLOW__HITL__STORE_URL", pg_url)
    req, _ = store.record_request(gate())

    async def main() -> tuple[TriggerEvent, int]:
        trigger = ApprovalTrigger(request_id=req.id, poll_interval=120)
        waiting = asyncio.ensure_future(first_event(trigger, timeout=30))
        await asyncio.sleep(1.0)  # parked: the first poll has run, the next is two minutes away
        await asyncio.to_thread(decide, store, req.id, ALICE, "approve")
        event = await waiting
        return event, watcher_for(store.url, 120).polls

    event, polls = asyncio.run(main())
    assert isinstance(event, TaskSuccessEvent)
    assert polls == 2  # the first look, then the NOTIFY wake-up; no interval passed
