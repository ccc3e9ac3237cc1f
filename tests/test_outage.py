"""When the decision store is down: a starting gate retries (not fails its run), the watcher logs the outage once."""

from __future__ import annotations

import asyncio
import logging
import time
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError

from hitl.sensor import ApprovalSensor
from hitl.store import _store_for
from hitl.store.watcher import DecisionWatcher

DEAD_STORE = "postgresql://nobody@127.0.0.1:9/none?connect_timeout=2"


@pytest.fixture
def dead_store(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("AIRFLOW__HITL__STORE_URL", DEAD_STORE)
    _store_for.cache_clear()
    yield DEAD_STORE
    _store_for.cache_clear()


def test_a_gate_that_starts_during_an_outage_raises_a_retryable_error(dead_store: str) -> None:
    from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

    gate = ApprovalSensor(task_id="draft__approval", step_id="draft", approvers=[{"userId": "alice"}])
    ti = SimpleNamespace(
        dag_id="d", run_id="r", task_id="draft__approval", map_index=-1, try_number=1, xcom_pull=lambda **_: {"a": 1}
    )
    with pytest.raises(OperationalError) as info:
        gate.execute({"ti": ti, "dag_run": SimpleNamespace(triggering_user_name=None)})
    # Not a fail-fast or skip exception: Airflow retries it, with backoff, before the run fails.
    assert not isinstance(info.value, AirflowFailException | AirflowSkipException)
    assert gate.retries >= 3 and gate.retry_exponential_backoff  # type: ignore[operator]


def test_the_watcher_logs_an_outage_once_and_keeps_waiting(caplog: pytest.LogCaptureFixture) -> None:
    watcher = DecisionWatcher(DEAD_STORE.replace("postgresql://", "postgresql+asyncpg://").split("?")[0], 0.05)

    async def main() -> None:
        waiting = asyncio.ensure_future(watcher.wait(1))
        deadline = asyncio.get_running_loop().time() + 60
        while watcher.failures < 3:  # three polls in a row failed
            assert asyncio.get_running_loop().time() < deadline, watcher.failures
            await asyncio.sleep(0.05)
        assert not waiting.done()  # the gate keeps waiting through the outage
        waiting.cancel()
        await asyncio.gather(waiting, return_exceptions=True)

    with caplog.at_level(logging.ERROR, logger="hitl.store.watcher"):
        asyncio.run(main())
    outages = [r for r in caplog.records if "decision store is unavailable" in r.getMessage()]
    assert len(outages) == 1, [r.getMessage() for r in caplog.records]


class Clock:
    """A clock the wait's sleeps move forward: the wait's bound is checked without waiting for real."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def outage_error() -> OperationalError:
    return OperationalError("SELECT 1", {}, ConnectionRefusedError("connection refused"))


def test_a_store_read_waits_out_an_outage_with_backoff_and_logs_it_once(caplog: pytest.LogCaptureFixture) -> None:
    from hitl.store.outage import through_outage

    clock, calls = Clock(), []

    def read() -> str:
        calls.append(clock.now)
        if len(calls) <= 6:
            raise outage_error()
        return "approved"

    with caplog.at_level(logging.WARNING, logger="hitl.store.outage"):
        assert through_outage("checking the approval", read, wait=300, sleep=clock.sleep, clock=lambda: clock.now) == (
            "approved"
        )
    assert len(calls) == 7
    assert clock.sleeps == sorted(clock.sleeps) and clock.sleeps[0] < clock.sleeps[-1]  # backing off
    lines = [r.getMessage() for r in caplog.records]
    assert len([m for m in lines if "unavailable" in m]) == 1, lines
    assert len([m for m in lines if "is back" in m]) == 1, lines
    assert "checking the approval" in lines[0] and "up to 300 s" in lines[0]


def test_the_wait_is_bounded_then_the_outage_is_raised() -> None:
    from hitl.store.outage import through_outage

    clock, calls = Clock(), []

    def read() -> None:
        calls.append(clock.now)
        raise outage_error()

    with pytest.raises(OperationalError):
        through_outage("checking the approval", read, wait=60, sleep=clock.sleep, clock=lambda: clock.now)
    assert calls[-1] >= 60 and sum(clock.sleeps) <= 60  # it gave up at the bound, not before, not long after
    assert max(clock.sleeps) <= 15


def test_other_errors_are_not_an_outage_and_raise_at_once() -> None:
    from sqlalchemy.exc import IntegrityError

    from hitl.store.outage import through_outage

    calls = []

    def write() -> None:
        calls.append(1)
        raise IntegrityError("INSERT", {}, Exception("duplicate key"))

    with pytest.raises(IntegrityError):
        through_outage("the email ledger", write, wait=300, sleep=lambda s: None)
    assert calls == [1]


def test_store_outage_wait_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    from hitl.store.outage import DEFAULT_WAIT, outage_wait

    monkeypatch.delenv("AIRFLOW__HITL__STORE_OUTAGE_WAIT", raising=False)
    assert outage_wait() == DEFAULT_WAIT
    monkeypatch.setenv("AIRFLOW__HITL__STORE_OUTAGE_WAIT", "90")
    assert outage_wait() == 90
    monkeypatch.setenv("AIRFLOW__HITL__STORE_OUTAGE_WAIT", "soon")
    with pytest.raises(ValueError, match=r"\[hitl\] store_outage_wait: 'soon' is not a number of seconds"):
        outage_wait()


def test_the_guard_waits_for_a_postgres_store_behind_a_cut_connection(
    pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A real outage: the store's PostgreSQL reached through a proxy the test cuts, then restores."""
    import threading

    from sqlalchemy.engine import make_url

    from hitl.decisions import decide
    from hitl.gate import GateOptions
    from hitl.guard import check_approval
    from hitl.identity import Reviewer
    from hitl.store import GateRequest, Store
    from hitl_devstack.tcpproxy import TcpProxy

    url = make_url(pg_url)
    direct = Store(pg_url)
    direct.upgrade()
    req, _ = direct.record_request(
        GateRequest(
            dag_id="d",
            run_id="r",
            step_id="draft",
            gate_task_id="draft__approval",
            map_index=-1,
            try_number=1,
            output={"to": "pat@example.com"},
            output_kind="json",
            summary="",
            options=GateOptions(approvers=[{"userId": "alice"}]),
            triggered_by=None,
        )
    )
    proxy = TcpProxy(target=(url.host or "127.0.0.1", url.port or 5432)).up()
    behind = Store(url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False))
    try:
        assert behind.get(req.id) is not None  # a pooled connection, which the outage will cut
        proxy.down()
        decide(direct, req.id, Reviewer("alice"), "approve", channel="cli")  # approved just as the store went away
        result: dict[str, object] = {}

        def step() -> None:
            try:
                result["approved"] = check_approval(
                    dag_id="d", run_id="r", gate_task_id="draft__approval", store=behind
                )
            except Exception as exc:  # reported below
                result["raised"] = exc

        with caplog.at_level(logging.WARNING, logger="hitl.store.outage"):
            t = threading.Thread(target=step)
            t.start()
            deadline = time.monotonic() + 60
            while not any("unavailable" in r.getMessage() for r in caplog.records):
                assert time.monotonic() < deadline and t.is_alive(), result
                time.sleep(0.05)
            assert t.is_alive() and result == {}  # waiting, not failed, not acting
            proxy.up()
            t.join(timeout=60)
        assert result == {"approved": {"to": "pat@example.com"}}, result
    finally:
        proxy.close()
        behind.engine.dispose()
        direct.engine.dispose()


