"""``python -m hitl monitor install``: the ``hitl_monitor`` DAG for a deployment without a specs folder.

A team that writes its own DAGs with ``hitl.ApprovalSensor`` has no ``dags/hitl_workflows.py`` (that file is
the spec factory's, and is not in the wheel), so nothing builds the monitor, and ``remind_after``,
``escalate_after`` and ``expire_after`` would silently do nothing. This writes a DAG file of three lines into
the DAGs folder (``[core] dags_folder``, or ``--dags-folder``) that builds only the monitor. Running it again
is harmless; a different file of the same name is left alone unless ``--force``.

If ``hitl_workflows.py`` sits in the same folder, it sees this file and leaves the monitor to it (one DAG id,
one file: Airflow refuses a DAG id defined twice).
"""

from __future__ import annotations

from pathlib import Path

MONITOR_FILE = "hitl_monitor.py"
MARKER = "# written by `python -m hitl monitor install`"
CONTENT = f'''"""Airflow DAG file: the hitl_monitor DAG (reminders, escalation, expiry of approval requests)."""

{MARKER}; rewrite it with the same command after an upgrade.
from hitl.factory import build_monitor_dag

hitl_monitor = build_monitor_dag()
'''


class InstallRefused(Exception):
    pass


def is_monitor_file(path: Path) -> bool:
    try:
        with open(path, encoding="utf-8") as f:
            return MARKER in f.read(4096)
    except (OSError, UnicodeDecodeError):
        return False


def dags_folder() -> Path:
    """``[core] dags_folder`` as Airflow reads it (default ``$AIRFLOW_HOME/dags``)."""
    from hitl.config import airflow_home, conf_get

    return Path(conf_get("core", "dags_folder", str(airflow_home() / "dags"))).expanduser()


def install(folder: Path | None = None, *, force: bool = False) -> tuple[Path, str]:
    """Write the monitor's DAG file; (its path, "written" | "unchanged" | "replaced")."""
    folder = folder or dags_folder()
    if not folder.is_dir():
        raise InstallRefused(f"{folder}: no such folder (the DAGs folder, [core] dags_folder; or pass --dags-folder)")
    path = folder / MONITOR_FILE
    if path.exists():
        current = path.read_text(encoding="utf-8", errors="replace")
        if current == CONTENT:
            return path, "unchanged"
        if not is_monitor_file(path) and not force:
            raise InstallRefused(f"{path} exists and was not written by this command: move it, or pass --force")
        how = "replaced"
    else:
        how = "written"
    tmp = path.with_name(f".{MONITOR_FILE}.tmp")
    tmp.write_text(CONTENT, encoding="utf-8")
    tmp.replace(path)  # the dag-processor never reads half a file
    return path, how
