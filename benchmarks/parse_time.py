"""Parse time of 500 workflow specs through our DAG factory, beside astronomer's dag-factory on equivalent YAML.

Each side runs in a fresh process (as the dag-processor does), three times; the figure is
the time from "Airflow imported" to "500 DAGs built", plus that process's peak memory.
Airflow's default budget for a DAG file is [core] dagbag_import_timeout = 30 s.

    .venv/bin/python benchmarks/parse_time.py [--specs 500]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUTREACH = (REPO / "workflow_specs" / "local_business_outreach.yaml").read_text()

DAG_FACTORY_TEMPLATE = """\
outreach_{i}:
  default_args:
    owner: sales-ops
    start_date: 2024-01-01
  schedule: null
  catchup: false
  description: Research a prospect, draft a cold email, send it.
  tags: [sales, outreach]
  params:
    prospect_url: http://127.0.0.1:8765/
  tasks:
    - task_id: research_prospect
      operator: airflow.providers.standard.operators.bash.BashOperator
      bash_command: "curl -s {{{{ params.prospect_url }}}}"
    - task_id: draft_email
      operator: airflow.providers.standard.operators.bash.BashOperator
      bash_command: "echo draft"
      dependencies: [research_prospect]
    - task_id: draft_email__approval
      operator: airflow.providers.standard.operators.hitl.ApprovalOperator
      subject: Send email?
      dependencies: [draft_email]
    - task_id: send_email
      operator: airflow.providers.standard.operators.bash.BashOperator
      bash_command: "echo send"
      dependencies: [draft_email__approval]
"""

OURS = """
import sys, time, resource
sys.path.insert(0, {plugins!r})
import airflow.sdk
t = time.perf_counter()
from hitl.factory import build_dags
dags = build_dags({folder!r})
print(len(dags), time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""

THEIRS = """
import sys, time, resource
import airflow.sdk
t = time.perf_counter()
from dagfactory import load_yaml_dags
g = {{}}
load_yaml_dags(globals_dict=g, dags_folder={folder!r}, suffix=[".yml"])
from airflow.sdk import DAG
n = sum(isinstance(v, DAG) for v in g.values())
print(n, time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def measure(code: str, repeat: int) -> tuple[int, list[float], int]:
    times, rss, count = [], 0, 0
    for _ in range(repeat):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        last = out.stdout.strip().splitlines()[-1].split()
        count, seconds, peak = int(last[0]), float(last[1]), int(last[2])
        times.append(seconds)
        rss = max(rss, peak)
    return count, times, rss


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--specs", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="hitl-bench-parse-"))
    ours_dir, theirs_dir = tmp / "workflow_specs", tmp / "dagfactory"
    ours_dir.mkdir()
    theirs_dir.mkdir()
    for i in range(args.specs):
        (ours_dir / f"outreach_{i}.yaml").write_text(
            OUTREACH.replace("id: local_business_outreach", f"id: outreach_{i}", 1)
        )
        (theirs_dir / f"outreach_{i}.yml").write_text(DAG_FACTORY_TEMPLATE.format(i=i))

    rows = []
    for name, code, folder in (
        ("hitl factory (validate + build)", OURS, ours_dir),
        ("astronomer dag-factory 1.1", THEIRS, theirs_dir),
    ):
        count, times, rss = measure(code.format(plugins=str(REPO / "plugins"), folder=str(folder)), args.repeat)
        rows.append((name, count, statistics.median(times), min(times), rss))
    print(f"{args.specs} specs, each 4 tasks with one approval gate; fresh process per parse, {args.repeat} repeats")
    print(f"{'':34} {'DAGs':>5} {'median':>9} {'best':>9} {'peak RSS':>10}")
    for name, count, median, best, rss in rows:
        print(f"{name:34} {count:>5} {median:8.2f}s {best:8.2f}s {rss / 1024:8.0f}MB")
    print("budget: [core] dagbag_import_timeout = 30 s for the whole DAG file")
    return 0


if __name__ == "__main__":
    sys.exit(main())
