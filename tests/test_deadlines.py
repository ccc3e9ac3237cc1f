"""Deadlines hold when a decision is written: expireAfter and the gate's timeout are applied by decide itself."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import update

from helpers import gate
from hitl.decisions import AlreadyDecided, decide
from hitl.identity import Reviewer
from hitl.store import EXPIRY_ACTOR, PENDING, REJECTED, TIMED_OUT, TIMEOUT_ACTOR, Store, utcnow
from hitl.store.schema import approval_request

ALICE = Reviewer("alice")


@pytest.fixture(autouse=True)
def _no_airflow_db(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__HITL__END_GATE_FROM_DECIDER", "false")


def _age(store: Store, request_id: int, seconds: int) -> None:
    with store.writing() as conn:
        conn.execute(
            update(approval_request)
            .where(approval_request.c.id == request_id)
            .values(created_at=utcnow() - timedelta(seconds=seconds))
        )


def test_approval_after_expire_after_is_refused_and_the_request_expires(store: Store) -> None:
    req, _ = store.record_request(gate(expire_after=60))
    _age(store, req.id, 61)
    with pytest.raises(AlreadyDecided, match=r"expired at .* no decision within 1m \(onExpire: reject\)"):
        decide(store, req.id, ALICE, "approve")
    final = store.get(req.id)
    assert final is not None and final.status == REJECTED and final.decided_by == EXPIRY_ACTOR
    assert store.votes(req.id) == []
    assert [e.event for e in store.history(req.id)] == ["requested", "expired", "refused"]


def test_approval_before_the_deadline_still_counts(store: Store) -> None:
    req, _ = store.record_request(gate(expire_after=60, timeout=120))
    _age(store, req.id, 30)
    assert decide(store, req.id, ALICE, "approve").request.status == "approved"


def test_approval_after_the_gate_timeout_is_refused_and_clearing_asks_again(store: Store) -> None:
    req, _ = store.record_request(gate(timeout=3600))
    _age(store, req.id, 3601)
    with pytest.raises(AlreadyDecided, match=r"timed out at .* the gate's timeout of 1h passed"):
        decide(store, req.id, ALICE, "approve")
    closed = store.get(req.id)
    assert closed is not None and closed.status == TIMED_OUT and closed.decided_by == TIMEOUT_ACTOR
    # Clearing the gate runs the sensor again with the same output: a new request, not the closed one.
    again, created = store.record_request(gate(timeout=3600))
    assert created and again.id != req.id and again.status == PENDING
    assert decide(store, again.id, ALICE, "approve").request.status == "approved"


def test_the_earlier_of_two_deadlines_wins(store: Store) -> None:
    req, _ = store.record_request(gate(timeout=60, expire_after=3600))
    _age(store, req.id, 61)
    with pytest.raises(AlreadyDecided, match="timed out"):
        decide(store, req.id, ALICE, "reject", comment="late")


def test_a_gate_timeout_closes_its_request_and_fails_without_retry(
    sqlite_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the worker does when the trigger times out: the request closes, so a late approval cannot count."""
    from types import SimpleNamespace

    from airflow.sdk.exceptions import AirflowFailException

    from hitl.sensor import ApprovalSensor
    from hitl.store import _store_for

    monkeypatch.setenv("AIRFLOW__HITL__STORE_URL", sqlite_store.url)
    _store_for.cache_clear()
    req, _ = sqlite_store.record_request(gate(timeout=60))
    _age(sqlite_store, req.id, 61)
    sensor = ApprovalSensor(task_id=req.gate_task_id, step_id=req.step_id, timeout=60)
    ti = SimpleNamespace(dag_id=req.dag_id, run_id=req.run_id, task_id=req.gate_task_id, map_index=-1)
    try:
        with pytest.raises(AirflowFailException, match="timed out"):
            sensor.resume_execution("__fail__", {"error": "Trigger timeout"}, {"ti": ti})
    finally:
        _store_for.cache_clear()
    closed = sqlite_store.get(req.id)
    assert closed is not None and closed.status == TIMED_OUT
    with pytest.raises(AlreadyDecided):
        decide(sqlite_store, req.id, ALICE, "approve")
