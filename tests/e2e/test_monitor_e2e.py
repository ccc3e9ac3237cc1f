"""The shipped hitl_monitor DAG on a real Airflow: an unanswered gate with expireAfter is rejected."""

from __future__ import annotations

import time

import pytest

from hitl.monitor import EXPIRY_ACTOR
from hitl.store import Store
from hitl_devstack import AirflowStack

pytestmark = pytest.mark.e2e
DAG, GATE = "expiring_gate", "draft__approval"


def test_expired_gate_is_rejected_once_and_downstream_does_not_run(stack: AirflowStack) -> None:
    stack.wait_for_dag(DAG)
    stack.wait_for_dag("hitl_monitor")
    run_id = stack.trigger(DAG)
    deadline = time.monotonic() + 180
    while stack.task_state(DAG, run_id, GATE) != "deferred":
        assert time.monotonic() < deadline, "the gate never parked"
        time.sleep(0.5)
    time.sleep(2.5)  # past expireAfter
    sweep_run = stack.trigger("hitl_monitor")
    assert stack.wait_run("hitl_monitor", sweep_run) == "success"
    assert stack.wait_run(DAG, run_id) == "success"  # closed, not failed
    assert stack.task_state(DAG, run_id, GATE) == "skipped"
    assert stack.task_state(DAG, run_id, "publish") == "skipped"
    store = Store(f"sqlite:///{stack.home / 'hitl.db'}")
    req = store.current_for_gate(DAG, run_id, GATE)
    assert req is not None and req.status == "rejected" and req.decided_by == EXPIRY_ACTOR
    assert [e.event for e in store.history(req.id)].count("expired") == 1
