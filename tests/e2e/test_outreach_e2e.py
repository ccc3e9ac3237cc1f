"""The outreach example on a real Airflow: the gate parks, the CLI decides, the run continues or closes."""

from __future__ import annotations

import email
import json
import signal
import time
from email import policy
from pathlib import Path

import pytest

from hitl.store import ApprovalRequest, Store
from hitl_devstack import AirflowStack

pytestmark = pytest.mark.e2e
DAG = "local_business_outreach"
GATE = "draft_email__approval"


def store_of(stack: AirflowStack) -> Store:
    return Store(f"sqlite:///{stack.home / 'hitl.db'}")


def wait_deferred(stack: AirflowStack, run_id: str, timeout: float = 180) -> ApprovalRequest:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if stack.task_state(DAG, run_id, GATE) == "deferred":
            req = store_of(stack).current_for_gate(DAG, run_id, GATE)
            assert req is not None
            return req
        time.sleep(0.25)
    raise TimeoutError(f"{GATE} of {run_id} did not defer; state {stack.task_state(DAG, run_id, GATE)}")


def cli(stack: AirflowStack, *args: str) -> tuple[int, str]:
    result = stack.run("python", "-m", "hitl", "approvals", *args, check=False)
    return result.returncode, (result.stdout + result.stderr).strip()


def outbox(stack: AirflowStack, run_id: str) -> list[Path]:
    """The .eml files this run sent (the outbox is shared by every test on this stack)."""
    from hitl.steps.email import safe_name

    return sorted((stack.home / "outbox").glob(f"*__{safe_name(run_id)}__*.eml"))


def test_edit_and_approve_sends_exactly_the_edit_then_reject_sends_nothing(stack: AirflowStack, demo_site: str) -> None:
    run_id = stack.trigger(DAG, {"prospect_url": demo_site})
    req = wait_deferred(stack, run_id)
    assert req.status == "pending" and req.output["subject"] == "A quicker checkout for Rosie's Bakery"

    code, out = cli(stack, "list", "--json")
    assert code == 0
    listed = [r for r in json.loads(out) if r["id"] == req.id]
    assert listed and listed[0]["step_id"] == "draft_email" and listed[0]["approvers"] == [{"userId": "alice"}]

    code, out = cli(stack, "approve", str(req.id), "--user", "bob")
    assert code == 1 and "bob is not an approver" in out
    edited = {**req.output, "subject": "Edited by alice"}
    code, out = cli(stack, "approve", str(req.id), "--user", "alice", "--output-json", json.dumps(edited))
    assert code == 0, out
    code, out = cli(stack, "approve", str(req.id), "--user", "alice")
    assert code == 1 and out.startswith("already decided by alice at ")

    assert stack.wait_run(DAG, run_id) == "success"
    files = outbox(stack, run_id)
    assert len(files) == 1
    sent = email.message_from_bytes(files[0].read_bytes(), policy=policy.default)
    assert sent["Subject"] == "Edited by alice" and sent["To"] == "owner@rosies-bakery.example"

    # A second run, rejected: nothing is sent, the run is closed (not failed) and says why.
    run2 = stack.trigger(DAG, {"prospect_url": demo_site})
    req2 = wait_deferred(stack, run2)
    reason = "Wrong prospect ![x](https://evil.example/x.png) [see](https://evil.example)"
    code, out = cli(stack, "reject", str(req2.id), "--user", "alice", "--reason", reason)
    assert code == 0, out
    assert stack.wait_run(DAG, run2) == "success"
    assert stack.task_state(DAG, run2, GATE) == "skipped"
    assert stack.task_state(DAG, run2, "send_email") == "skipped"
    assert outbox(stack, run2) == []
    run = stack.api("GET", f"/api/v2/dags/{DAG}/dagRuns/{run2}")
    note = run.get("note") or ""  # type: ignore[union-attr]
    assert "Rejected at step draft_email by alice" in note and "Wrong prospect" in note
    assert "](" not in note and "\\!\\[x\\]" in note  # Airflow renders notes as Markdown: no image, no link


def test_decision_one_second_after_parking_completes_the_run(stack: AirflowStack, demo_site: str) -> None:
    run_id = stack.trigger(DAG, {"prospect_url": demo_site})
    req = wait_deferred(stack, run_id)
    time.sleep(1)
    code, out = cli(stack, "approve", str(req.id), "--user", "alice")
    assert code == 0, out
    assert stack.wait_run(DAG, run_id) == "success"
    assert stack.task_state(DAG, run_id, GATE) == "success"
    assert stack.task_state(DAG, run_id, "send_email") == "success"


def test_triggerer_killed_while_gate_waits_loses_nothing(stack: AirflowStack, demo_site: str) -> None:
    run_id = stack.trigger(DAG, {"prospect_url": demo_site})
    req = wait_deferred(stack, run_id)
    stack.kill("triggerer", signal.SIGKILL)
    code, out = cli(stack, "approve", str(req.id), "--user", "alice", "--comment", "while the triggerer was down")
    assert code == 0, out
    stack.start(("triggerer",))  # adopts the orphaned trigger once the dead one's heartbeat is stale
    assert stack.wait_run(DAG, run_id, timeout=240) == "success"
    assert stack.task_state(DAG, run_id, "send_email") == "success"
