"""docs/operators.md, followed literally by a new operator: FabAuthManager, the role command, a hand-written DAG.

What a team that only writes its own DAGs does, in the order the document gives: Airflow's and the store's
migrations, ``python -m hitl roles sync``, Airflow's own ``airflow users create`` with the role it made,
``python -m hitl monitor install`` (no specs folder, no spec DAG file), and a DAG of their own with an
``ApprovalSensor`` that has ``remind_after``. Then, on a real Airflow (api-server, scheduler, dag-processor,
triggerer): no broken DAG, the reviewer sees the Approvals entry (Airflow's plugin list and the inbox), and
the monitor's daily run reminds the approver by email while the gate waits.

`make wheel-e2e` runs it from the built wheel in a fresh venv (HITL_TEST_FROM_INSTALL=1); it takes a minute or
two, so the default `make test` leaves it out. HITL_TEST_OPERATORS_INSTALL=1 runs it from the checkout.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from helpers import wait_for
from hitl_devstack import AirflowStack, free_port

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        os.environ.get("HITL_TEST_FROM_INSTALL") != "1" and os.environ.get("HITL_TEST_OPERATORS_INSTALL") != "1",
        reason="make wheel-e2e runs it (from the installed wheel); HITL_TEST_OPERATORS_INSTALL=1 from the checkout",
    ),
]
FAB = "airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager"
DAG_ID = "invoice_by_hand"
HAND_WRITTEN_DAG = """
from datetime import datetime

from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG

from hitl import ApprovalSensor


def draft():
    return {"to": "client@example.com", "subject": "Invoice 42", "body": "Please find attached."}


with DAG("invoice_by_hand", schedule=None, start_date=datetime(2024, 1, 1), catchup=False):
    PythonOperator(task_id="draft", python_callable=draft) >> ApprovalSensor(
        task_id="draft__approval",
        step_id="draft",
        approvers=[{"email": "dave@example.com"}],
        remind_after=3,
        poll_interval=0.5,
    )
"""


def _get(stack: AirflowStack, path: str, user: str) -> tuple[int, str]:
    req = urllib.request.Request(f"{stack.base_url}{path}", headers={"Cookie": f"_token={stack.token(user)}"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def test_an_install_from_the_operators_guide_works(tmp_path: Path, smtp_server: Any) -> None:
    home, dags = tmp_path / "airflow", tmp_path / "airflow" / "dags"
    dags.mkdir(parents=True)
    stack = AirflowStack(
        home=home,
        port=free_port(),
        dags_folder=dags,
        specs_folder=home / "workflow_specs",  # never created: this team has no specs
        users={"admin": "Admin", "dave": "ApprovalDecider", "rita": "ApprovalReader", "vera": "Viewer"},
        extra_env={
            "AIRFLOW__CORE__AUTH_MANAGER": FAB,
            "AIRFLOW__FAB__SESSION_BACKEND": "securecookie",
            "AIRFLOW__HITL__MONITOR_INTERVAL_SECONDS": "2",
            "AIRFLOW__HITL__POLL_INTERVAL": "0.5",
        },
    )
    # Installing, steps 3-4: the store and both migrations
    stack.setup()
    # Step 6: the reviewer roles, then Airflow's own users command with them
    synced = stack.run("python", "-m", "hitl", "roles", "sync", "--dag", DAG_ID)
    assert "ApprovalDecider: created, 8 permissions" in synced.stdout, synced.stdout + synced.stderr
    for user, role in stack.users.items():
        stack.run(
            "airflow", "users", "create", "--role", role, "--username", user, "--email", f"{user}@example.com",
            "--firstname", user.title(), "--lastname", "Example", "--password", stack.passwords()[user],
        )  # fmt: skip
    # Step 2, without specs: the monitor's DAG file, and the team's own DAG
    installed = stack.run("python", "-m", "hitl", "monitor", "install")
    assert installed.stdout.startswith(f"{dags / 'hitl_monitor.py'}: written"), installed.stdout + installed.stderr
    (dags / f"{DAG_ID}.py").write_text(HAND_WRITTEN_DAG)

    stack.start()
    try:
        stack.wait_healthy()
        stack.wait_for_dag(DAG_ID)
        stack.wait_for_dag("hitl_monitor")
        errors = stack.api("GET", "/api/v2/importErrors")
        assert errors["total_entries"] == 0, errors  # no broken DAG, no stand-in for a missing specs folder

        # The Approvals entry: Airflow lists the plugin's nav item for the reviewer, and the inbox opens
        for user in ("dave", "rita"):
            status, body = _get(stack, "/api/v2/plugins", user)
            assert status == 200 and '"name":"Approvals"' in body.replace(" ", ""), (user, status, body[:500])
            status, body = _get(stack, "/pluginsv2/hitl/", user)
            assert status == 200 and "Approvals" in body, (user, status, body[:500])
        assert _get(stack, "/pluginsv2/hitl/", "vera")[0] == 403  # FAB's Viewer: no Approvals permission

        run_id = stack.trigger(DAG_ID)
        wait_for("the gate parked", lambda: stack.task_state(DAG_ID, run_id, "draft__approval") == "deferred")
        reminder = wait_for(
            "a reminder from the monitor",
            lambda: [m for m in smtp_server.messages if str(m["Subject"]).startswith("[Reminder")],
        )[0]
        assert reminder["To"] == "dave@example.com" and f"{DAG_ID} / draft" in str(reminder["Subject"])
        runs = stack.api("GET", "/api/v2/dags/hitl_monitor/dagRuns")
        assert runs["total_entries"] == 1, runs  # one run a day, sweeping deferred in between (was one per sweep)
        assert runs["dag_runs"][0]["run_type"] == "scheduled" and runs["dag_runs"][0]["state"] == "running"
    finally:
        stack.stop()
