"""Run in its own process by test_fab_auth.py: the review UI under FabAuthManager (auth managers are process-wide)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
from typing import Any

from airflow.api_fastapi.app import create_auth_manager, get_auth_manager
from airflow.api_fastapi.auth.managers.models.resource_details import AccessView
from airflow.providers.fab.www.app import create_app
from views.client import SLACK_SECRET, slack_click

from helpers import FakeSlack, gate
from hitl.cli import main as cli
from hitl.fab_roles import sync_roles
from hitl.store import get_store
from hitl.views.run_facts import dag_access

create_auth_manager().init()
app = create_app(enable_plugins=True)
app.config["TESTING"] = True
sm = app.appbuilder.sm
results: dict[str, object] = {}

with app.app_context():  # set-up only: requests must not share this context's ``g``
    read = sm.get_permission("can_read", "Approvals")
    edit = sm.get_permission("can_edit", "Approvals")
    results["permissions_declared"] = bool(read and edit)
    # What `python -m hitl roles sync --dag outreach` does, through the same security manager
    results["first_sync"] = [c.line() for c in sync_roles(sm, dag_ids=["outreach"])]
    readers, deciders = sm.find_role("ApprovalReader"), sm.find_role("ApprovalDecider")
    sm.add_permission_to_role(readers, sm.create_permission("can_edit", "Variables"))  # an extra, by hand
    results["second_sync"] = [c.line() for c in sync_roles(sm, dag_ids=["outreach"])]
    results["third_sync"] = [c.line() for c in sync_roles(sm, dag_ids=["outreach"])]
    results["reader_permissions"] = sorted(f"{p.action.name} on {p.resource.name}" for p in readers.permissions)
    results["decider_permissions"] = sorted(f"{p.action.name} on {p.resource.name}" for p in deciders.permissions)
    tokens, users = {}, {}
    for name, role in (("rita", readers), ("dave", deciders), ("vera", sm.find_role("Viewer"))):
        user = sm.add_user(name, name, "Test", f"{name}@example.com", role, password="pw-" + name)
        users[name], tokens[name] = user, get_auth_manager().generate_jwt(user)
    manager = get_auth_manager()
    for name in ("rita", "dave"):
        results[f"{name}_plugins"] = manager.is_authorized_view(access_view=AccessView.PLUGINS, user=users[name])
        results[f"{name}_website"] = manager.is_authorized_view(access_view=AccessView.WEBSITE, user=users[name])
        results[f"{name}_outreach"] = dag_access("outreach", users[name])
        results[f"{name}_other_dag"] = dag_access("other", users[name])

req, _ = get_store().record_request(gate(approvers=[{"email": "rita@example.com"}, {"userId": "dave"}]))
# A request of a DAG neither rita nor dave may read (their roles read DAG:outreach only), listing dave anyway
other, _ = get_store().record_request(
    gate(
        dag_id="payroll",
        run_id="p1",
        output={**gate().output, "subject": "PAYROLL-SECRET"},
        approvers=[{"userId": "dave"}],
    )
)
results["other_id"] = other.id


def client(name: str) -> Any:
    c = app.test_client()
    c.set_cookie("_token", tokens[name])
    return c


for name in tokens:
    results[f"{name}_inbox"] = client(name).get("/hitl/").status_code
for name in ("rita", "dave"):
    c = client(name)
    page = c.get("/hitl/").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    resp = c.post(f"/hitl/request/{req.id}/decide", data={"action": "approve", "csrf_token": token})
    results[f"{name}_decide"] = resp.status_code
    said = re.search(r'id="error">([^<]*)<', resp.get_data(as_text=True))
    results[f"{name}_says"] = said.group(1) if said else ""
# Per DAG: every surface answers dave about DAG payroll as if the request did not exist
c = client("dave")
page = c.get("/hitl/?tab=all").get_data(as_text=True)
results["inbox_lists_other"] = "PAYROLL-SECRET" in page or f"/request/{other.id}" in page or "payroll" in page
results["badge"] = c.get("/hitl/badge").get_json()
results["review_other"] = c.get(f"/hitl/request/{other.id}").status_code
token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
results["decide_other"] = c.post(
    f"/hitl/request/{other.id}/decide", data={"action": "approve", "csrf_token": token}
).status_code
results["comment_other"] = c.post(
    f"/hitl/request/{other.id}/comment", data={"body": "hi", "csrf_token": token}
).status_code
api = app.test_client()
bearer = {"Authorization": f"Bearer {tokens['dave']}"}
results["api_list"] = sorted(r["dag_id"] for r in api.get("/hitl/api/requests?status=all", headers=bearer).get_json())
results["api_get_other"] = api.get(f"/hitl/api/requests/{other.id}", headers=bearer).status_code
results["api_comments_other"] = api.get(f"/hitl/api/requests/{other.id}/comments", headers=bearer).status_code
results["api_comment_other"] = api.post(
    f"/hitl/api/requests/{other.id}/comments", headers=bearer, json={"body": "hi"}
).status_code
results["api_decide_other"] = api.post(
    f"/hitl/api/requests/{other.id}/decision", headers=bearer, json={"action": "approve"}
).status_code
results["api_policy"] = api.get("/hitl/api/policy", headers=bearer).status_code
results["insights_lists_other"] = "payroll" in c.get("/hitl/insights").get_data(as_text=True)
bulk = c.post("/hitl/bulk", data={"action": "approve", "ids": [str(other.id)], "csrf_token": token})
results["bulk_other"] = "PAYROLL-SECRET" in bulk.get_data(as_text=True)

# The CLI under FAB: --user is a FAB user, asked of the auth manager like a page's user
for name, argv in (
    ("cli_rita", ["approvals", "reject", str(other.id), "--user", "rita", "--reason", "no"]),
    ("cli_nobody", ["approvals", "reject", str(other.id), "--user", "nobody", "--reason", "no"]),
    ("cli_dave_other", ["approvals", "reject", str(other.id), "--user", "dave", "--reason", "no"]),
):
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = cli(argv)
    results[name] = [code, err.getvalue().strip()]
# The CLI: a FAB user whose roles may not decide is refused on a request they may read and are listed on
listed, _ = get_store().record_request(gate(run_id="cli1", approvers=[{"userId": "rita"}]))
err = io.StringIO()
with contextlib.redirect_stderr(err):
    results["cli_rita_listed"] = [
        cli(["approvals", "approve", str(listed.id), "--user", "rita"]),
        err.getvalue().strip(),
    ]

# Slack: the account's email maps to the FAB user, who is asked of the auth manager as on the page
slack = FakeSlack()
slack.emails.update({"U_RITA": "rita@example.com", "U_DAVE": "dave@example.com"})
os.environ.update(
    {
        "AIRFLOW__HITL__SLACK_SIGNING_SECRET": SLACK_SECRET,
        "AIRFLOW__HITL__SLACK_CONN_ID": "slack_bot",
        "AIRFLOW_CONN_SLACK_BOT": json.dumps(
            {"conn_type": "slack", "password": "xoxb-test-token", "extra": {"base_url": f"{slack.url}/api/"}}
        ),
    }
)
by_slack, _ = get_store().record_request(gate(run_id="slack1", approvers=[{"userId": "rita"}, {"userId": "dave"}]))
# A deactivated decider (Airflow refuses her login): Slack and the CLI refuse her too
with app.app_context():
    dora = sm.add_user("dora", "dora", "Test", "dora@example.com", sm.find_role("ApprovalDecider"), password="pw-dora")
    dora.active = False
    sm.update_user(dora)
slack.emails["U_DORA"] = "dora@example.com"
gone, _ = get_store().record_request(gate(run_id="dora1", approvers=[{"userId": "dora"}]))
results["slack_dora"] = (slack_click(app, "U_DORA", "hitl_approve", gone.id, secret=SLACK_SECRET).get_json() or {}).get(
    "text", ""
)
err = io.StringIO()
with contextlib.redirect_stderr(err):
    results["cli_dora"] = [cli(["approvals", "approve", str(gone.id), "--user", "dora"]), err.getvalue().strip()]
results["dora_status"] = get_store().get(gone.id).status  # type: ignore[union-attr]
for name, user, number in (
    ("slack_rita", "U_RITA", by_slack.id),
    ("slack_dave_other", "U_DAVE", other.id),
    ("slack_dave", "U_DAVE", by_slack.id),
):
    said = slack_click(app, user, "hitl_approve", number, secret=SLACK_SECRET)
    results[name] = [said.status_code, (said.get_json() or {}).get("text", "")]
slack.server.close()
results["slack_status"] = get_store().get(by_slack.id).status  # type: ignore[union-attr]
results["other_status"] = get_store().get(other.id).status  # type: ignore[union-attr]
results["other_comments"] = len(get_store().comments(other.id))

# The user directory, written here (a process that may ask FAB) for task code to read
from hitl.airflow_users import sync_directory  # noqa: E402
from hitl.notify.recipients import emails_for  # noqa: E402
from hitl.store.directory import users as directory_users  # noqa: E402

results["directory_count"] = sync_directory(get_store())
results["directory"] = {
    u.username: [u.email, sorted(u.roles), u.all_dags, sorted(u.dags)]
    for u in directory_users(get_store().engine, names=["rita", "dave", "vera"])
}
results["emails_outreach"] = emails_for(
    [{"userId": "dave"}, {"role": "ApprovalReader"}], None, dag_id="outreach", store=get_store()
)
results["emails_payroll"] = emails_for(
    [{"userId": "dave"}, {"role": "ApprovalReader"}], None, dag_id="payroll", store=get_store()
)

final = get_store().get(req.id)
assert final is not None
results["status"], results["decided_by"] = final.status, final.decided_by
print("RESULT " + json.dumps(results))
