"""A test run killed mid-way (SIGKILL: no finalizer runs) leaves no Airflow process behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hitl_devstack.reaper import group_alive

pytestmark = pytest.mark.e2e

OWNER = """
import sys, time
from pathlib import Path
from hitl_devstack import AirflowStack, free_port

stack = AirflowStack(home=Path(sys.argv[1]), port=free_port())
stack.setup()
stack.start(("triggerer", "dag-processor"))
print(" ".join(str(p.pid) for p in stack.procs.values()), stack.reaper.pid, flush=True)
time.sleep(600)  # killed long before
"""


def wait_for(condition, timeout: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return condition()


def test_killed_owner_leaves_no_airflow_process(tmp_path: Path) -> None:
    plugins = Path(__file__).resolve().parents[2] / "plugins"
    owner = subprocess.Popen(
        [sys.executable, "-c", OWNER, str(tmp_path / "home")],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(plugins)},
    )
    try:
        line = owner.stdout.readline()  # type: ignore[union-attr]
        *groups, reaper = [int(x) for x in line.split()]
        assert len(groups) == 2 and all(group_alive(g) for g in groups), line
        os.kill(owner.pid, signal.SIGKILL)  # as a CI time limit or `kill -9` of pytest would
        owner.wait(timeout=30)
        gone = wait_for(lambda: not any(group_alive(g) for g in groups), timeout=90)
        assert gone, f"process groups still alive after the owner died: {[g for g in groups if group_alive(g)]}"
        assert wait_for(lambda: not group_alive(reaper), timeout=30)  # the reaper exits after its work
    finally:
        if owner.poll() is None:
            owner.kill()
        for g in locals().get("groups", []):
            if group_alive(g):
                os.killpg(g, signal.SIGKILL)
