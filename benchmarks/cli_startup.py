"""Wall time of one ``python -m hitl`` call, per command, as a user's shell sees it (a fresh process each time).

Beside each command, ``python -c "import airflow.configuration"``: what every call cost when the CLI read its
settings through Airflow's config (the floor of any command that needs Airflow, such as approve/reject, which
end the gate in Airflow's database). The store is a fresh SQLite file with one request; airflow.cfg holds the
settings, as in a real install.

    .venv/bin/python benchmarks/cli_startup.py [--repeat 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COMMANDS = [
    ["--help"],
    ["validate", str(REPO / "workflow_specs")],
    ["approvals", "list"],
    ["approvals", "show", "1"],
    ["approvals", "comment", "1", "--user", "alice", "--body", "ok"],
    ["audit", "export", "--request", "1"],
]


def timed(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, env=env, capture_output=True, check=False)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="hitl-cli-bench-"))
    (home / "airflow.cfg").write_text(
        f"[api]\nsecret_key = bench-secret-0123456789abcdef\nbase_url = http://localhost:8080\n"
        f"[hitl]\nstore_url = sqlite:///{home / 'hitl.db'}\n"
        "[core]\nsimple_auth_manager_users = alice:user\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__")}
    env.update({"AIRFLOW_HOME": str(home), "PYTHONPATH": os.pathsep.join([str(REPO / "plugins"), str(REPO / "tests")])})
    seed = "from helpers import gate; from hitl.store import get_store; s = get_store(); s.upgrade()"
    seed += "; s.record_request(gate())"
    subprocess.run([sys.executable, "-c", seed], env=env, check=True, capture_output=True)
    rows = [("python -c 'import airflow.configuration'", [sys.executable, "-c", "import airflow.configuration"])]
    rows += [
        ("python -m hitl " + " ".join(c[:2] if c[0] != "validate" else c[:1]), [sys.executable, "-m", "hitl", *c])
        for c in COMMANDS
    ]
    print(f"{'command':<48} {'median s':>9} {'min s':>7}   ({args.repeat} runs each, {os.cpu_count()} cores)")
    for name, argv in rows:
        times = [timed(argv, env) for _ in range(args.repeat)]
        print(f"{name:<48} {statistics.median(times):>9.2f} {min(times):>7.2f}")


if __name__ == "__main__":
    main()
