"""``python -m hitl monitor install``: the monitor DAG for a deployment without specs, and no DAG id twice."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from hitl.factory import MONITOR_DAG_ID, build_dags
from hitl.monitor_install import CONTENT, MONITOR_FILE

REPO = Path(__file__).resolve().parents[1]


def _cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hitl", "monitor", "install", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        cwd=REPO,
    )


def test_install_writes_the_dag_file_into_the_dags_folder_once(tmp_path: Path) -> None:
    dags = tmp_path / "dags"
    dags.mkdir()
    out = _cli(AIRFLOW__CORE__DAGS_FOLDER=str(dags))
    assert out.returncode == 0 and out.stdout.startswith(f"{dags / MONITOR_FILE}: written"), out.stderr
    assert (dags / MONITOR_FILE).read_text() == CONTENT
    again = _cli("--dags-folder", str(dags))
    assert again.returncode == 0 and again.stdout.startswith(f"{dags / MONITOR_FILE}: unchanged")


def test_install_leaves_a_foreign_file_alone_unless_forced(tmp_path: Path) -> None:
    (tmp_path / MONITOR_FILE).write_text("# someone else's DAG\n")
    out = _cli("--dags-folder", str(tmp_path))
    assert out.returncode == 1 and "was not written by this command: move it, or pass --force" in out.stderr
    assert (tmp_path / MONITOR_FILE).read_text() == "# someone else's DAG\n"
    forced = _cli("--dags-folder", str(tmp_path), "--force")
    assert forced.returncode == 0 and "replaced" in forced.stdout and (tmp_path / MONITOR_FILE).read_text() == CONTENT
    missing = _cli("--dags-folder", str(tmp_path / "nope"))
    assert missing.returncode == 1 and "no such folder" in missing.stderr


def test_the_installed_file_builds_the_monitor_alone(tmp_path: Path) -> None:
    (tmp_path / MONITOR_FILE).write_text(CONTENT)
    scope: dict[str, object] = {"__file__": str(tmp_path / MONITOR_FILE)}
    exec(compile(CONTENT, str(tmp_path / MONITOR_FILE), "exec"), scope)  # as the dag-processor imports it
    dag = scope["hitl_monitor"]
    assert getattr(dag, "dag_id", None) == MONITOR_DAG_ID


def test_a_dag_file_without_specs_builds_the_monitor_and_no_broken_dag(tmp_path: Path) -> None:
    scope: dict[str, object] = {"__file__": str(tmp_path / "dags" / "hitl_workflows.py")}
    dags = build_dags(tmp_path / "no_such_specs", scope)
    assert list(dags) == [MONITOR_DAG_ID]  # no hitl_invalid__* stand-in for a folder that is not there


def test_the_spec_dag_file_leaves_the_monitor_to_the_installed_file(tmp_path: Path) -> None:
    (tmp_path / MONITOR_FILE).write_text(CONTENT)
    scope: dict[str, object] = {"__file__": str(tmp_path / "hitl_workflows.py")}
    dags = build_dags(REPO / "workflow_specs", scope)
    assert MONITOR_DAG_ID not in dags and dags  # one DAG id, one file: Airflow refuses duplicates
