"""A request is as private as its DAG, on a real Airflow under FabAuthManager with DAG-level roles.

Two hand-written DAGs, ``team_a`` and ``team_b``, each with a gate listing dave. ``python -m hitl roles sync --dag
team_a`` makes ApprovalReader (rita) and ApprovalDecider (dave) read DAG team_a only. Through every surface (the
inbox and its counts, the review page, the JSON API, comments, Slack's action endpoint and the CLI) neither sees
or does anything of team_b's request (404, as if it did not exist), and everything of team_a's; rita (no "can edit
on Approvals") is refused on the page's API, on Slack and on the CLI. No ``[hitl] user_emails``: dave's address
comes from FAB's users (the api-server's user directory), and only for the DAG he may read.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from helpers import FakeSlack, wait_for
from hitl_devstack import AirflowStack, free_port

pytestmark = pytest.mark.e2e
FAB = "airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager"
SLACK_SECRET = "e2e-slack-signing-secret"
DAG = """
from datetime import datetime

from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG

from hitl import ApprovalSensor


def draft():
    return {{"to": "client@example.com", "subject": "{subject}", "body": "Please find attached."}}


with DAG("{dag_id}", schedule=None, start_date=datetime(2024, 1, 1), catchup=False):
    PythonOperator(task_id="draft", python_callable=draft) >> ApprovalSensor(
        task_id="draft__approval", step_id="draft", approvers=[{{"userId": "dave"}}], poll_interval=0.5
    )
