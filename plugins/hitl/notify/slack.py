"""Slack, outbound: the request's summary with Approve / Reject buttons. It tells; it never decides.

An incoming-webhook connection (conn type ``slackwebhook``) posts link buttons to signed
review links. A bot-token connection (conn type ``slack``) with ``[hitl]
slack_signing_secret`` set posts real interactive buttons, whose clicks Slack sends to
``/pluginsv2/hitl/slack/actions``: an inbound channel, ``hitl.channels.slack``.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from hitl.settings import setting
from hitl.store import ApprovalRequest

log = logging.getLogger(__name__)
APPROVE, REJECT, CHANGES = "hitl_approve", "hitl_reject", "hitl_request_changes"  # the buttons' action ids
SECTION_CHARS = 3000  # Slack's limit on a section's text
BUTTON_CHARS = 75  # ... and on a button's label


def signing_secret() -> str:
    return setting("slack_signing_secret")


def escape(text: object) -> str:
    """Slack's escaping for mrkdwn text: ``& < >``, so no value can make a link, a mention or ``<!channel>``."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _fit(text: str, limit: int) -> str:
    """Escaped text cut to ``limit`` characters without splitting an ``&...;`` entity."""
    if len(text) <= limit:
        return text
    return re.sub(r"&[a-z]*$", "", text[: limit - 1]) + "…"


def blocks_for(req: ApprovalRequest, occasion: str, interactive: bool) -> tuple[str, list[dict[str, Any]]]:
    from hitl.notify import message_text

    review, approve, reject, summary = message_text(req)
    title = {
        "requested": "Approval needed",
        "escalated": "Escalated: approval needed",
        "policy_decided": f"{req.status.capitalize()} by policy",
    }.get(occasion, "Reminder: approval needed")
    # Every value is escaped: a step's output (a scraped page title, say) must not become a link or a ping.
    dag_id, step_id, run_id, summary = (escape(v) for v in (req.dag_id, req.step_id, req.run_id, summary))
    text = _fit(f"{title}: {dag_id} / {step_id}: {summary}", SECTION_CHARS)

    def button(action_id: str, label: str, *, style: str | None = None, url: str | None = None) -> dict[str, Any]:
        element: dict[str, Any] = {  # plain_text: Slack shows it as typed
            "type": "button",
            "action_id": action_id,
            "text": {"type": "plain_text", "text": label[:BUTTON_CHARS] or "Approve"},
        }
        if style:
            element["style"] = style
        if url:
            element["url"] = url
        else:
            element["value"] = str(req.id)
        return element

    if occasion == "policy_decided":
        buttons = []
    elif interactive:  # Slack calls our action endpoint
        buttons = [button(APPROVE, req.approve_label, style="primary"), button(REJECT, "Reject", style="danger")]
        if req.revisions_left > 0:  # asks for feedback in a modal, like Reject
            buttons.append(button(CHANGES, "Request changes"))
    else:  # signed links to the review page
        buttons = [
            button("hitl_approve_link", req.approve_label, style="primary", url=approve),
            button("hitl_reject_link", "Reject", style="danger", url=reject),
        ]
    buttons.append(button("hitl_review", "Review", url=review))
    blocks: list[dict[str, Any]] = [
        {
            "type": "section",
            "text": {
                "type": "mrkdwn",
                "text": _fit(f"*{title}*: `{dag_id}` / `{step_id}` (run {run_id})\n{summary}", SECTION_CHARS),
            },
        },
        {"type": "actions", "block_id": f"hitl_request_{req.id}", "elements": buttons},
    ]
    return text, blocks


def post_request(req: ApprovalRequest, occasion: str, cfg: dict[str, str]) -> dict[str, Any]:
    from airflow.sdk import BaseHook

    conn_id = cfg["connId"]
    conn = BaseHook.get_connection(conn_id)
    if conn.conn_type == "slackwebhook":
        from airflow.providers.slack.hooks.slack_webhook import SlackWebhookHook

        text, blocks = blocks_for(req, occasion, interactive=False)
        SlackWebhookHook(slack_webhook_conn_id=conn_id).send(text=text, blocks=blocks)
        return {"via": "webhook"}
    from airflow.providers.slack.hooks.slack import SlackHook

    text, blocks = blocks_for(req, occasion, interactive=bool(signing_secret()))
    channel = cfg.get("channel") or setting("slack_channel")
    sent = SlackHook(slack_conn_id=conn_id).client.chat_postMessage(channel=channel, text=text, blocks=blocks)
    return {"via": "bot", "slack_channel": sent.get("channel"), "ts": sent.get("ts")}
