"""The JSON API for scripts: Bearer tokens only, same decision service as every channel."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import pytest
from views.client import bearer

from helpers import gate
from hitl.decisions import NotAllowed, decide
from hitl.identity import Reviewer
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
    assert ui_store.get(req.id).edited_output["subject"] == "Via API"  # type: ignore[index, union-attr]


def test_a_browser_cookie_cannot_use_the_csrf_free_api(flask_app: Any, ui_store: Store) -> None:
    req, _ = ui_store.record_request(gate())
    client = flask_app.test_client()
    client.set_cookie("_token", bearer("alice")["Authorization"].removeprefix("Bearer "))
    resp = client.post(f"/hitl/api/requests/{req.id}/decision", json={"action": "approve"})
    assert resp.status_code == 401
    assert ui_store.get(req.id).status == PENDING  # type: ignore[union-attr]


def test_api_export_is_for_admins_and_streams_the_format_asked(flask_app: Any, ui_store: Store) -> None:
    draft, _ = ui_store.record_request(gate(dag_id="outreach"))
    edited = draft.id
    with pytest.raises(NotAllowed):
        decide(ui_store, edited, Reviewer("bob", roles=frozenset({"user"})), "approve", channel="ui")
    alice = Reviewer("alice", roles=frozenset({"user"}))
    decide(ui_store, edited, alice, "approve", edited_output={**draft.output, "subject": "Edited"}, channel="ui")
    rejected, _ = ui_store.record_request(gate(dag_id="billing", run_id="r2"))
    decide(ui_store, rejected.id, alice, "reject", comment="wrong", channel="api")
    client = flask_app.test_client()
    refused = client.get("/hitl/api/audit", headers=bearer("alice"))
    assert refused.status_code == 403 and refused.get_json()["code"] == "forbidden"
    got = client.get(f"/hitl/api/audit?request={edited}", headers=bearer("admin"))
    assert got.status_code == 200 and got.mimetype == "application/x-ndjson"
    assert [json.loads(line)["event"] for line in got.get_data(as_text=True).splitlines()] == [
        "requested",
        "refused",
        "edited",
    ]
    as_csv = client.get("/hitl/api/audit?workflow=billing&format=csv", headers=bearer("admin"))
    assert as_csv.mimetype == "text/csv" and "attachment" in as_csv.headers["Content-Disposition"]
    assert [r["event"] for r in csv.DictReader(io.StringIO(as_csv.get_data(as_text=True)))] == ["requested", "rejected"]
    bad = client.get("/hitl/api/audit?since=yesterday", headers=bearer("admin"))
    assert bad.status_code == 400 and "since must be an ISO 8601 time" in bad.get_json()["detail"]


def test_a_comment_naming_nobody_is_told_back_in_the_answer(flask_app: Any, ui_store: Store) -> None:
    req, _ = ui_store.record_request(gate())
    resp = flask_app.test_client().post(
        f"/hitl/api/requests/{req.id}/comments", json={"body": "@alicee please look"}, headers=bearer("bob")
    )
    assert resp.status_code == 201
    answer = resp.get_json()
    assert answer["comment"]["unknown_mentions"] == ["alicee"] and answer["comment"]["mentions"] == []
    assert answer["detail"].endswith("; no user @alicee: not notified (left as text)")
