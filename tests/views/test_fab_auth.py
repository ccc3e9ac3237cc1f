"""The review UI under FabAuthManager: FAB permissions "can read on Approvals" and "can edit on Approvals".

Auth managers are process-wide, so this runs tests/views/fab_auth_probe.py in a process of its own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


def test_roles_sync_needs_fab_auth_manager() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__CORE__AUTH")}
    env["AIRFLOW__CORE__AUTH_MANAGER"] = (
        "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
    )
    out = subprocess.run([sys.executable, "-m", "hitl", "roles", "sync"], env=env, capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stderr.startswith("[core] auth_manager is airflow.api_fastapi.auth.managers.simple."), out.stderr


def test_fab_roles_gate_reading_and_deciding(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__")}
    env.update(
        {
            "AIRFLOW_HOME": str(tmp_path),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": str(tmp_path / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
            "AIRFLOW__CORE__AUTH_MANAGER": "airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager",
            "AIRFLOW__API_AUTH__JWT_SECRET": "fab-test-jwt-secret-0123456789abcdef",
            "AIRFLOW__API__SECRET_KEY": "fab-test-secret",
            "AIRFLOW__FAB__SESSION_BACKEND": "securecookie",  # as the README says for FAB
            "AIRFLOW__HITL__STORE_URL": f"sqlite:///{tmp_path / 'hitl.db'}",
            "PYTHONPATH": os.pathsep.join([str(REPO / "plugins"), str(REPO / "tests")]),
        }
    )
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=env, check=True, capture_output=True)
    subprocess.run([sys.executable, "-m", "hitl", "db", "upgrade"], env=env, check=True, capture_output=True)
    synced = subprocess.run(
        [sys.executable, "-m", "hitl", "roles", "sync", "--dag", "outreach"], env=env, capture_output=True, text=True
    )
    assert synced.returncode == 0, synced.stderr[-2000:]
    assert synced.stdout.splitlines() == [
        "ApprovalReader: created, 7 permissions; added can read on Approvals, can read on DAG Runs, can read on"
        " DAG:outreach, can read on Plugins, can read on Task Instances, can read on Website, can read on XComs",
        "ApprovalDecider: created, 8 permissions; added can edit on Approvals, can read on Approvals, can read on"
        " DAG Runs, can read on DAG:outreach, can read on Plugins, can read on Task Instances, can read on Website,"
        " can read on XComs",
    ]
    assert synced.stderr.strip() == "note: no DAG outreach in Airflow's database yet; its permission is granted anyway"
    out = subprocess.run([sys.executable, str(HERE / "fab_auth_probe.py")], env=env, capture_output=True, text=True)
    lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, out.stdout[-3000:] + out.stderr[-3000:]
    result = json.loads(lines[-1].removeprefix("RESULT "))
    assert result["permissions_declared"] is True
    assert result["first_sync"] == [
        "ApprovalReader: unchanged, 7 permissions",
        "ApprovalDecider: unchanged, 8 permissions",
    ]
    assert result["second_sync"] == [
        "ApprovalReader: updated, 7 permissions; removed can edit on Variables",
        "ApprovalDecider: unchanged, 8 permissions",
    ]
    assert result["third_sync"] == [
        "ApprovalReader: unchanged, 7 permissions",
        "ApprovalDecider: unchanged, 8 permissions",
    ]
    assert set(result["decider_permissions"]) - set(result["reader_permissions"]) == {"can_edit on Approvals"}
    for name in ("rita", "dave"):  # Airflow's shell and its Plugins entry (the nav's /plugin/approvals) open for both
        assert result[f"{name}_plugins"] is True and result[f"{name}_website"] is True
        assert result[f"{name}_outreach"] == {"outputs": True, "runs": True}  # --dag outreach
        assert result[f"{name}_other_dag"] == {"outputs": False, "runs": False}
    assert result["rita_inbox"] == 200 and result["dave_inbox"] == 200
    assert result["vera_inbox"] == 403  # FAB's Viewer role lacks "can read on Approvals"
    assert result["rita_decide"] == 403, result["rita_says"]  # listed by email, but ApprovalReader may only read
    assert "rita may not decide approvals (Airflow permission &#39;can edit on Approvals&#39;)" in result["rita_says"]
    assert result["dave_decide"] == 302
    assert (result["status"], result["decided_by"]) == ("approved", "dave")
    # DAG-level roles: DAG payroll's request does not exist for dave (he reads DAG:outreach only), on every surface
    other = result["other_id"]
    assert result["inbox_lists_other"] is False and result["insights_lists_other"] is False
    assert result["badge"] == {"attention": 0}  # outreach's request is decided; payroll's is not counted
    assert result["review_other"] == 404 and result["decide_other"] == 404 and result["comment_other"] == 404
    assert result["api_list"] == ["outreach"]
    assert (result["api_get_other"], result["api_comments_other"], result["api_comment_other"]) == (404, 404, 404)
    assert result["api_decide_other"] == 404 and result["api_policy"] == 200
    assert result["bulk_other"] is False
    assert result["cli_rita"][0] == 1 and result["cli_rita"][1] == f"no approval request {other}"
    assert result["cli_nobody"][0] == 1 and "no Airflow user named 'nobody'" in result["cli_nobody"][1]
    assert result["cli_dave_other"] == [1, f"no approval request {other}"]
    assert result["other_status"] == "pending" and result["other_comments"] == 0
    assert result["cli_rita_listed"][0] == 1
    assert "rita may not decide approvals (Airflow permission 'can edit on Approvals')" in result["cli_rita_listed"][1]
    # Slack applies the same check as the page: rita (no Approvals edit) is refused; payroll's request is nobody's
    assert result["slack_rita"][0] == 200 and "rita may not decide approvals" in result["slack_rita"][1]
    assert result["slack_dave_other"][0] == 200 and f"no approval request {other}" in result["slack_dave_other"][1]
    assert "approved by dave" in result["slack_dave"][1] and result["slack_status"] == "approved"
    # The directory: FAB's users as task code reads them (no [hitl] user_emails): DAGs granted by name count
    # before the DAG is parsed; FAB's Viewer reads every DAG
    assert result["directory_count"] == 3
    assert result["directory"] == {
        "rita": ["rita@example.com", ["approvalreader"], False, ["outreach"]],
        "dave": ["dave@example.com", ["approvaldecider"], False, ["outreach"]],
        "vera": ["vera@example.com", ["viewer"], True, ["outreach", "payroll"]],
    }
    assert result["emails_outreach"] == ["dave@example.com", "rita@example.com"]
    assert result["emails_payroll"] == []  # listed, but neither may read DAG payroll: nobody is sent it
    # A deactivated FAB user is nobody on Slack and the CLI (Airflow refuses her login)
    assert "not linked to an Airflow user" in result["slack_dora"]
    assert result["cli_dora"][0] == 1 and "no Airflow user named 'dora'" in result["cli_dora"][1]
    assert result["dora_status"] == "pending"
