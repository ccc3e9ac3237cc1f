"""ApprovalSensor through dag.test(): the trigger runs inline, a reviewer thread decides."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import sensor_dags
from hitl.decisions import decide
from hitl.identity import Reviewer
from hitl.store import ApprovalRequest, get_store

ALICE = Reviewer("alice")


def build_dag(dag_id: str) -> Any:
    import sensor_dags

    return getattr(sensor_dags, dag_id)


def reviewer(dag_id: str, act: Callable[[ApprovalRequest], None]) -> threading.Thread:
    def run() -> None:
        store = get_store()
        for _ in range(300):
            pending = store.list_requests(dag_id=dag_id)
            if pending:
                act(pending[0])
                return
            time.sleep(0.1)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def states(run: Any) -> dict[str, str]:
    return {ti.task_id: ti.state for ti in run.get_task_instances()}


@pytest.fixture(autouse=True)
def _db(airflow_db: Path) -> None:
    pass


def test_edit_and_approve_reaches_the_downstream_task() -> None:
    dag = build_dag("sensor_edit")
    edited = {**draft(), "subject": "Edited subject"}
    reviewer("sensor_edit", lambda r: decide(get_store(), r.id, ALICE, "approve", edited_output=edited))
    run = dag.test()
    assert run.state == "success", states(run)
    assert sensor_dags.RECEIVED["sensor_edit"] == edited
    req = get_store().list_requests(dag_id="sensor_edit", status="all")[0]
    assert req.status == "approved" and req.output == draft()


def test_reject_skips_downstream_and_does_not_fail_the_run() -> None:
    dag = build_dag("sensor_reject")
    reviewer("sensor_reject", lambda r: decide(get_store(), r.id, ALICE, "reject", comment="wrong shop"))
    run = dag.test()
    assert states(run) == {"draft": "success", "draft__approval": "skipped", "send": "skipped"}
    assert run.state == "success"
    assert "sensor_reject" not in sensor_dags.RECEIVED


def draft() -> dict[str, str]:
    return sensor_dags.draft()


def test_retry_of_the_gate_reuses_the_decided_request() -> None:
    """A second run of the same gate instance with the same output finds the decision: no second request."""
    from hitl.store import GateRequest

    dag = build_dag("sensor_retry")
    reviewer("sensor_retry", lambda r: decide(get_store(), r.id, ALICE, "approve"))
    run = dag.test()
    assert run.state == "success"
    store = get_store()
    [req] = store.list_requests(dag_id="sensor_retry", status="all")
    again, created = store.record_request(
        GateRequest(
            dag_id=req.dag_id,
            run_id=req.run_id,
            step_id="draft",
            gate_task_id="draft__approval",
            output=draft(),
            try_number=2,
        )
    )
    assert not created and again.id == req.id and again.status == "approved"
