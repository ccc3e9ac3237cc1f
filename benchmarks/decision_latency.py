"""Decision -> downstream task start, ours vs Airflow 3.3's own ApprovalOperator, on one real Airflow.

Starts api-server, scheduler, dag-processor and triggerer (LocalExecutor, SQLite) in a temp
AIRFLOW_HOME, then alternates N runs of each: wait until the gate parks, decide (ours: the
decision service, as the review page does; native: REST PATCH .../hitlDetails, as its UI
does), and read the downstream task's start_date from the REST API.

    .venv/bin/python benchmarks/decision_latency.py [--runs 20] [--store-url postgresql://...]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "plugins"))

from hitl_devstack import AirflowStack, free_port  # noqa: E402


def wait(predicate, timeout: float = 120, every: float = 0.1):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise TimeoutError("gave up waiting")


class GateFailed(Exception):
    pass


def start_date(stack: AirflowStack, dag_id: str, run_id: str, task_id: str) -> datetime | None:
    ti = stack.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}")
    if ti.get("state") in ("upstream_failed", "skipped", "failed"):
        raise GateFailed(f"{dag_id} {run_id}: {task_id} is {ti['state']}")
    return datetime.fromisoformat(ti["start_date"]) if ti.get("start_date") else None


def ours(stack: AirflowStack, store, settle: float) -> float:  # type: ignore[no-untyped-def]
    from hitl.decisions import decide
    from hitl.identity import Reviewer

    run_id = stack.trigger("gate_latency")
    wait(lambda: stack.task_state("gate_latency", run_id, "draft__approval") == "deferred")
    time.sleep(settle)
    req = store.current_for_gate("gate_latency", run_id, "draft__approval")
    outcome = decide(store, req.id, Reviewer("alice"), "approve", channel="benchmark")
    decided = outcome.request.decided_at  # committed in the store: from here on every reader sees it
    started = wait(lambda: start_date(stack, "gate_latency", run_id, "send"))
    stack.wait_run("gate_latency", run_id)
    return (started - decided).total_seconds()


def native(stack: AirflowStack, settle: float) -> float:
    dag = "native_approval_latency"
    run_id = stack.trigger(dag)
    wait(lambda: stack.task_state(dag, run_id, "approve") in ("deferred", "awaiting_input"))
    time.sleep(settle)
    answer = stack.api(
        "PATCH",
        f"/api/v2/dags/{dag}/dagRuns/{run_id}/taskInstances/approve/-1/hitlDetails",
        {"chosen_options": ["Approve"], "params_input": {}},
    )
    decided = datetime.fromisoformat(answer["responded_at"])  # set by the server as it records the answer
    started = wait(lambda: start_date(stack, dag, run_id, "send"))
    stack.wait_run(dag, run_id)
    return (started - decided).total_seconds()


def summary(name: str, values: list[float]) -> str:
    ordered = sorted(values) or [float("nan")]
    p95 = ordered[max(0, round(0.95 * len(ordered)) - 1)]
    spread = f"(n={len(ordered)}, min {ordered[0]:.2f}, max {ordered[-1]:.2f})"
    return f"{name:<42} median {statistics.median(ordered):6.2f} s   p95 {p95:6.2f} s   {spread}"


def main() -> int:
    import signal

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a killed run still stops the Airflow it started
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--settle", type=float, default=3.0, help="seconds the reviewer waits after the gate parks")
    parser.add_argument("--trigger-only", action="store_true", help="leave every decision to the trigger's poll")
    parser.add_argument("--store-url", help="decision store (default: SQLite in the temp AIRFLOW_HOME)")
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="hitl-bench-latency-"))
    store_url = args.store_url or f"sqlite:///{home / 'hitl.db'}"
    stack = AirflowStack(
        home=home,
        port=free_port(),
        dags_folder=REPO / "benchmarks" / "dags",
        specs_folder=REPO / "benchmarks" / "specs",
        extra_env={"AIRFLOW__HITL__STORE_URL": store_url},
    )
    print(f"AIRFLOW_HOME={home}  store={store_url.split('@')[-1]}", flush=True)
    # Decide from a process configured like the api-server behind the review page (same Airflow DB).
    os.environ.update(stack.env())
    if args.trigger_only:  # the deciding process does not end the gate: the trigger's watcher does
        os.environ["AIRFLOW__HITL__END_GATE_FROM_DECIDER"] = "false"
    stack.setup()
    from hitl.store import Store

    store = Store(store_url)
    store.upgrade()
    stack.start()
    try:
        stack.wait_healthy()
        stack.wait_for_dag("gate_latency")
        stack.wait_for_dag("native_approval_latency")
        mine: list[float] = []
        theirs: list[float] = []
        failed = {"ours": 0, "native": 0}
        for i in range(args.runs):
            for name, measure, into in (
                ("ours", lambda: ours(stack, store, args.settle), mine),
                ("native", lambda: native(stack, args.settle), theirs),
            ):
                try:
                    into.append(measure())
                except GateFailed as exc:
                    failed[name] += 1
                    print(f"run {i + 1:>2}: {name} FAILED: {exc}", flush=True)
            last = theirs[-1] if theirs else float("nan")
            print(f"run {i + 1:>2}: ours {mine[-1]:5.2f} s   ApprovalOperator {last:5.2f} s", flush=True)
        print()
        print(f"decision -> downstream task start (LocalExecutor, SQLite, decided {args.settle:g} s after parking)")
        name = (
            "hitl ApprovalSensor (trigger poll only)" if args.trigger_only else "hitl ApprovalSensor (decision service)"
        )
        print(summary(name, mine) + f"   gate failed {failed['ours']}x")
        print(summary("Airflow ApprovalOperator (REST PATCH)", theirs) + f"   gate failed {failed['native']}x")
    finally:
        stack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
