"""Parse time and peak memory of 2,000 workflow specs through our DAG file, beside astronomer's dag-factory.

Both sides are a DAG file over a folder of 2,000 equivalent workflows (4 tasks, one approval gate):
ours is ``dags/hitl_workflows.py`` over 2,000 specs, theirs a DAG file calling
``dagfactory.load_yaml_dags`` over 2,000 YAML configs. Every measurement is a fresh process (as
the dag-processor parses a file), the sides interleaved, ``--repeat`` times each:

- ``DAG file -> DagBag``: what Airflow's dag-processor does with the file (``BundleDagBag``:
  import the file, check and bag every DAG), from "Airflow imported" to "bag full";
- ``+ serialize``: then ``DagSerialization.to_dict`` of every DAG, as the dag-processor sends them on;
- ``factory only``: the factory call alone (``build_dags`` / ``load_yaml_dags``), in its own process;
- peak RSS of the DagBag process (``ru_maxrss``) and its growth over "Airflow imported".

Airflow's default budget for a DAG file is [core] dagbag_import_timeout = 30 s.

    .venv/bin/python benchmarks/parse_time.py [--specs 2000] [--repeat 3] [--json benchmarks/results/parse_time.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
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
    prospect_email: owner@rosies-bakery.example
    sender_email: sam@acme-pos.example
    sender_name: Sam from Acme POS
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

THEIR_DAG_FILE = """\
\"\"\"Airflow DAG file: astronomer's dag-factory over the YAML configs beside it.\"\"\"
from pathlib import Path

from dagfactory import load_yaml_dags

load_yaml_dags(globals_dict=globals(), dags_folder=str(Path(__file__).parent / "configs"), suffix=[".yml"])
"""

# The child: "dagbag" parses the DAG file as the dag-processor does; "factory" calls the factory alone.
CHILD = """
import json, os, resource, sys, time
sys.path.insert(0, {plugins!r})
import airflow.sdk
from airflow.dag_processing.dagbag import BundleDagBag
from airflow.serialization.serialized_objects import DagSerialization
base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
out = {{}}
t0, c0 = time.perf_counter(), time.process_time()
if {mode!r} == "dagbag":
    bag = BundleDagBag(dag_folder={dag_file!r}, bundle_path={bundle!r}, bundle_name="dags-folder", load_op_links=False)
    t1, c1 = time.perf_counter(), time.process_time()
    assert not bag.import_errors, bag.import_errors
    for dag in bag.dags.values():
        DagSerialization.to_dict(dag)
    t2, c2 = time.perf_counter(), time.process_time()
    out.update(dags=len(bag.dags), parse=t1 - t0, serialize=t2 - t1, parse_cpu=c1 - c0, serialize_cpu=c2 - c1)
elif {side!r} == "ours":
    from hitl.factory import build_dags
    out.update(dags=len(build_dags({folder!r})), factory=time.perf_counter() - t0, factory_cpu=time.process_time() - c0)
else:
    from dagfactory import load_yaml_dags
    g = {{}}
    load_yaml_dags(globals_dict=g, dags_folder={folder!r}, suffix=[".yml"])
    from airflow.sdk import DAG
    n = sum(isinstance(v, DAG) for v in g.values())
    out.update(dags=n, factory=time.perf_counter() - t0, factory_cpu=time.process_time() - c0)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
