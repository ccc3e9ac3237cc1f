"""A gate policy on a real Airflow: shadow over 20 human decisions, then enforced with a sample.

The policy reads an earlier step's output (``steps.score.output.confidence``). In shadow mode every draft waits for
alice, and the agreement figures from the JSON API match what she decided. Switched to enforce (the spec rewritten in
the stack's specs folder, as an operator would), matching drafts pass without anyone (audited as the policy), the
others wait, and ``sample: 0.5`` sends the drafts its hash picks to her anyway.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from hitl.policy import _sampled
from hitl.store import Store
from hitl_devstack import AirflowStack

pytestmark = pytest.mark.e2e
DAG, GATE = "policy_gate", "draft__approval"
POLICY_ACTOR = f"policy:{GATE}"


def store_of(stack: AirflowStack) -> Store:
    return Store(f"sqlite:///{stack.home / 'hitl.db'}")


def wait_request(stack: AirflowStack, run_id: str, timeout: float = 300) -> Any:
    """The gate's request in this run, once the gate has recorded it."""
    store = store_of(stack)
    deadline = time.monotonic() + timeout
    while True:
        req = store.current_for_gate(DAG, run_id, GATE)
        if req is not None:
            return req
        assert time.monotonic() < deadline, f"run {run_id}: the gate never recorded a request"
        time.sleep(0.5)


def decide(stack: AirflowStack, request_id: int, action: str) -> None:
    import urllib.error

    body = {"action": action, **({"reason": "off-tone"} if action == "reject" else {})}
    try:
        stack.api("POST", f"/pluginsv2/hitl/api/requests/{request_id}/decision", body, user="alice")
    except urllib.error.HTTPError as exc:
        raise AssertionError(f"{action} of request {request_id}: {exc.code} {exc.read().decode()[:500]}") from None


def figures(stack: AirflowStack) -> dict[str, Any]:
    (gate,) = stack.api("GET", f"/pluginsv2/hitl/api/policy?workflow={DAG}", user="alice")["gates"]
    return dict(gate)


def run_ids(prefix: str, sampled: bool, n: int) -> list[str]:
    """Run ids whose gate instance ``sample: 0.5`` does (or does not) send to a human: the test knows which."""
    found: list[str] = []
    i = 0
    while len(found) < n:
        run_id = f"{prefix}__{i}"
        if _sampled(f"{DAG}|{run_id}|{GATE}|-1", 0.5) is sampled:
            found.append(run_id)
        i += 1
    return found


def test_shadow_then_enforced_policy(stack: AirflowStack) -> None:
    stack.wait_for_dag(DAG)
    store = store_of(stack)
    stamp = int(time.time())

    # 1. Shadow: 20 runs, 12 of them confident; every draft waits for alice, who rejects two confident ones.
    confidences = [0.95] * 12 + [0.3] * 8
    runs = [stack.trigger(DAG, {"confidence": c}, run_id=f"shadow_{stamp}__{i}") for i, c in enumerate(confidences)]
    refused = {runs[3], runs[7]}
    ids = {}
    for run_id in runs:
        req = wait_request(stack, run_id)
        assert req.status == "pending", (run_id, req.status, req.decided_by)  # shadow never decides
        ids[run_id] = req.id
        decide(stack, req.id, "reject" if run_id in refused else "approve")
    for run_id in runs:
        assert stack.wait_run(DAG, run_id, timeout=300) == "success"
        assert stack.task_state(DAG, run_id, "publish") == ("skipped" if run_id in refused else "success")
    shadow = figures(stack)
    assert shadow["mode"] == "shadow"
    assert (shadow["decisions"], shadow["would_decide"], shadow["left_to_human"]) == (20, 12, 8)
    assert (shadow["agreed"], shadow["disagreed"], shadow["approve_reject"], shadow["saved"]) == (10, 2, 2, 12)
    assert sorted(d["request_id"] for d in shadow["disagreements"]) == sorted(ids[r] for r in refused)
    verdict = store.verdict(ids[runs[0]])
    assert verdict is not None and (verdict.mode, verdict.decision) == ("shadow", "approve")

    # 2. Enforce, with half of what it would approve still sent to a human (by hash: known to the test).
    spec = stack.specs_folder / "policy_gate.yaml"
    # A gate task parses the DAG file when it starts, so the next gate to run reads the changed spec (the policy is
    # not part of the serialized DAG: Airflow's DAG version does not change, nor need it).
    spec.write_text(spec.read_text().replace("mode: shadow", "mode: enforce\n          sample: 0.5"))
    automatic = run_ids(f"enforce_{stamp}_auto", sampled=False, n=3)
    sampled = run_ids(f"enforce_{stamp}_sampled", sampled=True, n=2)
    doubtful = [f"enforce_{stamp}_low__0", f"enforce_{stamp}_low__1"]
    for run_id in automatic + sampled:
        stack.trigger(DAG, {"confidence": 0.97}, run_id=run_id)
    for run_id in doubtful:
        stack.trigger(DAG, {"confidence": 0.2}, run_id=run_id)

    for run_id in automatic:  # nobody touches these
        assert stack.wait_run(DAG, run_id, timeout=300) == "success"
        assert stack.task_state(DAG, run_id, "publish") == "success"
        req = store.current_for_gate(DAG, run_id, GATE)
        assert req is not None and (req.status, req.decided_by) == ("approved", POLICY_ACTOR)
        approved = next(e for e in store.history(req.id) if e.event == "approved")
        assert approved.actor == POLICY_ACTOR and approved.detail["channel"] == "policy"
        assert approved.detail["policy"]["rule_hash"] == shadow["rule_hash"]  # the same rules, now enforced
    waiting = {run_id: wait_request(stack, run_id) for run_id in sampled + doubtful}
    for run_id, req in waiting.items():
        assert req.status == "pending" and stack.run_state(DAG, run_id) == "running", run_id
        held = store.verdict(req.id)
        assert held is not None and held.mode == "enforce"
        assert (held.decision, held.sampled) == (("approve", True) if run_id in sampled else ("none", False))
        decide(stack, req.id, "approve")
    for run_id in waiting:
        assert stack.wait_run(DAG, run_id, timeout=300) == "success"
        assert store.current_for_gate(DAG, run_id, GATE).decided_by == "alice"  # type: ignore[union-attr]

    enforced = figures(stack)  # the sampled drafts are human decisions with a verdict: counted, never "saved"
    assert enforced["decisions"] == 24 and enforced["would_decide"] == 14 and enforced["saved"] == 12