"""


def _call(stack: AirflowStack, method: str, path: str, user: str, body: Any = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Authorization": f"Bearer {stack.token(user)}", "Content-Type": "application/json"}
    req = urllib.request.Request(f"{stack.base_url}{path}", data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            text = resp.read().decode()
            return resp.status, json.loads(text) if "json" in resp.headers.get("Content-Type", "") else text
    except urllib.error.HTTPError as exc:
        text = exc.read().decode(errors="replace")
        return exc.code, json.loads(text) if "json" in (exc.headers.get("Content-Type") or "") else text


def _page(stack: AirflowStack, path: str, user: str) -> tuple[int, str]:
    req = urllib.request.Request(f"{stack.base_url}{path}", headers={"Cookie": f"_token={stack.token(user)}"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def _slack(stack: AirflowStack, slack_user: str, request_id: int) -> str:
    payload = {
        "type": "block_actions",
        "user": {"id": slack_user},
        "trigger_id": "T-1",
        "actions": [{"action_id": "hitl_approve", "value": str(request_id)}],
    }
    raw = urllib.parse.urlencode({"payload": json.dumps(payload)}).encode()
    stamp = str(int(time.time()))
    mac = hmac.new(SLACK_SECRET.encode(), b"v0:" + stamp.encode() + b":" + raw, hashlib.sha256).hexdigest()
    req = urllib.request.Request(
        f"{stack.base_url}/pluginsv2/hitl/slack/actions",
        data=raw,
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Slack-Request-Timestamp": stamp,
            "X-Slack-Signature": f"v0={mac}",
        },
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        return str(json.loads(resp.read())["text"])


def test_dag_level_roles_bound_every_surface(tmp_path: Path, smtp_server: Any, monkeypatch: Any) -> None:
    slack = FakeSlack()
    slack.emails.update({"U_DAVE": "dave@example.com", "U_RITA": "rita@example.com"})
    home, dags = tmp_path / "airflow", tmp_path / "airflow" / "dags"
    dags.mkdir(parents=True)
    for dag_id, subject in (("team_a", "A-quote"), ("team_b", "B-SECRET-quote")):
        (dags / f"{dag_id}.py").write_text(DAG.format(dag_id=dag_id, subject=subject))
    monkeypatch.delenv("AIRFLOW__HITL__USER_EMAILS", raising=False)
    stack = AirflowStack(
        home=home,
        port=free_port(),
        dags_folder=dags,
        specs_folder=home / "workflow_specs",
        users={"admin": "Admin", "dave": "ApprovalDecider", "rita": "ApprovalReader"},
        extra_env={
            "AIRFLOW__CORE__AUTH_MANAGER": FAB,
            "AIRFLOW__FAB__SESSION_BACKEND": "securecookie",
            "AIRFLOW__HITL__POLL_INTERVAL": "0.5",
            "AIRFLOW__HITL__DIRECTORY_REFRESH": "300",
            "AIRFLOW__HITL__USER_EMAILS": "",
            "AIRFLOW__HITL__SLACK_SIGNING_SECRET": SLACK_SECRET,
            "AIRFLOW__HITL__SLACK_CONN_ID": "slack_bot",
            "AIRFLOW_CONN_SLACK_BOT": json.dumps(
                {"conn_type": "slack", "password": "xoxb-test", "extra": {"base_url": f"{slack.url}/api/"}}
            ),
        },
    )
    stack.setup()
    synced = stack.run("python", "-m", "hitl", "roles", "sync", "--dag", "team_a")
    assert "ApprovalDecider: created" in synced.stdout, synced.stdout + synced.stderr
    for user, role in stack.users.items():
        stack.run(
            "airflow", "users", "create", "--role", role, "--username", user, "--email", f"{user}@example.com",
            "--firstname", user.title(), "--lastname", "Example", "--password", stack.passwords()[user],
        )  # fmt: skip
    stack.start()
    try:
        stack.wait_healthy()
        # The api-server syncs FAB's users into the store when it starts (no users sync command is run here)
        from hitl.store import Store
        from hitl.store.directory import last_synced

        store = Store(f"sqlite:///{stack.home / 'hitl.db'}")
        wait_for("the api-server's user directory sync", lambda: last_synced(store.engine))
        for dag_id in ("team_a", "team_b"):
            stack.wait_for_dag(dag_id)
            stack.api("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})
        runs = {dag_id: stack.trigger(dag_id) for dag_id in ("team_a", "team_b")}
        for dag_id, run_id in runs.items():
            wait_for(
                f"{dag_id}'s gate parked",
                lambda d=dag_id, r=run_id: stack.task_state(d, r, "draft__approval") == "deferred",
            )
        listed = _call(stack, "GET", "/pluginsv2/hitl/api/requests?status=all", "admin")[1]
        ids = {r["dag_id"]: r["id"] for r in listed}
        a, b = ids["team_a"], ids["team_b"]

        # Notifications: dave's address from FAB (no user_emails), and only for the DAG he may read
        wait_for("team_a's email to dave", lambda: [m for m in smtp_server.messages if "team_a" in str(m["Subject"])])
        assert [m["To"] for m in smtp_server.messages if "team_a" in str(m["Subject"])] == ["dave@example.com"]
        assert not [m for m in smtp_server.messages if "team_b" in str(m["Subject"])]

        for user in ("dave", "rita"):
            status, inbox = _page(stack, "/pluginsv2/hitl/?tab=all", user)
            assert status == 200 and f'data-request-id="{a}"' in inbox, user
            assert f'data-request-id="{b}"' not in inbox and "team_b" not in inbox, user  # nor in the workflow filter
            assert _page(stack, f"/pluginsv2/hitl/request/{b}", user)[0] == 404
            status, page = _page(stack, f"/pluginsv2/hitl/request/{a}", user)
            assert status == 200 and "A-quote" in page
            assert [r["dag_id"] for r in _call(stack, "GET", "/pluginsv2/hitl/api/requests?status=all", user)[1]] == [
                "team_a"
            ]
            assert _call(stack, "GET", f"/pluginsv2/hitl/api/requests/{b}", user)[0] == 404
            assert _call(stack, "GET", f"/pluginsv2/hitl/api/requests/{b}/comments", user)[0] == 404
            assert _call(stack, "POST", f"/pluginsv2/hitl/api/requests/{b}/comments", user, {"body": "hi"})[0] == 404
            assert _call(stack, "POST", f"/pluginsv2/hitl/api/requests/{a}/comments", user, {"body": "hi"})[0] == 201
        badge = _page(stack, "/pluginsv2/hitl/badge", "dave")[1]
        assert json.loads(badge) == {"attention": 1}  # team_a's only; team_b's lists dave but is not his to see
        said = _call(stack, "POST", f"/pluginsv2/hitl/api/requests/{b}/decision", "dave", {"action": "approve"})
        assert said[0] == 404 and said[1]["detail"] == f"no approval request {b}"
        said = _call(stack, "POST", f"/pluginsv2/hitl/api/requests/{a}/decision", "rita", {"action": "approve"})
        assert said[0] == 403  # the page's API: no "can edit on Approvals"

        # Slack and the CLI apply the same check as the page
        assert "rita may not decide approvals" in _slack(stack, "U_RITA", a)
        assert f"no approval request {b}" in _slack(stack, "U_DAVE", b)
        cli = stack.run("python", "-m", "hitl", "approvals", "approve", str(a), "--user", "rita", check=False)
        assert cli.returncode == 1 and "rita may not decide approvals" in cli.stderr, cli.stderr
        cli = stack.run("python", "-m", "hitl", "approvals", "approve", str(b), "--user", "dave", check=False)
        assert cli.returncode == 1 and cli.stderr.strip() == f"no approval request {b}", cli.stderr

        # dave decides team_a through Slack; team_b's gate still waits, untouched
        assert "approved by dave" in _slack(stack, "U_DAVE", a)
        assert stack.wait_run("team_a", runs["team_a"]) == "success"
        assert stack.task_state("team_b", runs["team_b"], "draft__approval") == "deferred"
        b_now = _call(stack, "GET", f"/pluginsv2/hitl/api/requests/{b}", "admin")[1]
        assert b_now["status"] == "pending"
        assert _call(stack, "GET", f"/pluginsv2/hitl/api/requests/{b}/comments", "admin")[1] == []
    finally:
        stack.stop()
        slack.server.close()
