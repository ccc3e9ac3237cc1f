"""What parked gates cost while they wait, and how fast they all resume: the watcher now vs before (28fcdd3).

For 100, 1,000 and 10,000 parked gates, each in a fresh process with a fresh store (SQLite, and
PostgreSQL with --pg-url), N gate coroutines wait exactly as ``ApprovalTrigger.run`` does (the
shared watcher, then ``GateEnd``) in one event loop, as in one triggerer. Measured while waiting
(--seconds each): store statements per second (counted by SQLAlchemy), the process's CPU share, and
the resident memory the waiting gates added (per 1,000 gates). Then one bulk decision approves them
all and the time until every gate has its end event is taken.

The "before" watcher is the one of commit 28fcdd3 (one ``id IN (...)`` query per 500 gates per poll),
read from git, measured in the same run.

    .venv/bin/python benchmarks/parked_gates.py [--seconds 30] [--pg-url postgresql://postgres@127.0.0.1:5432/test]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "plugins"))
BEFORE = "28fcdd3"
SIZES = (100, 1000, 10_000)
RESULTS = REPO / "benchmarks" / "results" / "parked_gates.json"

from hitl_devstack import fresh_postgres_database  # noqa: E402


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def fill(url: str, n: int) -> list[int]:
    """N pending requests, as N gates of N runs would record them (bulk: this is set-up, not the measurement)."""
    from sqlalchemy import insert, select

    sys.path.insert(0, str(REPO / "tests"))
    from helpers import gate
    from hitl.store import Store
    from hitl.store.schema import approval_request

    store = Store(url)
    store.upgrade()
    first, _ = store.record_request(gate(run_id="run_0"))
    with store.engine.connect() as conn:
        row = dict(conn.execute(select(approval_request).where(approval_request.c.id == first.id)).mappings().one())
    row.pop("id")
    with store.writing() as conn:
        for start in range(1, n, 1000):
            conn.execute(
                insert(approval_request), [{**row, "run_id": f"run_{i}"} for i in range(start, min(n, start + 1000))]
            )
    with store.engine.connect() as conn:
        ids = [r[0] for r in conn.execute(select(approval_request.c.id).order_by(approval_request.c.id))]
    store.engine.dispose()
    store.write_engine.dispose()
    assert len(ids) == n, (len(ids), n)
    return ids


def load_watcher(which: str) -> Any:
    if which == "now":
        from hitl.store import watcher

        return watcher
    source = subprocess.run(
        ["git", "-C", str(REPO), "show", f"{BEFORE}:plugins/hitl/store/watcher.py"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    path = Path(tempfile.mkdtemp()) / "watcher_before.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("watcher_before", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def measure(url: str, ids: list[int], which: str, seconds: float, poll: float) -> dict[str, Any]:
    import airflow.triggers.base  # noqa: F401  (loaded in a real triggerer; its first import is not the watcher's time)
    from sqlalchemy import event, text, update

    from hitl.gate_end import GateEnd
    from hitl.store import APPROVED, Store, utcnow
    from hitl.store.schema import approval_request

    module = load_watcher(which)
    watcher = module.DecisionWatcher(url, poll)
    statements: list[str] = []
    event.listen(watcher._engine_for().sync_engine, "before_cursor_execute", lambda *a: statements.append(a[2]))

    async def gate_task(request_id: int) -> Any:  # what ApprovalTrigger.run does
        return GateEnd.of(await watcher.wait(request_id)).event()

    before = rss_mb()
    tasks = [asyncio.ensure_future(gate_task(i)) for i in ids]
    deadline = time.monotonic() + 300
    while watcher.polls < 1 or getattr(watcher, "_fresh", ()):  # every gate parked and looked at once
        assert time.monotonic() < deadline, "the watcher never looked"
        await asyncio.sleep(0.05)
    await asyncio.sleep(1)
    parked_mb = rss_mb() - before

    statements.clear()
    cpu0, wall0, polls0 = time.process_time(), time.monotonic(), watcher.polls
    await asyncio.sleep(seconds)
    cpu1, wall1 = time.process_time(), time.monotonic()
    waiting = {
        "statements_per_s": len(statements) / (wall1 - wall0),
        "looks_per_s": (watcher.polls - polls0) / (wall1 - wall0),
        "cpu_percent": 100 * (cpu1 - cpu0) / (wall1 - wall0),
        "rss_mb": rss_mb(),
        "mb_per_1000_gates": parked_mb * 1000 / len(ids),
    }

    store = Store(url)
    with store.writing() as conn:  # one bulk decision (what a bulk approve of everything amounts to)
        conn.execute(
            update(approval_request)
            .where(approval_request.c.id.in_(ids))
            .values(status=APPROVED, decided_by="bench", decided_at=utcnow())
        )
        if store.dialect == "postgresql":
            conn.execute(text("SELECT pg_notify('hitl_decision', 'bulk')"))
    started = time.monotonic()  # committed: every reader can see the decisions from here on
    ends = await asyncio.wait_for(asyncio.gather(*tasks), 600)
    resumed = time.monotonic() - started
    assert len(ends) == len(ids)
    return {**waiting, "resume_all_s": resumed}


def one(backend: str, url: str, n: int, which: str, seconds: float, poll: float) -> dict[str, Any]:
    ids = fill(url, n)
    os.environ["AIRFLOW__HITL__STORE_URL"] = url
    result = asyncio.run(measure(url, ids, which, seconds, poll))
    return {"backend": backend, "gates": n, "watcher": which, "poll_interval": poll, **result}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--poll", type=float, default=0.5, help="poll interval ([hitl] poll_interval default)")
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)))
    parser.add_argument("--pg-url", default=os.environ.get("HITL_TEST_POSTGRES_URL"))
    parser.add_argument("--one", nargs=4, metavar=("BACKEND", "URL", "N", "WATCHER"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        backend, url, n, which = args.one
        print(json.dumps(one(backend, url, int(n), which, args.seconds, args.poll)))
        return 0

    rows: list[dict[str, Any]] = []
    backends = ["sqlite"] + (["postgresql"] if args.pg_url else [])
    print(f"parked gates, one event loop, poll {args.poll:g} s, {args.seconds:g} s of waiting each; before = {BEFORE}")
    header = f"{'store':<10} {'gates':>6} {'watcher':<7} {'stmts/s':>8} {'CPU %':>6} {'MB/1000':>8} {'resume all':>11}"
    print(header)
    for backend in backends:
        for n in (int(s) for s in args.sizes.split(",")):
            for which in ("before", "now"):
                with contextlib.ExitStack() as databases:
                    if backend == "sqlite":
                        url = f"sqlite:///{tempfile.mkdtemp(prefix='hitl-parked-')}/hitl.db"
                    else:
                        url = databases.enter_context(fresh_postgres_database(args.pg_url, "hitl_bench_parked"))
                    command = [sys.executable, __file__, "--seconds", str(args.seconds), "--poll", str(args.poll)]
                    out = subprocess.run(
                        [*command, "--one", backend, url, str(n), which],
                        capture_output=True,
                        text=True,
                        timeout=1200,
                    )
                if out.returncode:
                    print(out.stderr[-2000:], file=sys.stderr)
                    raise SystemExit(f"{backend} {n} {which} failed")
                row = json.loads(out.stdout.strip().splitlines()[-1])
                rows.append(row)
                print(
                    f"{backend:<10} {n:>6} {which:<7} {row['statements_per_s']:>8.2f} {row['cpu_percent']:>6.1f}"
                    f" {row['mb_per_1000_gates']:>8.1f} {row['resume_all_s']:>10.2f}s",
                    flush=True,
                )
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({"seconds": args.seconds, "poll_interval": args.poll, "rows": rows}, indent=2))
    print(f"written: {RESULTS.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
