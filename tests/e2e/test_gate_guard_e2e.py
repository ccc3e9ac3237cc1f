"""On a real Airflow: only a recorded approval opens a gate; the trigger route alone ends a gate; the Python API.

The forced-gate case is what a user with Airflow's ordinary task-edit rights (SimpleAuthManager role
``user``: bob) can do through the REST API: write the gate's XCom and mark the gate ``success``.
"""

from __future__ import annotations

import json
import signal
import time
from typing import Any

import pytest

from hitl.store import PENDING, Store
from hitl_devstack import AirflowStack

pytestmark = pytest.mark.e2e
DAG = "local_business_outreach"
GATE = "draft_email__approval"


def store_of(stack: AirflowStack) -> Store:
    return Store(f"sqlite:///{stack.home / 'hitl.db'}")


def wait_state(
    stack: AirflowStack, dag_id: str, run_id: str, task_id: str, states: set[str], timeout: float = 180
) -> str:
    deadline = time.monotonic() + timeout
    state = None
    while time.monotonic() < deadline:
        state = stack.task_state(dag_id, run_id, task_id)
        if state in states:
            return str(state)
        time.sleep(0.25)
    raise TimeoutError(f"{task_id} of {run_id} is {state}, not one of {sorted(states)}")


def hitl_cli(stack: AirflowStack, *args: str, **env: str) -> tuple[int, str]:
    import subprocess

    result = subprocess.run(
        [str(stack.bin / "python"), "-m", "hitl", "approvals", *args],
        env={**stack.env(), **env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    return result.returncode, result.stdout + result.stderr


def outbox(stack: AirflowStack, run_id: str) -> list[Any]:
    from hitl.steps.email import safe_name

    return sorted((stack.home / "outbox").glob(f"*__{safe_name(run_id)}__*.eml"))


def test_forced_gate_sends_nothing_and_is_audited(stack: AirflowStack, demo_site: str) -> None:
    run_id = stack.trigger(DAG, {"prospect_url": demo_site})
    wait_state(stack, DAG, run_id, GATE, {"deferred"})
    req = store_of(stack).current_for_gate(DAG, run_id, GATE)
    assert req is not None and req.status == PENDING
    forged = {**req.output, "to": "everyone@victim.example", "subject": "Forged"}
    base = f"/api/v2/dags/{DAG}/dagRuns/{run_id}/taskInstances"
    # bob has Airflow's ordinary task-edit rights, and is not an approver.
    stack.api("POST", f"{base}/{GATE}/xcomEntries", {"key": "return_value", "value": forged}, user="bob")
    stack.api("PATCH", f"{base}/{GATE}", {"new_state": "success"}, user="bob")

    assert stack.wait_run(DAG, run_id) == "failed"
    assert stack.task_state(DAG, run_id, "send_email") == "failed"
    assert outbox(stack, run_id) == []
    store = store_of(stack)
    assert store.get(req.id).status == PENDING  # type: ignore[union-attr]
    refusals = [e for e in store.history(req.id) if e.event == "gate_bypass_refused"]
    assert refusals and refusals[0].detail["acting_task"] == "send_email"
    assert refusals[0].detail["reason"].startswith(f"no recorded approval for gate {GATE} in run {run_id}")


def test_trigger_route_alone_ends_the_gate(stack: AirflowStack, demo_site: str) -> None:
    run_id = stack.trigger(DAG, {"prospect_url": demo_site})
    wait_state(stack, DAG, run_id, GATE, {"deferred"})
    req = store_of(stack).current_for_gate(DAG, run_id, GATE)
    assert req is not None
    edited = {**req.output, "subject": "Through the trigger"}
    code, out = hitl_cli(
        stack,
        *("approve", str(req.id), "--user", "alice", "--output-json", json.dumps(edited)),
        AIRFLOW__HITL__END_GATE_FROM_DECIDER="false",
    )
    assert code == 0, out
    assert "its trigger ends the gate task" in out, out
    assert stack.wait_run(DAG, run_id) == "success"
    [sent] = outbox(stack, run_id)
    assert "Subject: Through the trigger" in sent.read_text()


def test_hand_written_dag_task_receives_the_edited_value(stack: AirflowStack) -> None:
    dag_id = "hitl_python_example"
    stack.wait_for_dag(dag_id)
    run_id = stack.trigger(dag_id, {"topic": "rye"})
    wait_state(stack, dag_id, run_id, "review_post", {"deferred"})
    req = store_of(stack).current_for_gate(dag_id, run_id, "review_post")
    assert req is not None and req.output_kind == "text" and "rye" in req.output["text"]
    # With the triggerer down only the direct route (the deciding process) can end the gate: this proves it does.
    # (With both up, whichever sees the decision first ends it: on a busy machine that may be the trigger.)
    stack.kill("triggerer", signal.SIGKILL)
    try:
        code, out = hitl_cli(
            stack,
            "approve",
            str(req.id),
            "--user",
            "alice",
            "--output-json",
            json.dumps({"text": "Edited: rye bread on Saturday"}),
        )
        assert code == 0, out
        assert "the gate task ended at once" in out, out
        assert stack.wait_run(dag_id, run_id) == "success"
    finally:
        stack.start(("triggerer",))
    xcom = stack.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/publish/xcomEntries/return_value")
    assert xcom["value"] == {"published": "Edited: rye bread on Saturday", "length": 29}
