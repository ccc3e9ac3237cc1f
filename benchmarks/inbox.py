"""The inbox's server time with 10,000 pending and 10,000 decided requests, beside Airflow's own Required Actions API.

One real api-server serves both over HTTP on loopback. Airflow's metadata DB gets the same
counts of ApprovalOperator requests (copies of one real parked request: dag run, task
instance, hitl_detail; half answered); our store gets 20,000 outreach drafts, half decided.
Each figure is the wall time of an HTTP GET measured by the client, N requests, median and p95.

    .venv/bin/python benchmarks/inbox.py [--pending 10000] [--decided 10000] [-n 30]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "plugins"))

from hitl_devstack import AirflowStack, free_port  # noqa: E402

NATIVE = "native_approval_latency"


def timed_get(url: str, token: str, n: int) -> list[float]:
    times = []
    for _ in range(n):
        req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}", "Cookie": f"_token={token}"})
        start = time.perf_counter()
        with urllib.request.urlopen(req, timeout=60) as resp:
            resp.read()
            assert resp.status == 200, resp.status
        times.append(time.perf_counter() - start)
    return times


def fill_airflow(stack: AirflowStack, pending: int, decided: int) -> None:
    """Copy one real parked ApprovalOperator request until the metadata DB holds the wanted counts."""
    run_id = stack.trigger(NATIVE)
    deadline = time.monotonic() + 180
    while stack.task_state(NATIVE, run_id, "approve") not in ("deferred", "awaiting_input"):
        assert time.monotonic() < deadline, "the native gate never parked"
        time.sleep(0.5)
    os.environ.update(stack.env())
    from airflow import settings
    from airflow.models.dagrun import DagRun
    from airflow.models.hitl import HITLDetail
    from airflow.models.taskinstance import TaskInstance
    from sqlalchemy import insert, select

    settings.configure_orm()
    runs, tis, details = DagRun.__table__, TaskInstance.__table__, HITLDetail.__table__
    with settings.engine.begin() as conn:
        run = dict(conn.execute(select(runs).where(runs.c.run_id == run_id)).one()._mapping)
        ti = dict(conn.execute(select(tis).where(tis.c.run_id == run_id, tis.c.task_id == "approve")).one()._mapping)
        detail = dict(conn.execute(select(details).where(details.c.ti_id == ti["id"])).one()._mapping)
        base = run["logical_date"]
        for start in range(0, pending + decided, 1000):
            batch_runs, batch_tis, batch_details = [], [], []
            for i in range(start, min(start + 1000, pending + decided)):
                rid = f"bench__{i:06d}"
                r = {**run, "run_id": rid, "logical_date": base - timedelta(minutes=i + 1)}
                r.pop("id")
                t = {**ti, "id": uuid.uuid4(), "run_id": rid}
                d = {**detail, "ti_id": t["id"], "created_at": base - timedelta(minutes=i + 1)}
                if i >= pending:
                    d.update(
                        responded_at=base, responded_by={"id": "admin", "name": "admin"}, chosen_options=["Approve"]
                    )
                batch_runs.append(r)
                batch_tis.append(t)
                batch_details.append(d)
            conn.execute(insert(runs), batch_runs)
            conn.execute(insert(tis), batch_tis)
            conn.execute(insert(details), batch_details)


def fill_ours(store_url: str, pending: int, decided: int) -> int:
    from sqlalchemy import insert

    from hitl.store import Store, approver_rows, canonical_json, content_hash
    from hitl.store.schema import approval_request, request_approver

    store = Store(store_url)
    now = datetime.now(UTC)
    with store.writing() as conn:
        for start in range(0, pending + decided, 1000):
            rows, approvers = [], []
            for i in range(start, min(start + 1000, pending + decided)):
                output = {
                    "from": "sam@acme.example",
                    "to": f"owner{i}@shop.example",
                    "subject": f"Hello shop {i}",
                    "body": "Hi " * 50,
                }
                status = "pending" if i < pending else ("approved" if i % 2 else "rejected")
                who = [{"userId": "alice"}] if i % 3 else [{"role": "Op"}]
                rows.append(
                    {
                        "id": i + 1,
                        "dag_id": f"outreach_{i % 20}",
                        "run_id": f"manual__{i:06d}",
                        "step_id": "draft_email",
                        "gate_task_id": "draft_email__approval",
                        "map_index": -1,
                        "try_number": 1,
                        "output_kind": "email",
                        "output": canonical_json(output),
                        "output_hash": content_hash(output),
                        "summary": f"To owner{i}@shop.example: Hello shop {i}",
                        "approve_label": "Send email",
                        "approvers": canonical_json(who),
                        "min_approvals": 1,
                        "allow_self_approval": True,
                        "status": status,
                        "created_at": now - timedelta(minutes=i + 1),
                        "decided_at": None if status == "pending" else now,
                        "decided_by": None if status == "pending" else "alice",
                        "comment": None,
                    }
                )
                approvers += [{"request_id": i + 1, "kind": k, "value": v} for k, v in approver_rows(who)]
            conn.execute(insert(approval_request), rows)
            conn.execute(insert(request_approver), approvers)
    return pending // 2


def summary(name: str, values: list[float]) -> str:
    ordered = sorted(values)
    p95 = ordered[max(0, round(0.95 * len(ordered)) - 1)]
    return f"{name:<58} median {statistics.median(ordered) * 1000:7.1f} ms   p95 {p95 * 1000:7.1f} ms"


def main() -> int:
    import signal

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a killed run still stops the Airflow it started
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pending", type=int, default=10_000)
    parser.add_argument("--decided", type=int, default=10_000)
    parser.add_argument("-n", type=int, default=30)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="hitl-bench-inbox-"))
    stack = AirflowStack(
        home=home,
        port=free_port(),
        dags_folder=REPO / "benchmarks" / "dags",
        specs_folder=REPO / "benchmarks" / "specs",
    )
    print(f"AIRFLOW_HOME={home}", flush=True)
    stack.setup()
    stack.start()
    try:
        stack.wait_healthy()
        stack.wait_for_dag(NATIVE)
        t = time.perf_counter()
        fill_airflow(stack, args.pending, args.decided)
        fill_ours(f"sqlite:///{home / 'hitl.db'}", args.pending, args.decided)
        print(
            f"filled both with {args.pending} pending + {args.decided} decided in {time.perf_counter() - t:.0f}s",
            flush=True,
        )
        alice, admin = stack.token("alice"), stack.token("admin")
        base = stack.base_url
        results = [
            ("hitl inbox, page 1 ('needs your attention', alice)", timed_get(f"{base}/pluginsv2/hitl/", alice, args.n)),
            (
                "hitl inbox, filtered (workflow + search, all pending)",
                timed_get(f"{base}/pluginsv2/hitl/?tab=pending&dag=outreach_7&q=manual__0012", alice, args.n),
            ),
            ("hitl inbox, page 40 of history", timed_get(f"{base}/pluginsv2/hitl/?tab=decided&page=40", alice, args.n)),
            ("hitl review page (one request)", timed_get(f"{base}/pluginsv2/hitl/request/4242", alice, args.n)),
            ("hitl badge count (JSON)", timed_get(f"{base}/pluginsv2/hitl/badge", alice, args.n)),
            (
                "Airflow hitlDetails?limit=50 (Required Actions page)",
                timed_get(f"{base}/api/v2/dags/~/dagRuns/~/hitlDetails?limit=50", admin, args.n),
            ),
            (
                "Airflow hitlDetails, pending only (response_received=false)",
                timed_get(
                    f"{base}/api/v2/dags/~/dagRuns/~/hitlDetails?limit=50&response_received=false", admin, args.n
                ),
            ),
            (
                "Airflow hitlDetails, one item",
                timed_get(
                    f"{base}/api/v2/dags/{NATIVE}/dagRuns/bench__004242/taskInstances/approve/-1/hitlDetails",
                    admin,
                    args.n,
                ),
            ),
        ]
        print(
            f"\n{args.pending} pending + {args.decided} decided on each side, SQLite, one api-server worker, n={args.n}"
        )
        for name, values in results:
            print(summary(name, values))
    finally:
        stack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