def test_a_store_without_its_tables_is_not_an_outage() -> None:
    from hitl.store.outage import is_outage

    assert not is_outage(OperationalError("SELECT", {}, Exception("no such table: hitl_approval_request")))
    assert is_outage(OperationalError("SELECT", {}, Exception("database is locked")))
    assert is_outage(outage_error())


def test_the_gate_waits_out_an_outage_when_it_resumes(
    pg_url: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The gate's own ``execute_complete`` (the worker, after the trigger saw the approval): the store gone since is
    waited out, then the approved output is returned, not a failed try."""
    import threading
    from types import SimpleNamespace

    from sqlalchemy.engine import make_url

    from hitl.decisions import decide
    from hitl.gate import GateOptions
    from hitl.identity import Reviewer
    from hitl.sensor import ApprovalSensor
    from hitl.store import GateRequest, Store
    from hitl_devstack.tcpproxy import TcpProxy

    url = make_url(pg_url)
    direct = Store(pg_url)
    direct.upgrade()
    req, _ = direct.record_request(
        GateRequest(
            dag_id="d2", run_id="r2", step_id="draft", gate_task_id="draft__approval", map_index=-1, try_number=1,
            output={"to": "pat@example.com"}, output_kind="json", summary="",
            options=GateOptions(approvers=[{"userId": "alice"}]), triggered_by=None,
        )
    )  # fmt: skip
    decide(direct, req.id, Reviewer("alice"), "approve", channel="cli")
    proxy = TcpProxy(target=(url.host or "127.0.0.1", url.port or 5432)).up()
    monkeypatch.setenv("AIRFLOW__HITL__STORE_URL", url.set(host="127.0.0.1", port=proxy.port).render_as_string(False))
    gate = ApprovalSensor(task_id="draft__approval", step_id="draft", approvers=[{"userId": "alice"}])
    ti = SimpleNamespace(dag_id="d2", run_id="r2", task_id="draft__approval", map_index=-1)
    result: dict[str, object] = {}
    try:
        proxy.down()

        def resume() -> None:
            try:
                result["returned"] = gate.execute_complete({"ti": ti}, {"request_id": req.id})
            except Exception as exc:  # reported below
                result["raised"] = exc

        with caplog.at_level(logging.WARNING, logger="hitl.store.outage"):
            t = threading.Thread(target=resume)
            t.start()
            deadline = time.monotonic() + 60
            while not any("unavailable" in r.getMessage() for r in caplog.records):
                assert time.monotonic() < deadline and t.is_alive(), result
                time.sleep(0.05)
            assert t.is_alive() and result == {}
            proxy.up()
            t.join(timeout=60)
        assert result == {"returned": {"to": "pat@example.com"}}, result
    finally:
        proxy.close()
        direct.engine.dispose()
