"""Run in its own process by test_fab_auth.py: the review UI under FabAuthManager (auth managers are process-wide)."""

from __future__ import annotations

import json
import re
from typing import Any

from airflow.api_fastapi.app import create_auth_manager, get_auth_manager
from airflow.api_fastapi.auth.managers.models.resource_details import AccessView
from airflow.providers.fab.www.app import create_app

from helpers import gate
from hitl.fab_roles import sync_roles
from hitl.store import get_store
from hitl.views.html import dag_access

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
final = get_store().get(req.id)
assert final is not None
results["status"], results["decided_by"] = final.status, final.decided_by
print("RESULT " + json.dumps(results))
