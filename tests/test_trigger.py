"""ApprovalTrigger and the shared DecisionWatcher, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import importlib
import json
from typing import Any

import pytest
from airflow.triggers.base import TaskSkippedEvent, TaskSuccessEvent, TriggerEvent

from helpers import first_event, gate, wait_until
from hitl.decisions import decide
from hitl.identity import Reviewer
from hitl.store import Store
from hitl.store.watcher import watcher_for
from hitl.trigger import ApprovalTrigger

ALICE = Reviewer("alice")


@pytest.fixture(autouse=True)
def _use_store(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__HITL__STORE_URL", store.url)


def test_serialize_round_trip_names_an_importable_class_and_no_secrets(store: Store) -> None:
    path, kwargs = ApprovalTrigger(request_id=7, poll_interval=0.5).serialize()
    module, _, name = path.rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    assert cls is ApprovalTrigger
    assert kwargs == {"request_id": 7, "poll_interval": 0.5}
    json.dumps(kwargs)  # plain arguments only
    clone = cls(**kwargs)
    assert clone.serialize() == (path, kwargs)


def _decide_later(store: Store, request_id: int, delay: float, **kwargs: object) -> asyncio.Task[None]:
    async def later() -> None:
        await asyncio.sleep(delay)
        await asyncio.to_thread(decide, store, request_id, ALICE, **kwargs)  # type: ignore[arg-type]

    return asyncio.ensure_future(later())


def test_approve_ends_the_task_with_the_edited_output(store: Store) -> None:
    req, _ = store.record_request(gate())
    edited = dict(req.output, subject="Edited")

    async def main() -> TriggerEvent:
        task = _decide_later(store, req.id, 0.3, action="approve", edited_output=edited)
        event = await first_event(ApprovalTrigger(request_id=req.id, poll_interval=0.1))
        await task
        return event

    event = asyncio.run(main())
    assert isinstance(event, TaskSuccessEvent)
    assert event.xcoms is not None
    assert event.xcoms["return_value"] == edited
    assert event.xcoms["hitl_decision"]["decided_by"] == "alice"  # type: ignore[call-overload, index]


def test_reject_skips_the_task(store: Store) -> None:
    req, _ = store.record_request(gate())

    async def main() -> TriggerEvent:
        task = _decide_later(store, req.id, 0.3, action="reject", comment="not this one")
        event = await first_event(ApprovalTrigger(request_id=req.id, poll_interval=0.1))
        await task
        return event

    event = asyncio.run(main())
    assert isinstance(event, TaskSkippedEvent)
    assert event.xcoms["hitl_decision"]["comment"] == "not this one"  # type: ignore[call-overload, index]


def test_already_decided_fires_at_once(store: Store) -> None:
    req, _ = store.record_request(gate())
    decide(store, req.id, ALICE, "approve")
    event = asyncio.run(first_event(ApprovalTrigger(request_id=req.id, poll_interval=60), timeout=10))
    assert isinstance(event, TaskSuccessEvent)


def test_superseded_goes_back_to_the_worker(store: Store) -> None:
    req, _ = store.record_request(gate())

    async def main() -> TriggerEvent:
        async def supersede() -> None:
            await asyncio.sleep(0.3)
            await asyncio.to_thread(store.record_request, gate(output={**req.output, "body": "new"}))

        task = asyncio.ensure_future(supersede())
        event = await first_event(ApprovalTrigger(request_id=req.id, poll_interval=0.1))
        await task
        return event

    event = asyncio.run(main())
    assert type(event) is TriggerEvent and event.payload["status"] == "superseded"


def test_parked_gates_cost_one_query_per_look_whatever_their_number(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No safety look (by id, one query per 500 gates) inside the counted looks, however slow the machine.
    monkeypatch.setenv("AIRFLOW__HITL__SAFETY_POLL_INTERVAL", "3600")
    from sqlalchemy import event

    reqs = [store.record_request(gate(run_id=f"run_{i}"))[0] for i in range(1200)]
    statements: list[str] = []

    async def main() -> tuple[int, int, int, int]:
        triggers = [ApprovalTrigger(request_id=r.id, poll_interval=0.2) for r in reqs]
        tasks = [asyncio.ensure_future(first_event(t, timeout=60)) for t in triggers]
        await asyncio.sleep(0)
        watcher = watcher_for(store.url, 0.2)
        await wait_until(lambda: watcher.polls >= 1 and not watcher._fresh)  # every newcomer looked up once
        event.listen(watcher._engine_for().sync_engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
        start = watcher.polls
        for _ in range(3):  # three looks with nothing decided: one query each, not one per 500 gates
            looked = watcher.polls
            watcher._wake.set()
            await wait_until(lambda looked=looked: watcher.polls > looked)  # type: ignore[misc]
        idle_polls, idle_queries = watcher.polls - start, len(statements)
        for r in reqs[:3]:
            await asyncio.to_thread(decide, store, r.id, ALICE, "approve")
        done = await asyncio.wait_for(asyncio.gather(*tasks[:3]), 30)
        assert all(isinstance(e, TaskSuccessEvent) for e in done)
        for t in tasks[3:]:
            t.cancel()
        await asyncio.gather(*tasks[3:], return_exceptions=True)
        return idle_polls, idle_queries, len(watcher._waiters), len(watcher._fresh)

    polls, queries, left, fresh = asyncio.run(main())
    # 1,200 parked gates: one query per look (the decisions since the last one), not one per gate or per chunk.
    assert polls >= 3 and queries <= polls + 1, (polls, queries)
    assert left == 0 and fresh == 0  # cancelled triggers leave nothing behind


def test_an_idle_sqlite_store_is_not_queried_between_safety_looks(store: Store) -> None:
    if not store.url.startswith("sqlite"):
        pytest.skip("the file stamp is SQLite's change signal; PostgreSQL's LISTEN is tested in tests/store")
    req, _ = store.record_request(gate())

    async def main() -> tuple[int, int, TriggerEvent]:
        waiting = asyncio.ensure_future(first_event(ApprovalTrigger(request_id=req.id, poll_interval=0.05), timeout=30))
        await asyncio.sleep(0)
        watcher = watcher_for(store.url, 0.05)
        await wait_until(lambda: watcher.polls >= 1)
        looked = watcher.polls
        stats: list[object] = []
        stamp = watcher._file_stamp
        watcher._file_stamp = lambda: stats.append(1) or stamp()  # type: ignore[func-returns-value, method-assign]
        await wait_until(lambda: len(stats) >= 20)  # twenty looks at the file's stamp, nothing written to it
        idle = watcher.polls - looked
        await asyncio.to_thread(decide, store, req.id, ALICE, "approve")  # the write changes the file: a look
        return looked, idle, await waiting

    _, idle, event = asyncio.run(main())
    assert idle == 0, f"{idle} looks at an unchanged store"
    assert isinstance(event, TaskSuccessEvent)


def test_a_decision_stamped_by_a_clock_far_behind_is_seen_at_the_safety_look(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """decided_at comes from the decider's clock: two hours behind the triggerer's, the id look still finds it."""
    from datetime import timedelta

    import hitl.store.repository as repository
    from hitl.store import utcnow
    from hitl.store.watcher import DecisionWatcher

    req, _ = store.record_request(gate())

    async def main() -> tuple[Any, float]:
        watcher = DecisionWatcher(store.url, 0.05, safety_interval=1.0)
        waiting = asyncio.ensure_future(watcher.wait(req.id))
        await wait_until(lambda: watcher.polls >= 1 and not watcher._fresh)
        monkeypatch.setattr(repository, "utcnow", lambda: utcnow() - timedelta(hours=2))  # the decider's clock
        started = asyncio.get_running_loop().time()
        await asyncio.to_thread(decide, store, req.id, ALICE, "approve")
        decided = await asyncio.wait_for(waiting, 20)
        return decided, asyncio.get_running_loop().time() - started

    decided, took = asyncio.run(main())
    assert decided.status == "approved"
    assert decided.decided_at < utcnow() - timedelta(hours=1)  # the skewed stamp was written
    assert took < 15, took  # within a safety interval or so (PostgreSQL: at once, the NOTIFY names the id)


def test_a_symlinked_sqlite_store_still_signals_its_changes(tmp_path: Any) -> None:
    """SQLite keeps the -wal beside the link's target: the watcher stats the target's files."""
    import os

    from hitl.store.watcher import DecisionWatcher

    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "link"
    link.mkdir()
    real_store = Store(f"sqlite:///{real / 'hitl.db'}")
    real_store.upgrade()
    os.symlink(real / "hitl.db", link / "hitl.db")
    store = Store(f"sqlite:///{link / 'hitl.db'}")
    req, _ = store.record_request(gate())

    async def main() -> float:
        watcher = DecisionWatcher(store.url, 0.05, safety_interval=60)
        waiting = asyncio.ensure_future(watcher.wait(req.id))
        await wait_until(lambda: watcher.polls >= 1 and not watcher._fresh)
        started = asyncio.get_running_loop().time()
        await asyncio.to_thread(decide, store, req.id, ALICE, "approve")
        await asyncio.wait_for(waiting, 30)
        return asyncio.get_running_loop().time() - started

    assert asyncio.run(main()) < 30  # the file signal, not the 60 s safety look
