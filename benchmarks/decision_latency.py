"""Decision -> downstream task start, measured by the client, ours vs Airflow 3.3's own ApprovalOperator.

For each setup a real Airflow (api-server, scheduler, dag-processor, triggerer; LocalExecutor) starts in
a temp AIRFLOW_HOME, then N runs of each gate alternate: wait until the gate parks, then the client
notes the time and sends the decision over HTTP as a reviewer's tool would (ours: POST to the JSON API
``/pluginsv2/hitl/api/requests/<id>/decision``; native: PATCH ``.../hitlDetails``, as its UI does), and
the downstream task's ``start_date`` is read from the REST API. The clock is the same machine's.

Setups: ``sqlite`` (Airflow's DB and the store on SQLite), ``postgresql`` (both on PostgreSQL), and each
with ``-trigger``: the deciding process may not end the gate (``[hitl] end_gate_from_decider=false``),
so the trigger's watcher must notice the decision.

Each latency is split into components from the task instances' own timestamps: answer (the HTTP call),
gate end (answer -> the gate task's end_date), scheduling (gate end -> downstream scheduled_when),
queueing (-> queued_when), start (-> start_date).

    .venv/bin/python benchmarks/decision_latency.py [--runs 20] [--pg-url URL]
        [--setups sqlite,postgresql,sqlite-trigger,postgresql-trigger]
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import statistics
import sys
import tempfile
import time
import urllib.request
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "plugins"))


from hitl_devstack import AirflowStack, free_port, fresh_postgres_database, percentile  # noqa: E402

RESULTS = REPO / "benchmarks" / "results" / "decision_latency.json"
COMPONENTS = ("answer", "gate_end", "scheduling", "queueing", "start")
NATIVE_DAG = "native_approval_latency"


def wait(predicate, timeout: float = 180, every: float = 0.05):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise TimeoutError("gave up waiting")


class GateFailed(Exception):
    pass


def ts(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def ti(stack: AirflowStack, token: str, dag_id: str, run_id: str, task_id: str) -> dict[str, Any]:
    return call(stack, token, "GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}")


def call(stack: AirflowStack, token: str, method: str, path: str, body: object | None = None) -> Any:
    req = urllib.request.Request(
        f"{stack.base_url}{path}",
        data=json.dumps(body).encode() if body is not None else None,
        method=method,
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
    )
    with urllib.request.urlopen(req, timeout=60) as resp:
        return json.loads(resp.read() or b"null")


def started(stack: AirflowStack, token: str, dag_id: str, run_id: str) -> dict[str, Any] | None:
    state = ti(stack, token, dag_id, run_id, "send")
    if state.get("state") in ("upstream_failed", "skipped", "failed"):
        raise GateFailed(f"{dag_id} {run_id}: send is {state['state']}")
    return state if state.get("start_date") else None


def one_run(stack: AirflowStack, tokens: dict[str, str], kind: str, settle: float) -> dict[str, float]:
    admin = tokens["admin"]
    if kind == "ours":
        dag, gate = "gate_latency", "draft__approval"
        parked = ("deferred",)
    else:
        dag, gate = NATIVE_DAG, "approve"
        parked = ("deferred", "awaiting_input")
    run_id = f"bench__{uuid.uuid4().hex[:12]}"
    call(stack, admin, "POST", f"/api/v2/dags/{dag}/dagRuns", {"dag_run_id": run_id, "logical_date": None})
    wait(lambda: ti(stack, admin, dag, run_id, gate).get("state") in parked)
    if kind == "ours":
        request_id = wait(lambda: _pending_id(stack, tokens["alice"], run_id))
    time.sleep(settle)  # the reviewer reads the draft
    sent = datetime.now(UTC)
    if kind == "ours":
        call(
            stack,
            tokens["alice"],
            "POST",
            f"/pluginsv2/hitl/api/requests/{request_id}/decision",
            {"action": "approve"},
        )
    else:
        call(
            stack,
            admin,
            "PATCH",
            f"/api/v2/dags/{dag}/dagRuns/{run_id}/taskInstances/{gate}/-1/hitlDetails",
            {"chosen_options": ["Approve"], "params_input": {}},
        )
    answered = datetime.now(UTC)
    down = wait(lambda: started(stack, admin, dag, run_id))
    gate_ti = ti(stack, admin, dag, run_id, gate)
    stack.wait_run(dag, run_id)
    marks = [
        sent,
        answered,
        ts(gate_ti.get("end_date")),
        ts(down.get("scheduled_when")),
        ts(down.get("queued_when")),
        ts(down["start_date"]),
    ]
    out = {"total": (marks[-1] - sent).total_seconds()}  # type: ignore[operator]
    for name, (a, b) in zip(COMPONENTS, itertools.pairwise(marks), strict=True):
        out[name] = (b - a).total_seconds() if a and b else float("nan")
    return out


def _pending_id(stack: AirflowStack, token: str, run_id: str) -> int | None:
    rows = call(stack, token, "GET", "/pluginsv2/hitl/api/requests?dag_id=gate_latency&limit=50")
    return next((r["id"] for r in rows if r["run_id"] == run_id), None)


def stats(values: list[float]) -> dict[str, float]:
    ordered = sorted(v for v in values if v == v) or [float("nan")]
    return {
        "median": statistics.median(ordered),
        "p95": percentile(ordered, 95),
        "min": ordered[0],
        "max": ordered[-1],
        "n": len(ordered),
    }


def run_setup(setup: str, runs: int, settle: float, pg_url: str | None, idle_sleep: float | None) -> dict[str, Any]:
    backend, _, route = setup.partition("-")
    home = Path(tempfile.mkdtemp(prefix=f"hitl-bench-latency-{setup}-"))
    env: dict[str, str] = {}
    if idle_sleep is not None:  # the scheduler's sleep between idle loops (Airflow's default: 1 s), for both gates
        env["AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME"] = str(idle_sleep)
    databases = contextlib.ExitStack()
    if backend == "postgresql":
        if not pg_url:
            raise SystemExit("the postgresql setups need --pg-url (or HITL_TEST_POSTGRES_URL)")
        meta = databases.enter_context(fresh_postgres_database(pg_url, "hitl_bench_meta"))
        store = databases.enter_context(fresh_postgres_database(pg_url, "hitl_bench_store"))
        env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = meta.replace("postgresql://", "postgresql+psycopg2://", 1)
        env["AIRFLOW__HITL__STORE_URL"] = store
    else:
        env["AIRFLOW__HITL__STORE_URL"] = f"sqlite:///{home / 'hitl.db'}"
    if route == "trigger":
        env["AIRFLOW__HITL__END_GATE_FROM_DECIDER"] = "false"
    stack = AirflowStack(
        home=home,
        port=free_port(),
        dags_folder=REPO / "benchmarks" / "dags",
        specs_folder=REPO / "benchmarks" / "specs",
        extra_env=env,
    )
    print(f"\n== {setup}: AIRFLOW_HOME={home}", flush=True)
    rows: dict[str, list[dict[str, float]]] = {"ours": [], "native": []}
    failed = {"ours": 0, "native": 0}
    try:
        stack.setup()
        stack.start()
        stack.wait_healthy()
        stack.wait_for_dag("gate_latency")
        stack.wait_for_dag(NATIVE_DAG)
        tokens = {user: stack.token(user) for user in ("admin", "alice")}
        for kind in ("ours", "native"):  # one untimed run each: first-run costs (DAG serialization, imports)
            try:
                one_run(stack, tokens, kind, settle)
            except GateFailed as exc:
                print(f"warm-up: {kind} FAILED: {exc}", flush=True)
        for i in range(runs):
            for kind in ("ours", "native"):
                try:
                    rows[kind].append(one_run(stack, tokens, kind, settle))
                except GateFailed as exc:
                    failed[kind] += 1
                    print(f"run {i + 1:>2}: {kind} FAILED: {exc}", flush=True)
            print(
                f"run {i + 1:>2}: ours {rows['ours'][-1]['total']:5.2f} s"
                f"   native {rows['native'][-1]['total']:5.2f} s",
                flush=True,
            )
    finally:
        stack.stop()
        databases.close()
    result: dict[str, Any] = {"setup": setup, "failed": failed}
    for kind in rows:
        result[kind] = {part: stats([r[part] for r in rows[kind]]) for part in ("total", *COMPONENTS)}
    result["ratio_median"] = result["ours"]["total"]["median"] / result["native"]["total"]["median"]
    result["ratio_p95"] = result["ours"]["total"]["p95"] / result["native"]["total"]["p95"]
    return result


def print_table(results: list[dict[str, Any]]) -> None:
    print("\ndecision sent by the client -> downstream task started (seconds; median / p95 (min-max))")
    print(f"{'setup':<20} {'ours':>26} {'native ApprovalOperator':>26} {'ratio med':>10} {'ratio p95':>10}")
    for r in results:
        cells = []
        for kind in ("ours", "native"):
            t = r[kind]["total"]
            cells.append(f"{t['median']:.2f} / {t['p95']:.2f} ({t['min']:.2f}-{t['max']:.2f})")
        print(f"{r['setup']:<20} {cells[0]:>26} {cells[1]:>26} {r['ratio_median']:>10.2f} {r['ratio_p95']:>10.2f}")
    print("\nwhere the time goes (median seconds per component)")
    print(f"{'setup':<20} {'kind':<7} " + " ".join(f"{c:>10}" for c in COMPONENTS))
    for r in results:
        for kind in ("ours", "native"):
            print(f"{r['setup']:<20} {kind:<7} " + " ".join(f"{r[kind][c]['median']:>10.3f}" for c in COMPONENTS))


def main() -> int:
    import signal

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a killed run still stops the Airflow it started
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument(
        "--settle",
        type=float,
        default=3.0,
        help="seconds the reviewer takes after the gate parks (the triggerer picks a new trigger up within ~1-2 s)",
    )
    parser.add_argument("--setups", default="sqlite,postgresql,sqlite-trigger,postgresql-trigger")
    parser.add_argument("--pg-url", default=os.environ.get("HITL_TEST_POSTGRES_URL"))
    parser.add_argument(
        "--scheduler-idle-sleep",
        type=float,
        help="[scheduler] scheduler_idle_sleep_time for both (default: Airflow's 1 s)",
    )
    args = parser.parse_args()
    setups = [s for s in args.setups.split(",") if s]
    if not args.pg_url:
        print("no --pg-url / HITL_TEST_POSTGRES_URL: the PostgreSQL setups are left out", flush=True)
        setups = [s for s in setups if not s.startswith("postgresql")]
    results = [run_setup(s, args.runs, args.settle, args.pg_url, args.scheduler_idle_sleep) for s in setups]
    print_table(results)
    out = RESULTS.with_name(f"decision_latency-{'+'.join(setups)}.json")
    if args.scheduler_idle_sleep is not None:
        out = out.with_name(f"{out.stem}-idle{args.scheduler_idle_sleep:g}.json")
        print(f"(scheduler_idle_sleep_time = {args.scheduler_idle_sleep:g} s for both)")
    out.parent.mkdir(exist_ok=True)
    body = {"runs": args.runs, "settle": args.settle, "scheduler_idle_sleep": args.scheduler_idle_sleep}
    out.write_text(json.dumps({**body, "results": results}, indent=2))
    print(f"written: {out.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
