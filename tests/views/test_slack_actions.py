"""The Slack action endpoint: signature, staleness, approver rules and "already decided", through the real Flask app."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any
from urllib.parse import urlencode

import pytest

from helpers import gate
from hitl.store import APPROVED, PENDING, Store

SECRET = "slack-signing-secret"


@pytest.fixture
def slack_env(monkeypatch: pytest.MonkeyPatch, fake_slack: Any) -> Any:
    monkeypatch.setenv("AIRFLOW__HITL__SLACK_SIGNING_SECRET", SECRET)
    monkeypatch.setenv("AIRFLOW__HITL__SLACK_CONN_ID", "slack_bot")
    monkeypatch.setenv("AIRFLOW__HITL__USER_EMAILS", "alice:alice@example.com,bob:bob@example.com")
    fake_slack.emails.update(
        {"U_ALICE": "alice@example.com", "U_BOB": "bob@example.com", "U_NOBODY": "x@elsewhere.example"}
    )
    return fake_slack


def click(
    flask_app: Any, fake_slack: Any, user: str, action: str, request_id: int, *, secret: str = SECRET, age: int = 0
) -> Any:
    payload = {
        "type": "block_actions",
        "user": {"id": user},
        "trigger_id": "T-1",
        "actions": [{"action_id": action, "value": str(request_id)}],
        "response_url": f"{fake_slack.url}/response/{request_id}",
    }
    return send(flask_app, payload, secret=secret, age=age)


def send(flask_app: Any, payload: dict[str, Any], *, secret: str = SECRET, age: int = 0) -> Any:
    """POST a payload to the action endpoint, signed as Slack signs it."""
    body = urlencode({"payload": json.dumps(payload)})
    timestamp = str(int(time.time()) - age)
    signature = "v0=" + hmac.new(secret.encode(), f"v0:{timestamp}:{body}".encode(), hashlib.sha256).hexdigest()
    return flask_app.test_client().post(
        "/hitl/slack/actions",
        data=body,
        content_type="application/x-www-form-urlencoded",
        headers={"X-Slack-Request-Timestamp": timestamp, "X-Slack-Signature": signature},
    )


def test_signed_click_by_an_approver_decides_and_updates_the_message(
    flask_app: Any, ui_store: Store, slack_env: Any
) -> None:
    req, _ = ui_store.record_request(gate())
    resp = click(flask_app, slack_env, "U_ALICE", "hitl_approve", req.id)  # no CSRF token: Slack's signature instead
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert "approved by alice" in resp.get_json()["text"]
    final = ui_store.get(req.id)
    assert final is not None and final.status == APPROVED and final.decided_by == "alice"
    assert ui_store.history(req.id)[-1].detail["channel"] == "slack"
    [update] = slack_env.posted(f"/response/{req.id}")
    assert update["replace_original"] is True and "approved by alice" in update["text"]
    again = click(flask_app, slack_env, "U_ALICE", "hitl_approve", req.id)
    assert again.get_json()["text"].startswith("already decided by alice at ")


def test_reject_asks_why_in_a_modal_and_needs_an_answer(flask_app: Any, ui_store: Store, slack_env: Any) -> None:
    req, _ = ui_store.record_request(gate())
    opened = click(flask_app, slack_env, "U_ALICE", "hitl_reject", req.id)
    assert opened.status_code == 200 and opened.get_data(as_text=True) == ""
    [view_call] = slack_env.posted("/api/views.open")
    assert view_call["trigger_id"] == "T-1"
    view = view_call["view"] if isinstance(view_call["view"], dict) else json.loads(view_call["view"])
    assert ui_store.get(req.id).status == PENDING  # type: ignore[union-attr]

    def submit(reason: str) -> Any:
        values = {"hitl_reason": {"reason": {"type": "plain_text_input", "value": reason}}}
        payload = {"type": "view_submission", "user": {"id": "U_ALICE"}, "view": {**view, "state": {"values": values}}}
        return send(flask_app, payload)

    empty = submit("  ").get_json()
    assert empty["response_action"] == "errors" and "a reason is required" in empty["errors"]["hitl_reason"]
    assert submit("Wrong prospect").get_json() == {"response_action": "clear"}
    final = ui_store.get(req.id)
    assert final is not None and final.status == "rejected" and final.comment == "Wrong prospect"
    [update] = slack_env.posted(f"/response/{req.id}")
    assert "rejected by alice" in update["text"] and "Wrong prospect" in update["text"]


def test_wrong_signature_and_stale_timestamp_are_refused(flask_app: Any, ui_store: Store, slack_env: Any) -> None:
    req, _ = ui_store.record_request(gate())
    forged = click(flask_app, slack_env, "U_ALICE", "hitl_approve", req.id, secret="not-the-secret")
    assert forged.status_code == 401 and "invalid Slack signature" in forged.get_json()["text"]
    stale = click(flask_app, slack_env, "U_ALICE", "hitl_approve", req.id, age=600)
    assert stale.status_code == 401 and "stale" in stale.get_json()["text"]
    assert ui_store.get(req.id).status == PENDING  # type: ignore[union-attr]


def test_non_approver_and_unknown_user_cannot_decide(flask_app: Any, ui_store: Store, slack_env: Any) -> None:
    req, _ = ui_store.record_request(gate())
    bob = click(flask_app, slack_env, "U_BOB", "hitl_approve", req.id)
    assert "bob is not an approver" in bob.get_json()["text"]
    nobody = click(flask_app, slack_env, "U_NOBODY", "hitl_approve", req.id)
    assert "not linked to an Airflow user" in nobody.get_json()["text"]
    assert ui_store.get(req.id).status == PENDING  # type: ignore[union-attr]
