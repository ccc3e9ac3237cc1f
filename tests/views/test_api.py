"""The JSON API for scripts: Bearer tokens only, same decision service as every channel."""

from __future__ import annotations

from typing import Any

from views.client import bearer

from helpers import gate
from hitl.store import APPROVED, PENDING, Store


def test_list_get_and_decide_with_a_bearer_token(flask_app: Any, ui_store: Store) -> None:
    req, _ = ui_store.record_request(gate())
    ui_store.record_request(gate(run_id="ops", approvers=[{"role": "Op"}]))
    client = flask_app.test_client()
    mine = client.get("/hitl/api/requests?mine=1", headers=bearer("alice")).get_json()
    assert [r["id"] for r in mine] == [req.id] and mine[0]["output"]["subject"] == "Hello"
    assert len(client.get("/hitl/api/requests", headers=bearer("alice")).get_json()) == 2
    assert client.get(f"/hitl/api/requests/{req.id}", headers=bearer("bob")).get_json()["status"] == PENDING

    refused = client.post(f"/hitl/api/requests/{req.id}/decision", json={"action": "approve"}, headers=bearer("bob"))
    assert refused.status_code == 403 and refused.get_json()["code"] == "not_allowed"
    bad = client.post(
        f"/hitl/api/requests/{req.id}/decision",
        json={"action": "approve", "edited_output": {**req.output, "to": "nobody"}},
        headers=bearer("alice"),
    )
    assert bad.status_code == 400 and bad.get_json()["errors"] == {"to": "to: 'nobody' is not an email address"}
    ok = client.post(
        f"/hitl/api/requests/{req.id}/decision",
        json={"action": "approve", "edited_output": {**req.output, "subject": "Via API"}, "seen_hash": req.output_hash},
        headers=bearer("alice"),
    )
    assert ok.status_code == 200 and ok.get_json()["request"]["status"] == APPROVED
    again = client.post(
        f"/hitl/api/requests/{req.id}/decision", json={"action": "reject", "reason": "x"}, headers=bearer("alice")
    )
    assert again.status_code == 409 and again.get_json()["detail"].startswith("already decided by alice at ")
    assert ui_store.get(req.id).edited_output["subject"] == "Via API"  # type: ignore[union-attr]


def test_a_browser_cookie_cannot_use_the_csrf_free_api(flask_app: Any, ui_store: Store) -> None:
    req, _ = ui_store.record_request(gate())
    client = flask_app.test_client()
    client.set_cookie("_token", bearer("alice")["Authorization"].removeprefix("Bearer "))
    resp = client.post(f"/hitl/api/requests/{req.id}/decision", json={"action": "approve"})
    assert resp.status_code == 401
    assert ui_store.get(req.id).status == PENDING  # type: ignore[union-attr]
