"""The email channel: the approvers' notification with signed review, approve and reject links."""

from __future__ import annotations

import html
from collections.abc import Sequence
from email.utils import make_msgid
from typing import Any

from hitl.config import conf_get
from hitl.identity import describe_approvers
from hitl.notify import Skip, message_text
from hitl.store import ApprovalRequest

DEFAULT_FROM = "Airflow approvals <noreply@localhost>"


def _subject(req: ApprovalRequest, occasion: str) -> str:
    prefix = {
        "requested": "Approval needed",
        "escalated": "Escalated: approval needed",
        "policy_decided": f"{req.status.capitalize()} by policy",
    }.get(occasion, "Reminder: approval needed")
    # One header line whatever a scraped page or a draft put in the summary.
    return " ".join(f"[{prefix}] {req.dag_id} / {req.step_id}: {req.summary}".split())[:250]


def send_email(req: ApprovalRequest, occasion: str, approvers: Sequence[dict[str, str]]) -> dict[str, Any]:
    """Email the approvers (or the owner) through the smtp provider's connection; ``Skip`` when there is none."""
    from hitl.notify.recipients import emails_for

    to = emails_for(approvers, req.owner)
    if not to:
        raise Skip("no email address for the approvers or the owner")
    review, approve, reject, summary = message_text(req)
    e = html.escape
    if occasion == "policy_decided":  # nothing to decide: say what the policy did and where to read why
        body = (
            f"<p><strong>{e(req.dag_id)}</strong>, step <strong>{e(req.step_id)}</strong> (run {e(req.run_id)}) was"
            f" {e(req.status)} by {e(req.decided_by or 'its policy')}: {e(req.comment or '')}.</p><p>{e(summary)}</p>"
            f'<p><a href="{e(review)}">See the request and its history</a></p>'
        )
        smtp_send(to, _subject(req, occasion), body)
        return {"to": to}
    body = (
        f"<p><strong>{e(req.dag_id)}</strong> is waiting for your review at step <strong>{e(req.step_id)}</strong>"
        f" (run {e(req.run_id)}).</p><p>{e(summary)}</p>"
        f'<p><a href="{e(review)}">Review</a> &middot; <a href="{e(approve)}">{e(req.approve_label)}</a>'
        f' &middot; <a href="{e(reject)}">Reject</a></p>'
        f"<p>Approvers: {e(describe_approvers(list(approvers)))}. You will be asked to log in to decide.</p>"
    )
    smtp_send(to, _subject(req, occasion), body)
    return {"to": to}


def smtp_send(to: Sequence[str], subject: str, html_body: str) -> None:
    """Send through the smtp provider's ``[hitl] smtp_conn_id`` connection; ``Skip`` when there is none."""
    conn_id = conf_get("hitl", "smtp_conn_id", "smtp_default")
    try:
        from airflow.sdk import BaseHook

        conn = BaseHook.get_connection(conn_id)
    except Exception as exc:
        raise Skip(f"no SMTP connection {conn_id!r}") from exc
    sender = conf_get("hitl", "email_from", "") or conn.extra_dejson.get("from_email") or DEFAULT_FROM
    from airflow.providers.smtp.hooks.smtp import SmtpHook

    with SmtpHook(smtp_conn_id=conn_id) as hook:
        hook.send_email_smtp(
            to=list(to),
            subject=subject[:250],
            html_content=html_body,
            from_email=sender,
            # The provider writes Date; a Message-ID of our own lets a mailbox (or the demo's .eml sink) thread it.
            custom_headers={"Message-ID": make_msgid(domain="hitl.local")},
        )
