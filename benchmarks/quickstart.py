"""Quickstart: the time from `make demo` on a fresh clone to the printed pending approval, and the install size.

Clones this repository (its committed HEAD) into a new directory, runs `make demo` there in its own
process group with ``HITL_PORT`` and ``HITL_DEMO_SITE_PORT`` on free ports, timestamps each line it
prints, stops it (SIGINT, as Ctrl-C) once it prints the "Pending approval:" URL, then measures the
clone's ``.venv``. Goal: under 4 minutes.

pip's download/wheel cache makes a second install faster than a truly fresh machine: ``--no-pip-cache``
sets ``PIP_NO_CACHE_DIR=1`` (every wheel fetched again from the index); both are worth reporting.

    .venv/bin/python benchmarks/quickstart.py [--no-pip-cache] [--keep] [--json benchmarks/results/quickstart.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GOAL_S = 240.0
# demo.py's progress lines, in order: the install is over when the first of its own lines appears.
MILESTONES = (
    ("install done (venv + requirements-demo.txt)", "AIRFLOW_HOME="),
    ("databases migrated, starting Airflow", "starting api-server"),
    ("DAG parsed, run triggered", "triggered local_business_outreach"),
    ("pending approval printed", "Pending approval:"),
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tree_bytes(path: Path) -> int:
    """Bytes on disk under ``path`` (as du counts them: allocated blocks, hard links once)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            st = os.lstat(os.path.join(root, name))
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            total += st.st_blocks * 512
    return total


def stop_group(proc: subprocess.Popen[str], grace: float = 90) -> None:
    """Ctrl-C to the whole process group (make and demo.py), as a user would; then TERM, then KILL."""
    for sig, wait in ((signal.SIGINT, grace), (signal.SIGTERM, 30), (signal.SIGKILL, 30)):
        if proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default=str(REPO), help="the repository to clone (default: this checkout)")
    parser.add_argument("--no-pip-cache", action="store_true", help="PIP_NO_CACHE_DIR=1: no wheels from pip's cache")
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument("--keep", action="store_true", help="keep the clone (default: removed after)")
    parser.add_argument("--json", type=Path, default=REPO / "benchmarks" / "results" / "quickstart.json")
    args = parser.parse_args()

    clone = Path(tempfile.mkdtemp(prefix="hitl-quickstart-")) / "repo"
    subprocess.run(["git", "clone", "--quiet", args.source, str(clone)], check=True)
    commit = subprocess.run(
        ["git", "-C", str(clone), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    # pip's own settings (index, find-links, certificates) stay: this measures the install as this machine does it.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "VIRTUAL_ENV", "HITL_"))}
    env.update(HITL_PORT=str(free_port()), HITL_DEMO_SITE_PORT=str(free_port()), PYTHONUNBUFFERED="1")
    if args.no_pip_cache:
        env["PIP_NO_CACHE_DIR"] = "1"
    print(
        f"cloned {args.source} @ {commit} into {clone}; make demo (HITL_PORT={env['HITL_PORT']}, "
        f"pip cache {'off' if args.no_pip_cache else 'on'}) ...",
        flush=True,
    )

    marks: dict[str, float] = {}
    lines: list[str] = []
    start = time.monotonic()
    proc = subprocess.Popen(
        ["make", "demo"],
        cwd=clone,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group: stopped as a whole, never by name
    )
    done = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            now = time.monotonic() - start
            lines.append(line.rstrip())
            for name, needle in MILESTONES:
                if name not in marks and needle in line:
                    marks[name] = now
                    print(f"  {now:6.1f}s  {name}", flush=True)
                    if name == MILESTONES[-1][0]:
                        done.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    finished = done.wait(args.timeout)
    stop_group(proc)
    reader.join(timeout=10)
    venv_bytes = tree_bytes(clone / ".venv") if (clone / ".venv").exists() else 0
    du = subprocess.run(["du", "-sh", str(clone / ".venv")], capture_output=True, text=True).stdout.split("\t")[0]

    total = marks.get(MILESTONES[-1][0])
    result = {
        "source": args.source,
        "commit": commit,
        "pip_cache": not args.no_pip_cache,
        "pip_config": subprocess.run(
            [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True
        ).stdout.splitlines(),
        "python": subprocess.run(
            ["bash", "-c", "command -v python3.11 || command -v python3"], capture_output=True, text=True
        ).stdout.strip(),
        "seconds_to_pending_approval": total,
        "milestones_s": marks,
        "venv_bytes": venv_bytes,
        "venv_du_sh": du,
        "goal_s": GOAL_S,
        "load_avg_1m": os.getloadavg()[0],
        "cpus": os.cpu_count(),
    }
    print()
    if not finished or total is None:
        print("\n".join(lines[-40:]))
        print(f"FAILED: no pending approval within {args.timeout:.0f}s")
    else:
        install = marks.get(MILESTONES[0][0], 0.0)
        print(
            f"make demo on a fresh clone, pip cache {'off (PIP_NO_CACHE_DIR=1)' if args.no_pip_cache else 'on'} "
            f"(load {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)"
        )
        print(f"{'install (venv + requirements-demo.txt)':44} {install:7.1f} s")
        print(f"{'Airflow up, DAG run to its gate':44} {total - install:7.1f} s")
        print(
            f"{'total: to the printed pending approval':44} {total:7.1f} s   goal < {GOAL_S:.0f} s "
            f"{'ok' if total < GOAL_S else 'MISSED'}"
        )
        print(f"{'install size (du -sh .venv)':44} {du:>7}   ({venv_bytes / 2**20:.0f} MiB)")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written {args.json}")
    if not args.keep:
        shutil.rmtree(clone.parent, ignore_errors=True)
    return 0 if finished else 1


if __name__ == "__main__":
    sys.exit(main())
