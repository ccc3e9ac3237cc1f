"""docker-compose.yaml's topology, run for real: CeleryExecutor with two workers, two triggerers, PostgreSQL
for Airflow and for the decision store, Redis. Decisions reach the gates through the trigger only."""

from __future__ import annotations

import json
import signal
import statistics
import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import pytest

from helpers import wait_for
from hitl.store import Store
from hitl_devstack.compose import ComposeStack

pytestmark = pytest.mark.topology
OUTREACH = "local_business_outreach"
LIGHT = "topology_gate"
RUNS = 50


def airflow_db(stack: ComposeStack, sql: str, *params: object) -> list[tuple[Any, ...]]:
    import psycopg2

    conn = psycopg2.connect(stack.url_of("airflow"))
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            return list(cur.fetchall())
    finally:
        conn.close()


def store(stack: ComposeStack) -> Store:
    return Store(stack.url_of("hitl"))


def pending(stack: ComposeStack, dag_id: str, run_id: str, gate: str) -> Any:
    states = airflow_db(
        stack, "select state from task_instance where dag_id=%s and run_id=%s and task_id=%s", dag_id, run_id, gate
    )
    if states and states[0][0] == "deferred":
        req = store(stack).current_for_gate(dag_id, run_id, gate)
        return req if req is not None and req.status == "pending" else None
    return None


def cli(stack: ComposeStack, *args: str) -> tuple[int, str]:
    result = stack.run("python", "-m", "hitl", "approvals", *args, check=False)
    return result.returncode, (result.stdout + result.stderr).strip()


def test_outreach_edit_and_approve_then_reject(topology: ComposeStack, topology_site: str) -> None:
    stack = topology
    gate = "draft_email__approval"
    run_id = stack.trigger(OUTREACH, {"prospect_url": topology_site})
    req = wait_for(f"{gate} parked", lambda: pending(stack, OUTREACH, run_id, gate), 180)
    assert req.output["subject"] == "A quicker checkout for Rosie's Bakery"
    edited = {**req.output, "subject": "Edited by alice"}
    code, out = cli(stack, "approve", str(req.id), "--user", "alice", "--output-json", json.dumps(edited))
    assert code == 0, out
    assert stack.wait_run(OUTREACH, run_id, timeout=180) == "success"
    sent = list((stack.home / "outbox").glob("*.eml"))
    assert len(sent) == 1 and "Subject: Edited by alice" in sent[0].read_text()

    run2 = stack.trigger(OUTREACH, {"prospect_url": topology_site})
    req2 = wait_for(f"{gate} parked", lambda: pending(stack, OUTREACH, run2, gate), 180)
    code, out = cli(stack, "reject", str(req2.id), "--user", "alice", "--reason", "Wrong prospect")
    assert code == 0, out
    assert stack.wait_run(OUTREACH, run2, timeout=180) == "success"
    assert stack.task_state(OUTREACH, run2, gate) == "skipped"
    assert stack.task_state(OUTREACH, run2, "send_email") == "skipped"
    assert len(list((stack.home / "outbox").glob("*.eml"))) == 1


def decide(stack: ComposeStack, token: str, request_id: int) -> None:
    req = urllib.request.Request(
        f"{stack.base_url}/pluginsv2/hitl/api/requests/{request_id}/decision",
        data=json.dumps({"action": "approve"}).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
    )
    with urllib.request.urlopen(req, timeout=60) as resp:
        assert resp.status == 200


def percentiles(values: list[float]) -> str:
    values = sorted(values)
    p95 = values[min(len(values) - 1, round(0.95 * (len(values) - 1)))]
    return f"median {statistics.median(values):.2f} s, p95 {p95:.2f} s, max {values[-1]:.2f} s (n={len(values)})"


def test_fifty_gated_runs_through_the_api_and_a_killed_triggerer(topology: ComposeStack) -> None:
    stack = topology
    gate = "draft__approval"
    decisions = store(stack)
    started = time.monotonic()
    triggered: dict[str, datetime] = {}

    def trigger(i: int) -> None:
        at = datetime.now(UTC)
        triggered[stack.trigger(LIGHT, {})] = at

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(trigger, range(RUNS)))
    assert len(triggered) == RUNS

    def parked() -> dict[str, Any] | None:
        rows = airflow_db(
            stack,
            "select run_id from task_instance where dag_id=%s and task_id=%s and state='deferred'",
            LIGHT,
            gate,
        )
        if len(rows) < RUNS:
            return None
        reqs = {r.run_id: r for r in decisions.list_requests(limit=500) if r.dag_id == LIGHT}
        return reqs if len(reqs) >= RUNS else None

    requests = wait_for(f"{RUNS} gates parked", parked, 300, every=1)
    all_parked = time.monotonic()
    to_pending = [(requests[r].created_at - triggered[r]).total_seconds() for r in triggered]

    # Both triggerers hold parked gates.
    holders = dict(
        airflow_db(
            stack,
            "select j.hostname, count(*) from trigger t join job j on j.id = t.triggerer_id group by j.hostname",
        )
    )
    print(f"\ntriggers per triggerer: {holders}")

    token = stack.token("alice")
    first, second = list(triggered)[: RUNS // 2], list(triggered)[RUNS // 2 :]
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda r: decide(stack, token, requests[r].id), first))

    def done(run_ids: list[str]) -> Callable[[], bool]:
        def check() -> bool:
            rows = dict(airflow_db(stack, "select run_id, state from dag_run where dag_id=%s", LIGHT))
            failed = [r for r in run_ids if rows.get(r) == "failed"]
            assert not failed, f"failed runs: {failed}"
            return all(rows.get(r) == "success" for r in run_ids)

        return check

    wait_for("the first half of the runs succeeded", done(first), 240, every=1)

    # kill -9 the triggerer that holds most of the gates still waiting; decide them all at once.
    holders = dict(
        airflow_db(
            stack,
            "select j.hostname, count(*) from trigger t join job j on j.id = t.triggerer_id group by j.hostname",
        )
    )
    victim = max(holders, key=lambda h: holders[h]) if holders else "airflow-triggerer-1"
    print(f"triggers per triggerer before the kill: {holders}; kill -9 {victim}")
    stack.kill(victim, signal.SIGKILL)
    killed_at = time.monotonic()
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda r: decide(stack, token, requests[r].id), second))
    wait_for("every run succeeded after the kill", done(list(triggered)), 300, every=1)
    recovered = time.monotonic() - killed_at

    decided = {}
    for r in triggered:
        closed = decisions.get(requests[r].id)
        assert closed is not None and closed.status == "approved" and closed.decided_at is not None
        decided[r] = closed.decided_at
    starts = dict(
        airflow_db(stack, "select run_id, start_date from task_instance where dag_id=%s and task_id='publish'", LIGHT)
    )
    latency = {r: (starts[r] - decided[r]).total_seconds() for r in triggered}
    print(f"trigger -> pending request: {percentiles(to_pending)}")
    print(f"decision -> downstream task start, both triggerers: {percentiles([latency[r] for r in first])}")
    print(f"decision -> downstream task start, one killed: {percentiles([latency[r] for r in second])}")
    print(
        f"all {RUNS} parked after {all_parked - started:.1f} s; after the kill, all done in {recovered:.1f} s; "
        f"whole test {time.monotonic() - started:.1f} s"
    )
    assert set(triggered) <= set(starts)
