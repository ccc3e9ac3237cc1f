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

from hitl.steps.email import safe_name
from hitl.store import PENDING, Store
from hitl_devstack import AirflowStack

pytestmark = pytest.mark.e2e
DAG = "bound_email"
GATE = "draft__approval"
SEEN = {"to": "pat@example.com"}


def store_of(stack: AirflowStack) -> Store:
    return Store(f"sqlite:///{stack.home / 'hitl.db'}")


def parked(stack: AirflowStack, run_id: str, timeout: float = 240) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        req = store_of(stack).current_for_gate(DAG, run_id, GATE)
        if req is not None and req.status == PENDING and stack.task_state(DAG, run_id, GATE) == "deferred":
            return req
        time.sleep(0.5)
    raise TimeoutError(f"{GATE} of {run_id} did not park within {timeout:.0f}s")


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
