"""PostgreSQL only: a decision's NOTIFY wakes the parked trigger before its poll interval."""

from __future__ import annotations

import asyncio
import time

import pytest
from airflow.triggers.base import TaskSuccessEvent, TriggerEvent

from helpers import first_event, gate, wait_until
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

    async def main() -> tuple[TriggerEvent, int, float]:
        trigger = ApprovalTrigger(request_id=req.id, poll_interval=120)
        waiting = asyncio.ensure_future(first_event(trigger, timeout=60))
        await asyncio.sleep(0)
        watcher = watcher_for(store.url, 120)
        await wait_until(lambda: watcher.polls >= 1)  # parked: the first look has run, the next is two minutes away
        looked = watcher.polls
        started = time.monotonic()
        await asyncio.to_thread(decide, store, req.id, ALICE, "approve")
        event = await waiting
        return event, watcher.polls - looked, time.monotonic() - started

    event, polls, took = asyncio.run(main())
    assert isinstance(event, TaskSuccessEvent)
    assert polls == 1 and took < 60  # one look, woken by NOTIFY; the 120 s interval never passed
