"""When the decision store is down: a starting gate retries (not fails its run), the watcher logs the outage once."""

from __future__ import annotations

import asyncio
import logging
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
    assert gate.retries >= 3 and gate.retry_exponential_backoff


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
