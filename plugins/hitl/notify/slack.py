"""Slack: the request's summary with Approve / Reject, and the endpoint Slack's buttons call.

An incoming-webhook connection (conn type ``slackwebhook``) posts link buttons to signed
review links. A bot-token connection (conn type ``slack``) with ``[hitl]
slack_signing_secret`` set posts real interactive buttons: Slack calls
``/pluginsv2/hitl/slack/actions``, which checks Slack's request signature (slack_sdk),
maps the Slack user to an Airflow user by email, decides through the decision service
(approver rules apply) and rewrites the message with the outcome.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.request
from typing import Any

from hitl.config import conf_get
from hitl.store import ApprovalRequest

log = logging.getLogger(__name__)
APPROVE, REJECT = "hitl_approve", "hitl_reject"
MAX_AGE_SECONDS = 300  # Slack's own guidance for replayed requests


def signing_secret() -> str:
    return conf_get("hitl", "slack_signing_secret", "")


def blocks_for(req: ApprovalRequest, occasion: str, interactive: bool) -> tuple[str, list[dict[str, Any]]]:
    from hitl.notify import message_text

    review, approve, reject, summary = message_text(req)
    title = {"requested": "Approval needed", "escalated": "Escalated: approval needed"}.get(
        occasion, "Reminder: approval needed"
    )
    text = f"{title}: {req.dag_id} / {req.step_id}: {summary}"

    def button(action_id: str, label: str, *, style: str | None = None, url: str | None = None) -> dict[str, Any]:
        element: dict[str, Any] = {
            "type": "button",
            "action_id": action_id,
            "text": {"type": "plain_text", "text": label},
        }
        if style:
            element["style"] = style
        if url:
            element["url"] = url
        else:
            element["value"] = str(req.id)
        return element

    if interactive:  # Slack calls our action endpoint
        buttons = [button(APPROVE, req.approve_label, style="primary"), button(REJECT, "Reject", style="danger")]
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
                "text": f"*{title}*: `{req.dag_id}` / `{req.step_id}` (run {req.run_id})\n{summary}",
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
    channel = cfg.get("channel") or conf_get("hitl", "slack_channel", "")
    sent = SlackHook(slack_conn_id=conn_id).client.chat_postMessage(channel=channel, text=text, blocks=blocks)
    return {"via": "bot", "slack_channel": sent.get("channel"), "ts": sent.get("ts")}


# -- the action endpoint's logic (the Flask route lives in hitl.views.approvals) ----------------
class SlackRefusal(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def verify(body: str, headers: Any, now: float | None = None) -> None:
    from slack_sdk.signature import Clock, SignatureVerifier

    class FixedClock(Clock):
        def now(self) -> float:
            return float(now_ts)

    secret = signing_secret()
    if not secret:
        raise SlackRefusal(404, "Slack actions are not configured ([hitl] slack_signing_secret)")
    timestamp = headers.get("X-Slack-Request-Timestamp", "")
    signature = headers.get("X-Slack-Signature", "")
    now_ts = time.time() if now is None else now
    if not timestamp.isdigit() or abs(now_ts - int(timestamp)) > MAX_AGE_SECONDS:
        raise SlackRefusal(401, "stale or missing request timestamp")
    verifier = SignatureVerifier(secret, clock=FixedClock())
    if not verifier.is_valid(body=body, timestamp=timestamp, signature=signature):
        raise SlackRefusal(401, "invalid Slack signature")


def slack_user_email(user_id: str) -> str | None:
    if not conf_get("hitl", "slack_conn_id", ""):
        return None
    info = _slack_client().users_info(user=user_id)
    return (info.get("user") or {}).get("profile", {}).get("email")


REASON_BLOCK = "hitl_reason"


def _slack_client() -> Any:
    from airflow.providers.slack.hooks.slack import SlackHook

    return SlackHook(slack_conn_id=conf_get("hitl", "slack_conn_id", "")).client


def _reviewer(slack_user: str) -> Any:
    from hitl.identity import reviewer_by_email

    email = slack_user_email(slack_user)
    reviewer = reviewer_by_email(email) if email else None
    if reviewer is None:
        raise SlackRefusal(200, f"Your Slack account ({email or slack_user}) is not linked to an Airflow user.")
    return reviewer


def _decide(request_id: int, reviewer: Any, verb: str, reason: str | None, response_url: str | None) -> str:
    from hitl.decisions import decide
    from hitl.store import get_store

    outcome = decide(get_store(), request_id, reviewer, verb, comment=reason, channel="slack")  # type: ignore[arg-type]
    text = f"{outcome.request.dag_id} / {outcome.request.step_id}: {outcome.message}"
    if reason:
        text += f" ({reason})"
    if response_url:
        _post_json(response_url, {"replace_original": True, "text": text})
    return text


def handle_action(body: str, form: Any, headers: Any, now: float | None = None) -> dict[str, Any] | None:
    """Verify, then act. Returns the JSON answer for Slack, or None for an empty 200.

    Approve decides at once. Reject opens a modal asking why (a reason is required, as on
    the review page); its submission decides.
    """
    from hitl.decisions import DecisionError

    verify(body, headers, now)
    payload = json.loads(form.get("payload", "{}"))
    slack_user = (payload.get("user") or {}).get("id", "")
    if payload.get("type") == "view_submission" and payload.get("view", {}).get("callback_id") == REJECT:
        meta = json.loads(payload["view"].get("private_metadata") or "{}")
        values = payload["view"].get("state", {}).get("values", {})
        reason = ((values.get(REASON_BLOCK) or {}).get("reason") or {}).get("value") or ""
        try:
            _decide(int(meta["request_id"]), _reviewer(slack_user), "reject", reason.strip(), meta.get("response_url"))
        except (DecisionError, SlackRefusal) as exc:
            return {"response_action": "errors", "errors": {REASON_BLOCK: str(exc)}}
        return {"response_action": "clear"}
    action = (payload.get("actions") or [{}])[0]
    if action.get("action_id") not in (APPROVE, REJECT):
        return None
    request_id = int(action.get("value", "0"))
    reviewer = _reviewer(slack_user)
    if action["action_id"] == REJECT:
        _slack_client().views_open(
            trigger_id=payload.get("trigger_id"),
            view={
                "type": "modal",
                "callback_id": REJECT,
                "private_metadata": json.dumps({"request_id": request_id, "response_url": payload.get("response_url")}),
                "title": {"type": "plain_text", "text": "Reject"},
                "submit": {"type": "plain_text", "text": "Reject"},
                "blocks": [
                    {
                        "type": "input",
                        "block_id": REASON_BLOCK,
                        "label": {"type": "plain_text", "text": "Why? (required)"},
                        "element": {"type": "plain_text_input", "action_id": "reason", "multiline": True},
                    }
                ],
            },
        )
        return None
    try:
        text = _decide(request_id, reviewer, "approve", None, payload.get("response_url"))
    except DecisionError as exc:
        return {"response_type": "ephemeral", "replace_original": False, "text": str(exc)}
    return {"response_type": "ephemeral", "replace_original": False, "text": text}


def _post_json(url: str, body: dict[str, Any]) -> None:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            resp.read()
    except OSError as exc:  # the decision stands; the message just keeps its buttons
        log.warning("hitl: could not update the Slack message: %s", exc)
