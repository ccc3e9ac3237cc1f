"""Telling users they were ``@mentioned`` in a comment: an email each, and one line in the workflow's Slack channel.

Everything a commenter wrote is escaped (HTML in the email, Slack's ``& < >`` in Slack), so a comment
can neither inject markup nor ping ``<!channel>``.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

from hitl.notify import Skip
from hitl.settings import setting
from hitl.store import ApprovalRequest, Comment


def _address(person: Any) -> str | None:
    from hitl.identity import user_directory

    return person.email or user_directory().get(person.name) or None


def email_mention(req: ApprovalRequest, comment: Comment, person: Any) -> dict[str, Any]:
    """Email ``person`` (a ``Reviewer``) that ``comment`` mentions them; ``Skip`` without an address or SMTP."""
    from hitl.notify.links import review_url

    to = _address(person)
    if not to:
        raise Skip(f"no email address for {person.name}")
    e = html.escape
    subject = " ".join(f"[Mentioned] {comment.author} on {req.dag_id} / {req.step_id} (request {req.id})".split())
    body = (
        f"<p><strong>{e(comment.author)}</strong> mentioned you on request #{req.id} "
        f"(<strong>{e(req.dag_id)}</strong>, step <strong>{e(req.step_id)}</strong>, run {e(req.run_id)}):</p>"
        f'<blockquote style="white-space:pre-wrap">{e(comment.body)}</blockquote>'
        f'<p><a href="{e(review_url(req.id))}">Open the request</a>. Comments never decide it.</p>'
    )
    text = (
        f"{comment.author} mentioned you on request #{req.id} ({req.dag_id}, step {req.step_id}, run {req.run_id}):"
        f"\n\n{comment.body}\n\nOpen the request: {review_url(req.id)}\nComments never decide it."
    )
    from hitl.notify.email import smtp_send

    smtp_send([to], subject, body, text)
    return {"to": [to]}


def slack_mention(req: ApprovalRequest, comment: Comment, people: Sequence[Any], cfg: dict[str, str]) -> dict[str, Any]:
    """One line in the workflow's Slack channel naming every user in ``people`` (``Reviewer`` values) that
    ``comment`` mentions (a real Slack mention for each one the bot finds by email), with the comment once.
    """
    from airflow.sdk import BaseHook

    from hitl.notify.links import review_url
    from hitl.notify.slack import _fit, escape

    conn_id = cfg["connId"]
    conn = BaseHook.get_connection(conn_id)

    def text_of(names: list[str]) -> str:
        return (
            f"{', '.join(names)}: {escape(comment.author)} mentioned you on request #{req.id} "
            f"(`{escape(req.dag_id)}` / `{escape(req.step_id)}`): {_fit(escape(comment.body), 2500)}\n"
            f"<{review_url(req.id)}|Open the request>"
        )

    if conn.conn_type == "slackwebhook":
        from airflow.providers.slack.hooks.slack_webhook import SlackWebhookHook

        SlackWebhookHook(slack_webhook_conn_id=conn_id).send(text=text_of([escape(p.name) for p in people]))
        return {"via": "webhook", "users": [p.name for p in people]}
    from airflow.providers.slack.hooks.slack import SlackHook

    client = SlackHook(slack_conn_id=conn_id).client
    names = [_slack_name(client, person) for person in people]
    channel = cfg.get("channel") or setting("slack_channel")
    sent = client.chat_postMessage(channel=channel, text=text_of(names))
    return {"via": "bot", "ts": sent.get("ts"), "users": [p.name for p in people]}


def _slack_name(client: Any, person: Any) -> str:
    """``<@U123>`` when the bot finds ``person`` by email on Slack, else their escaped name."""
    from hitl.notify.slack import escape

    address = _address(person)
    if address:
        try:
            found = client.users_lookupByEmail(email=address)
            user = found.get("user") if hasattr(found, "get") else None
            if isinstance(user, dict) and isinstance(user.get("id"), str) and user["id"].isalnum():
                return f"<@{user['id']}>"
        except Exception:  # not a Slack user, or no users:read.email scope: the name will do
            pass
    return str(escape(person.name))
