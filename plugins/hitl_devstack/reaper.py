"""Stops the Airflow processes a test run (or the demo, or a benchmark) started, even when that run is killed.

``AirflowStack`` starts each component in a process group of its own. A normal stop sends those
groups SIGTERM; but a test run killed with SIGKILL, or a CI job cut at its time limit, never gets
to. So each stack also starts one small reaper process in a session of its own: it watches the
owner's PID and, once the owner is gone, terminates every group listed in the stack's group file
(SIGTERM, then SIGKILL after a grace period). Run as ``python -m hitl_devstack.reaper OWNER_PID FILE``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

GRACE_SECONDS = 15.0


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def groups(path: Path) -> list[int]:
    try:
        return [int(x) for x in path.read_text().split() if x.strip().isdigit()]
    except OSError:
        return []


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def terminate(pgids: list[int], grace: float = GRACE_SECONDS) -> None:
    """SIGTERM each process group, then SIGKILL what is still there after ``grace`` seconds."""
    for pgid in pgids:
        try:
            os.killpg(pgid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(group_alive(g) for g in pgids):
        time.sleep(0.2)
    for pgid in pgids:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def watch(owner: int, path: Path, interval: float = 0.5) -> None:
    while alive(owner) and path.exists():
        time.sleep(interval)
    if path.exists():  # the owner died without stopping its stack
        terminate(groups(path))
        path.unlink(missing_ok=True)


def start(owner: int, path: Path) -> subprocess.Popen[bytes]:
    """Start the reaper for ``owner``; removing ``path`` (a normal stop) lets it exit quietly."""
    return subprocess.Popen(
        [sys.executable, "-m", "hitl_devstack.reaper", str(owner), str(path)],
        start_new_session=True,  # not in the owner's group: a kill of that group must not take the reaper along
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )


if __name__ == "__main__":
    watch(int(sys.argv[1]), Path(sys.argv[2]))
