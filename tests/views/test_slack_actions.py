"""The Slack action endpoint: signature, staleness, approver rules and "already decided", through the real Flask app."""

from __future__ import annotations

import json
from typing import Any

import pytest
from views.client import SLACK_SECRET as SECRET
from views.client import slack_click, slack_payload, slack_post

from helpers import gate
from hitl.store import APPROVED, PENDING, Store


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
    return slack_click(
        flask_app, user, action, request_id, f"{fake_slack.url}/response/{request_id}", secret=secret, age=age
    )


def send(flask_app: Any, payload: dict[str, Any], *, secret: str = SECRET, age: int = 0) -> Any:
    """POST a payload to the action endpoint, signed as Slack signs it."""
    return slack_payload(flask_app, payload, secret=secret, age=age)


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


@pytest.mark.parametrize(
    "timestamp",
    ["", "abc", "¹²³", "²", "9" * 5000, "-5", "1.5e9", " 1700000000"],
    ids=["empty", "letters", "superscript-digits", "superscript-two", "5000-digits", "negative", "float", "space"],
)
def test_a_bad_timestamp_header_is_a_401_before_the_signature_check(
    flask_app: Any, ui_store: Store, slack_env: Any, timestamp: str
) -> None:
    req, _ = ui_store.record_request(gate())
    payload = {"type": "block_actions", "user": {"id": "U_ALICE"}, "actions": [{"action_id": "hitl_approve"}]}
    resp = slack_payload(flask_app, payload, timestamp=timestamp)
    assert resp.status_code == 401 and "request timestamp" in resp.get_json()["text"]
    assert ui_store.get(req.id).status == PENDING  # type: ignore[union-attr]


def test_a_non_ascii_signature_is_refused_not_a_crash(flask_app: Any, ui_store: Store, slack_env: Any) -> None:
    resp = slack_payload(flask_app, {"type": "block_actions"}, signature="v0=\u00e9\u00e9")
    assert resp.status_code == 401 and resp.get_json()["text"] == "invalid Slack signature"


def test_the_signature_covers_the_raw_bytes(flask_app: Any, ui_store: Store, slack_env: Any) -> None:
    """A body that is not UTF-8 is still checked byte for byte (and then refused as malformed)."""
    resp = slack_post(flask_app, b"payload=%FF%FE\xff")
    assert resp.status_code == 400 and "malformed Slack payload" in resp.get_json()["text"]


def test_a_reject_reason_over_the_limit_shows_in_the_modal(flask_app: Any, ui_store: Store, slack_env: Any) -> None:
    req, _ = ui_store.record_request(gate())
    click(flask_app, slack_env, "U_ALICE", "hitl_reject", req.id)
    [view_call] = slack_env.posted("/api/views.open")
    view = view_call["view"] if isinstance(view_call["view"], dict) else json.loads(view_call["view"])
    assert view["blocks"][0]["element"]["max_length"] == 2000
    values = {"hitl_reason": {"reason": {"type": "plain_text_input", "value": "x" * 2001}}}
    payload = {"type": "view_submission", "user": {"id": "U_ALICE"}, "view": {**view, "state": {"values": values}}}
    answer = send(flask_app, payload).get_json()
    assert answer["response_action"] == "errors" and "too long" in answer["errors"]["hitl_reason"]
    assert ui_store.get(req.id).status == PENDING  # type: ignore[union-attr]


def test_the_outcome_posted_back_to_the_channel_is_escaped(flask_app: Any, ui_store: Store, slack_env: Any) -> None:
    req, _ = ui_store.record_request(gate())
    click(flask_app, slack_env, "U_ALICE", "hitl_reject", req.id)
    [view_call] = slack_env.posted("/api/views.open")
    view = view_call["view"] if isinstance(view_call["view"], dict) else json.loads(view_call["view"])
    values = {"hitl_reason": {"reason": {"type": "plain_text_input", "value": "<!channel> <https://evil.example|x>"}}}
    payload = {"type": "view_submission", "user": {"id": "U_ALICE"}, "view": {**view, "state": {"values": values}}}
    assert send(flask_app, payload).get_json() == {"response_action": "clear"}
    [update] = slack_env.posted(f"/response/{req.id}")
    assert "<" not in update["text"] and "&lt;!channel&gt; &lt;https://evil.example|x&gt;" in update["text"]


def test_slack_down_while_looking_up_the_user_decides_nothing(
    flask_app: Any, ui_store: Store, slack_env: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_SLACK_BOT",
        json.dumps({"conn_type": "slack", "password": "xoxb-x", "extra": {"base_url": "http://127.0.0.1:9/api/"}}),
    )
    req, _ = ui_store.record_request(gate())
    resp = click(flask_app, slack_env, "U_ALICE", "hitl_approve", req.id)
    assert resp.status_code == 200 and "Could not look up your Slack account" in resp.get_json()["text"]
    assert ui_store.get(req.id).status == PENDING  # type: ignore[union-attr]