out.update(peak_rss_mb=peak / 1024, rss_growth_mb=(peak - base_rss) / 1024)
print("RESULT " + json.dumps(out))
"""


def prepare(tmp: Path, specs: int) -> dict[str, dict[str, Path]]:
    ours = {"bundle": tmp / "ours" / "dags", "folder": tmp / "ours" / "workflow_specs"}
    theirs = {"bundle": tmp / "theirs" / "dags", "folder": tmp / "theirs" / "dags" / "configs"}
    for side in (ours, theirs):
        side["folder"].mkdir(parents=True)
        side["bundle"].mkdir(parents=True, exist_ok=True)
    ours["dag_file"] = ours["bundle"] / "hitl_workflows.py"
    ours["dag_file"].write_text((REPO / "dags" / "hitl_workflows.py").read_text())
    theirs["dag_file"] = theirs["bundle"] / "dag_factory_workflows.py"
    theirs["dag_file"].write_text(THEIR_DAG_FILE)
    for i in range(specs):
        (ours["folder"] / f"outreach_{i}.yaml").write_text(
            OUTREACH.replace("id: local_business_outreach", f"id: outreach_{i}", 1)
        )
        (theirs["folder"] / f"outreach_{i}.yml").write_text(DAG_FACTORY_TEMPLATE.format(i=i))
    return {"ours": ours, "theirs": theirs}


def run_child(side: str, mode: str, paths: dict[str, Path], home: Path) -> dict[str, float]:
    code = CHILD.format(
        plugins=str(REPO / "plugins"),
        mode=mode,
        side=side,
        folder=str(paths["folder"]),
        dag_file=str(paths["dag_file"]),
        bundle=str(paths["bundle"]),
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__")}
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT="300",  # measure past the default 30 s rather than fail
        AIRFLOW__HITL__SPECS_FOLDER=str(paths["folder"]),
        AIRFLOW__LOGGING__LOGGING_LEVEL="ERROR",
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False)
    lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
    if out.returncode or not lines:
        raise RuntimeError(f"{side}/{mode} failed ({out.returncode}):\n{out.stdout[-2000:]}\n{out.stderr[-4000:]}")
    return dict(json.loads(lines[-1][len("RESULT ") :]))


def stats(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--specs", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", type=Path, default=REPO / "benchmarks" / "results" / "parse_time.json")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="hitl-bench-parse-"))
    sides = prepare(tmp, args.specs)
    runs: dict[str, dict[str, list[dict[str, float]]]] = {s: {"dagbag": [], "factory": []} for s in sides}
    for r in range(args.repeat):  # interleaved: ours, theirs, ours, theirs ...
        for mode in ("dagbag", "factory"):
            for side, paths in sides.items():
                runs[side][mode].append(run_child(side, mode, paths, tmp / "airflow_home"))
        print(f"  repeat {r + 1}/{args.repeat} done", flush=True)

    result: dict[str, object] = {
        "specs": args.specs,
        "repeat": args.repeat,
        "load_avg_1m": os.getloadavg()[0],
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "sides": {},
    }
    names = {"ours": "hitl (dags/hitl_workflows.py)", "theirs": "astronomer dag-factory 1.1"}
    expected = {"ours": args.specs + 1, "theirs": args.specs}  # ours: + the hitl_monitor DAG
    for side in sides:
        bag, fac = runs[side]["dagbag"], runs[side]["factory"]
        assert all(x["dags"] == expected[side] for x in bag + fac), (side, [x["dags"] for x in bag + fac])
        result["sides"][side] = {  # type: ignore[index]
            "dags": expected[side],
            "parse_s": stats([x["parse"] for x in bag]),
            "parse_and_serialize_s": stats([x["parse"] + x["serialize"] for x in bag]),
            "factory_only_s": stats([x["factory"] for x in fac]),
            "parse_cpu_s": stats([x["parse_cpu"] for x in bag]),
            "parse_and_serialize_cpu_s": stats([x["parse_cpu"] + x["serialize_cpu"] for x in bag]),
            "factory_only_cpu_s": stats([x["factory_cpu"] for x in fac]),
            "peak_rss_mb": max(x["peak_rss_mb"] for x in bag),
            "rss_growth_mb": max(x["rss_growth_mb"] for x in bag),
            "runs": runs[side],
        }
    ours, theirs = result["sides"]["ours"], result["sides"]["theirs"]  # type: ignore[index]
    keys = ("parse_s", "parse_and_serialize_s", "factory_only_s")
    ratios = {k: ours[k]["median"] / theirs[k]["median"] for k in keys}
    cpu_ratios = {k: ours[k[:-2] + "_cpu_s"]["median"] / theirs[k[:-2] + "_cpu_s"]["median"] for k in keys}
    result["ratio_ours_to_theirs"] = ratios
    result["cpu_ratio_ours_to_theirs"] = cpu_ratios
    result["goal"] = "parse time under 1/3 of dag-factory's"

    print(
        f"\n{args.specs} workflows, each 4 tasks with one approval gate; a fresh process per parse, "
        f"{args.repeat} repeats interleaved (load {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)"
    )
    columns = f"{'DagBag parse':>15} {'+ serialize':>15} {'factory only':>15} {'peak RSS':>9}"
    print(f"{'wall s, median (CPU s)':32} {'DAGs':>5} {columns}")
    for side in sides:
        e = result["sides"][side]  # type: ignore[index]
        cells = "".join(f"{e[k]['median']:7.2f} ({e[k[:-2] + '_cpu_s']['median']:5.2f})" for k in keys)
        print(f"{names[side]:32} {e['dags']:>5} {cells} {e['peak_rss_mb']:7.0f}MB")
    cells = "".join(f"{ratios[k]:7.2f} ({cpu_ratios[k]:5.2f})" for k in keys)
    print(f"{'ratio hitl / dag-factory':32} {'':>5} {cells}   goal < 0.33")
    print("budget: [core] dagbag_import_timeout = 30 s for the whole DAG file")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
