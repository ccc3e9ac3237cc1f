"""An approval covers everything the action uses (issue 18, item 3), on a real Airflow.

``bound_email``: the email after the gate takes its address from an ungated step (``contact``). The gate's
request binds that output (the reviewer sees it on the review page); a user with Airflow's ordinary XCom-edit
rights (bob) changes it through Airflow's REST API after the review; the email step refuses, audited, and
nothing is sent. Without the change the same workflow sends to the address the reviewer saw.
"""

from __future__ import annotations

import subprocess
import time
from typing import Any

import pytest

from helpers import wait_for
from hitl.steps.email import safe_name
from hitl.store import PENDING, Store
from hitl_devstack import AirflowStack

pytestmark = pytest.mark.e2e
DAG = "bound_email"
GATE = "draft__approval"
SEEN = {"to": "pat@example.com"}


def store_of(stack: AirflowStack) -> Store:
    return Store(f"sqlite:///{stack.home / 'hitl.db'}")


def parked(stack: AirflowStack, run_id: str, dag_id: str = DAG) -> Any:
    def now() -> Any:
        req = store_of(stack).current_for_gate(dag_id, run_id, GATE)
        deferred = req is not None and req.status == PENDING and stack.task_state(dag_id, run_id, GATE) == "deferred"
        return req if deferred else None

    return wait_for(f"{GATE} of {run_id} parked", now, timeout=240)


def approve(stack: AirflowStack, request_id: int) -> None:
    done = subprocess.run(
        [str(stack.bin / "python"), "-m", "hitl", "approvals", "approve", str(request_id), "--user", "alice"],
        env=stack.env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def sent(stack: AirflowStack, run_id: str) -> list[str]:
    return [p.read_text() for p in sorted((stack.home / "outbox").glob(f"*__{safe_name(run_id)}__*.eml"))]


def test_an_unchanged_bound_input_is_what_the_step_uses(stack: AirflowStack) -> None:
    stack.wait_for_dag(DAG)
    run_id = stack.trigger(DAG, {}, run_id=f"bound_ok_{int(time.time())}")
    req = parked(stack, run_id)
    assert store_of(stack).bound_inputs(req.id) == {"contact": SEEN}  # recorded with the request
    approve(stack, req.id)
    assert stack.wait_run(DAG, run_id) == "success"
    (message,) = sent(stack, run_id)
    assert "To: pat@example.com" in message


def test_a_bound_input_changed_after_the_review_refuses_the_step(stack: AirflowStack) -> None:
    stack.wait_for_dag(DAG)
    run_id = stack.trigger(DAG, {}, run_id=f"bound_tampered_{int(time.time())}")
    req = parked(stack, run_id)
    assert store_of(stack).bound_inputs(req.id) == {"contact": SEEN}
    base = f"/api/v2/dags/{DAG}/dagRuns/{run_id}/taskInstances/contact/xcomEntries/return_value"
    # bob has Airflow's ordinary XCom-edit rights and is not an approver: he rewrites the address.
    stack.api("PATCH", base, {"value": {"to": "bob@evil.example"}}, user="bob")
    assert stack.api("GET", base)["value"] != SEEN
    approve(stack, req.id)  # alice approves what she saw: the email to pat@example.com

    assert stack.wait_run(DAG, run_id) == "failed"
    assert stack.task_state(DAG, run_id, "send_email") == "failed"
    assert sent(stack, run_id) == []
    refusals = [e for e in store_of(stack).history(req.id) if e.event == "bound_input_refused"]
    assert len(refusals) == 1 and refusals[0].detail["acting_task"] == "send_email"
    assert refusals[0].detail["reason"].startswith(f"the output of step contact changed after request {req.id}")
    assert "bob@evil.example" not in refusals[0].detail["reason"]


CHAINED = "chained_email"
FINAL = {"to": "pat@example.com", "text": "Hello, our new loaves are in. See you soon."}


def test_a_post_gate_output_changed_before_the_action_refuses_it(stack: AirflowStack) -> None:
    """``finalize`` runs after the approval and makes the email; bob rewrites its XCom while ``pause`` runs; the
    email step finds it is not what finalize returned (recorded as it finished), refuses, audited, sends nothing."""
    from hitl.store import content_hash

    stack.wait_for_dag(CHAINED)
    ok = stack.trigger(CHAINED, {"pause": 0}, run_id=f"chain_ok_{int(time.time())}")
    approve(stack, parked(stack, ok, CHAINED).id)
    assert stack.wait_run(CHAINED, ok) == "success"
    (message,) = sent(stack, ok)
    assert "To: pat@example.com" in message

    run_id = stack.trigger(CHAINED, {"pause": 60}, run_id=f"chain_tampered_{int(time.time())}")
    req = parked(stack, run_id, CHAINED)
    approve(stack, req.id)
    wait_for("pause running", lambda: stack.task_state(CHAINED, run_id, "pause") == "running")
    assert store_of(stack).step_output_hash(CHAINED, run_id, "finalize", -1) == content_hash(FINAL)
    base = f"/api/v2/dags/{CHAINED}/dagRuns/{run_id}/taskInstances/finalize/xcomEntries/return_value"
    stack.api("PATCH", base, {"value": {**FINAL, "to": "bob@evil.example"}}, user="bob")

    assert stack.wait_run(CHAINED, run_id, timeout=240) == "failed"
    assert stack.task_state(CHAINED, run_id, "send_email") == "failed"
    assert sent(stack, run_id) == []
    refusals = [e for e in store_of(stack).history(req.id) if e.event == "step_output_refused"]
    assert len(refusals) == 1 and refusals[0].detail["acting_task"] == "send_email"
    assert refusals[0].detail["source"] == "finalize" and "bob@evil.example" not in refusals[0].detail["reason"]
