"""The email channel: the approvers' notification with signed review, approve and reject links."""

from __future__ import annotations

import html
from collections.abc import Sequence
from email import policy
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import TYPE_CHECKING, Any, cast

from hitl.identity import describe_approvers
from hitl.notify import Skip, message_text, round_note
from hitl.settings import setting
from hitl.store import ApprovalRequest

if TYPE_CHECKING:
    import smtplib

DEFAULT_FROM = "Airflow approvals <noreply@localhost>"


def _subject(req: ApprovalRequest, occasion: str) -> str:
    prefix = {
        "requested": "Approval needed",
        "escalated": "Escalated: approval needed",
        "policy_decided": f"{req.status.capitalize()} by policy",
    }.get(occasion, "Reminder: approval needed")
    if req.revision > 1:
        prefix += f", draft {req.revision}"
    # One header line whatever a scraped page or a draft put in the summary.
    return " ".join(f"[{prefix}] {req.dag_id} / {req.step_id}: {req.summary}".split())[:250]


def send_email(req: ApprovalRequest, occasion: str, approvers: Sequence[dict[str, str]]) -> dict[str, Any]:
    """Email the approvers (or the owner) through the smtp provider's connection; ``Skip`` when there is none."""
    from hitl.notify.recipients import emails_for
    from hitl.store import get_store

    to = emails_for(approvers, req.owner, dag_id=req.dag_id, store=get_store())
    if not to:
        raise Skip("no email address for the approvers or the owner")
    review, approve, reject, summary = message_text(req)
    note = round_note(req)
    who = describe_approvers(list(approvers))
    e = html.escape
    if occasion == "policy_decided":  # nothing to decide: say what the policy did and where to read why
        body = (
            f"<p><strong>{e(req.dag_id)}</strong>, step <strong>{e(req.step_id)}</strong> (run {e(req.run_id)}) was"
            f" {e(req.status)} by {e(req.decided_by or 'its policy')}: {e(req.comment or '')}.</p><p>{e(summary)}</p>"
            f'<p><a href="{e(review)}">See the request and its history</a></p>'
        )
        text = (
            f"{req.dag_id}, step {req.step_id} (run {req.run_id}) was {req.status} by"
            f" {req.decided_by or 'its policy'}: {req.comment or ''}.\n\n{summary}\n\nSee the request: {review}"
        )
        smtp_send(to, _subject(req, occasion), body, text)
        return {"to": to}
    body = (
        f"<p><strong>{e(req.dag_id)}</strong> is waiting for your review at step <strong>{e(req.step_id)}</strong>"
        f" (run {e(req.run_id)}).</p>"
        + (f'<p id="round"><strong>{e(note)}</strong></p>' if note else "")
        + f"<p>{e(summary)}</p>"
        f'<p><a href="{e(review)}">Review</a> &middot; <a href="{e(approve)}">{e(req.approve_label)}</a>'
        f' &middot; <a href="{e(reject)}">Reject</a></p>'
        f"<p>Approvers: {e(who)}. You will be asked to log in to decide.</p>"
    )
    text = "\n\n".join(
        part
        for part in (
            f"{req.dag_id} is waiting for your review at step {req.step_id} (run {req.run_id}).",
            note,
            summary,
            f"Review: {review}\n{req.approve_label}: {approve}\nReject: {reject}",
            f"Approvers: {who}. You will be asked to log in to decide.",
        )
        if part
    )
    smtp_send(to, _subject(req, occasion), body, text)
    return {"to": to}


def smtp_send(to: Sequence[str], subject: str, html_body: str, text_body: str) -> None:
    """Send through the smtp provider's ``[hitl] smtp_conn_id`` connection; ``Skip`` when there is none.

    The message is ``multipart/alternative``: ``text_body`` as text/plain first, ``html_body`` as text/html
    (a mail client shows the richest it can; a text-only one, a screen reader or a spam filter reads the
    plain part). The provider's ``send_email_smtp`` only writes HTML, so the message is built here and sent
    over the hook's own connection (its TLS, login and retries as configured on the connection).
    """
    conn_id = setting("smtp_conn_id")
    try:
        from airflow.sdk import BaseHook

        conn = BaseHook.get_connection(conn_id)
    except Exception as exc:
        raise Skip(f"no SMTP connection {conn_id!r}") from exc
    sender = setting("email_from") or conn.extra_dejson.get("from_email") or DEFAULT_FROM
    from airflow.providers.smtp.hooks.smtp import SmtpHook

    msg = EmailMessage(policy=policy.SMTP.clone(max_line_length=998))  # RFC 5322: a header line up to 998
    msg["Subject"] = subject[:250]
    msg["From"] = sender
    msg["To"] = ", ".join(to)
    msg["Date"] = formatdate(localtime=True)
    msg["Message-ID"] = make_msgid(domain="hitl.local")  # lets a mailbox (or the demo's .eml sink) thread it
    msg.set_content(text_body)
    msg.add_alternative(html_body, subtype="html")
    with SmtpHook(smtp_conn_id=conn_id) as hook:
        # The connection the hook opened, used as the hook's own send_email_smtp uses it (that one sends HTML only).
        client = cast("smtplib.SMTP | None", hook._smtp_client)
        if client is None:
            raise RuntimeError(f"SMTP connection {conn_id!r} did not open")
        for attempt in range(hook.smtp_retry_limit + 1):
            try:
                client.sendmail(from_addr=_address_of(sender), to_addrs=list(to), msg=msg.as_bytes())
                break
            except Exception:
                if attempt == hook.smtp_retry_limit:
                    raise


def _address_of(sender: str) -> str:
    from email.utils import parseaddr

    return parseaddr(sender)[1] or sender
