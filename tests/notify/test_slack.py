"""Slack messages against a local server speaking Slack's webhook and Web API shapes."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

from helpers import gate
from hitl.notify import notify_requested
from hitl.notify.links import check_token
from hitl.store import Store

pytestmark = pytest.mark.usefixtures("configured")


def buttons(message: dict[str, Any]) -> list[dict[str, Any]]:
    return next(b for b in message["blocks"] if b["type"] == "actions")["elements"]


def test_webhook_message_has_the_summary_and_signed_link_buttons(sqlite_store: Store, fake_slack: Any) -> None:
    req, _ = sqlite_store.record_request(gate(notify={"email": False, "slack": {"connId": "slack_hook"}}))
    assert notify_requested(req, sqlite_store)["slack"] == "sent"
    assert notify_requested(req, sqlite_store)["slack"] == "already"
    [message] = fake_slack.posted("/services/T000/B000/XXXX")
    assert "To owner@shop.example: Hello" in message["text"]
    assert "To owner@shop.example: Hello" in message["blocks"][0]["text"]["text"]
    approve, reject, review = buttons(message)
    assert approve["text"]["text"] == "Send email" and reject["text"]["text"] == "Reject"
    for button, action in ((approve, "approve"), (reject, "reject"), (review, "review")):
        query = parse_qs(urlparse(button["url"]).query)
        check_token(query["t"][0], req.id, action)


def test_bot_with_signing_secret_posts_interactive_buttons(
    sqlite_store: Store, fake_slack: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW__HITL__SLACK_SIGNING_SECRET", "shh")
    req, _ = sqlite_store.record_request(
        gate(notify={"email": False, "slack": {"connId": "slack_bot", "channel": "#sales"}})
    )
    assert notify_requested(req, sqlite_store)["slack"] == "sent"
    [message] = fake_slack.posted("/api/chat.postMessage")
    assert message["channel"] == "#sales"
    approve, reject, changes, _review = buttons(message)
    assert (approve["action_id"], approve["value"]) == ("hitl_approve", str(req.id))
    assert (reject["action_id"], reject["value"]) == ("hitl_reject", str(req.id))
    assert (changes["action_id"], changes["value"]) == ("hitl_request_changes", str(req.id))  # opens a modal
    notified = [e for e in sqlite_store.history(req.id) if e.event == "notified" and e.detail["channel"] == "slack"]
    assert notified[0].detail["ts"] == "1700000000.000100"


def test_slack_down_is_audited_and_the_gate_keeps_waiting(sqlite_store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_SLACK_DOWN", '{"conn_type": "slackwebhook", "password": "http://127.0.0.1:9/services/x"}'
    )
    req, _ = sqlite_store.record_request(gate(notify={"email": False, "slack": {"connId": "slack_down"}}))
    assert notify_requested(req, sqlite_store)["slack"].startswith("failed: ")
    assert sqlite_store.get(req.id).status == "pending"  # type: ignore[union-attr]
    assert [e.detail["channel"] for e in sqlite_store.history(req.id) if e.event == "notify_failed"] == ["slack"]


def test_every_interpolated_value_is_escaped_in_the_message(sqlite_store: Store, fake_slack: Any) -> None:
    """A scraped page title must not become a clickable link or an @channel ping (issue 9, item 7)."""
    from hitl.notify.slack import blocks_for

    hostile = "<!channel> Urgent: <https://evil.example/login|verify your account> & <@U123>"
    req, _ = sqlite_store.record_request(
        gate(
            output={"title": hostile, "url": "https://shop.example"},
            output_kind="research",
            summary=hostile,
            run_id="manual__<!here>",
            approve_label="<b>" + "x" * 200,
        )
    )
    for interactive in (False, True):
        text, blocks = blocks_for(req, "requested", interactive=interactive)
        section = blocks[0]["text"]["text"]
        for message in (text, section):
            assert "<" not in message and ">" not in message.replace("&gt;", "")
            assert (
                "&lt;!channel&gt; Urgent: &lt;https://evil.example/login|verify your account&gt; &amp; &lt;@U123&gt;"
                in message
            )
        assert "manual__&lt;!here&gt;" in section
        first = next(b for b in blocks if b["type"] == "actions")["elements"][0]
        assert first["text"]["type"] == "plain_text" and len(first["text"]["text"]) <= 75


def test_a_long_summary_fits_slack_limits_without_a_broken_entity(sqlite_store: Store) -> None:
    from hitl.notify.slack import blocks_for

    req, _ = sqlite_store.record_request(gate(summary="<" * 500, dag_id="d" * 200, run_id="&" * 250))
    _, blocks = blocks_for(req, "reminder", interactive=False)
    section = blocks[0]["text"]["text"]
    assert len(section) <= 3000 and not section.rstrip("…").endswith(("&", "&l", "&lt", "&am", "&amp"))
