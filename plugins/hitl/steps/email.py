"""email: send one email, at most once per task instance (a retried task never sends twice).

Transports: ``outbox`` (an RFC 5322 .eml file in ``[hitl] outbox_dir``, for the demo),
``smtp`` (the smtp provider's hook and connection), ``gmail`` (the Gmail API through the
google provider's credentials). Output: {transport, message_id, to, subject, sent, path?}.
"""

from __future__ import annotations

import base64
import html
import logging
import re
import secrets
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any

log = logging.getLogger(__name__)


ADDRESS_HEADERS = (("from", "From"), ("to", "To"), ("cc", "Cc"), ("bcc", "Bcc"), ("reply_to", "Reply-To"))


def email_fields(config: dict[str, Any]) -> dict[str, Any]:
    """The parts of the step's config that make up the message (not transport or connId)."""
    from hitl.outputs import EMAIL_FIELDS, OPTIONAL_EMAIL_FIELDS

    return {k: config[k] for k in (*EMAIL_FIELDS, *OPTIONAL_EMAIL_FIELDS) if config.get(k) not in (None, "", [])}


def check_sendable(config: dict[str, Any]) -> None:
    """Refuse a message that is not what it looks like: header injection, NUL, lists that are not addresses."""
    from hitl.outputs import sendable_errors

    errors = sendable_errors("email", email_fields(config))
    if errors:
        raise ValueError("email: will not send: " + "; ".join(f"{k}: {v}" for k, v in errors.items()))


def addresses(config: dict[str, Any], field: str) -> list[str]:
    """An address field (a string or a list of strings) as one formatted address per recipient."""
    from hitl.outputs import parse_addresses

    return [str(a) for a in parse_addresses(field, config.get(field))]


def build_message(config: dict[str, Any]) -> EmailMessage:
    """An RFC 5322 message. Address fields are parsed into addresses (a list is never written as its repr)."""
    from hitl.outputs import parse_addresses

    msg = EmailMessage()
    for field, header in ADDRESS_HEADERS:
        if config.get(field) not in (None, "", []):
            msg[header] = parse_addresses(field, config[field])
    msg["Subject"] = config["subject"]
    msg["Date"] = formatdate(usegmt=True)
    msg["Message-ID"] = make_msgid(domain="hitl.local")
    msg.set_content(config["body"])
    return msg


def safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)[:80]


def _send_outbox(msg: EmailMessage, context: Any) -> dict[str, Any]:
    from hitl.config import load_settings

    outbox = load_settings().outbox_dir
    outbox.mkdir(parents=True, exist_ok=True)
    ti = context["ti"]
    path = outbox / f"{safe_name(ti.dag_id)}__{safe_name(ti.run_id)}__{safe_name(ti.task_id)}.eml"
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(bytes(msg))
    tmp.replace(path)
    return {"path": str(path)}


def _send_smtp(msg: EmailMessage, config: dict[str, Any]) -> dict[str, Any]:
    from airflow.providers.smtp.hooks.smtp import SmtpHook

    body = f'<div style="white-space:pre-wrap">{html.escape(config["body"])}</div>'
    reply_to = addresses(config, "reply_to")
    with SmtpHook(smtp_conn_id=config.get("connId") or "smtp_default") as hook:
        hook.send_email_smtp(
            to=addresses(config, "to"),
            subject=config["subject"],
            html_content=body,
            from_email=addresses(config, "from")[0],
            cc=addresses(config, "cc") or None,
            bcc=addresses(config, "bcc") or None,
            custom_headers={"Reply-To": ", ".join(reply_to)} if reply_to else None,
        )
    return {}


GMAIL_SEND_SCOPE = "https://www.googleapis.com/auth/gmail.send"
# to find, after a send whose outcome is unknown (a timeout, a 5xx), whether the message is in the mailbox
GMAIL_READ_SCOPE = "https://www.googleapis.com/auth/gmail.readonly"
GMAIL_SCOPES = [GMAIL_SEND_SCOPE, GMAIL_READ_SCOPE]


def gmail_credentials(conn_id: str, sender: str) -> Any:
    """The Google credentials a Gmail send uses, from the google provider's connection.

    A connected user's account: ``refresh_token`` (with ``client_id``, ``client_secret``, optional
    ``token_uri``) in the connection's extra. Otherwise the provider's own credentials (a Workspace
    service account key); one that can delegate sends as the sender (domain-wide delegation, subject).
    """
    from airflow.providers.google.common.hooks.base_google import GoogleBaseHook

    hook = GoogleBaseHook(gcp_conn_id=conn_id)
    refresh_token = hook._get_field("refresh_token", None)
    if refresh_token:
        from google.oauth2.credentials import Credentials

        return Credentials(
            token=None,
            refresh_token=refresh_token,
            client_id=hook._get_field("client_id", None),
            client_secret=hook._get_field("client_secret", None),
            token_uri=hook._get_field("token_uri", None) or "https://oauth2.googleapis.com/token",
            scopes=GMAIL_SCOPES,
        )
    credentials = hook.get_credentials()
    if hasattr(credentials, "with_subject"):
        credentials = credentials.with_subject(sender)
    if hasattr(credentials, "with_scopes"):
        credentials = credentials.with_scopes(GMAIL_SCOPES)
    return credentials


def gmail_service(config: dict[str, Any]) -> Any:
    from airflow.providers.google.common.hooks.base_google import GoogleBaseHook
    from googleapiclient.discovery import build

    conn_id = config.get("connId") or "google_cloud_default"
    sender = parse_sender(addresses(config, "from")[0])
    # gmail_api_url: only for tests that reach a local server speaking the Gmail API
    api_url = GoogleBaseHook(gcp_conn_id=conn_id)._get_field("gmail_api_url", None)
    return build(
        "gmail",
        "v1",
        credentials=gmail_credentials(conn_id, sender),
        cache_discovery=False,
        static_discovery=True,
        client_options={"api_endpoint": api_url} if api_url else None,
    )


def _send_gmail(msg: EmailMessage, config: dict[str, Any]) -> dict[str, Any]:
    raw = base64.urlsafe_b64encode(bytes(msg)).decode()
    sent = gmail_service(config).users().messages().send(userId="me", body={"raw": raw}).execute()
    return {"gmail_id": sent.get("id")}


def gmail_find(config: dict[str, Any], message_id: str) -> str | None:
    """Gmail's id of the message with this Message-ID in the sender's mailbox, or None (it never arrived)."""
    found = gmail_service(config).users().messages().list(userId="me", q=f"rfc822msgid:{message_id}").execute()
    messages = found.get("messages") or []
    return messages[0]["id"] if messages else None


def outcome_unknown(exc: Exception) -> bool:
    """A Gmail send that may have gone out: no answer (timeout, connection) or a server error (5xx)."""
    status = getattr(getattr(exc, "resp", None), "status", None)
    return status is None or int(status) >= 500


def parse_sender(formatted: str) -> str:
    from email.utils import parseaddr

    return parseaddr(formatted)[1]


def sent_key(dag_id: str, run_id: str, task_id: str, map_index: int | None) -> str:
    """The at-most-once key of the email one task instance sends (the review page reads what was sent by it)."""
    return f"email:{dag_id}:{run_id}:{task_id}:{map_index if map_index is not None else -1}"


def run(config: dict[str, Any], context: Any) -> dict[str, Any]:
    from hitl.store import get_store
    from hitl.store.outage import through_outage

    check_sendable(config)  # before claiming: a message that cannot go out must not look like it went
    ti = context["ti"]
    key = sent_key(ti.dag_id, ti.run_id, ti.task_id, ti.map_index)
    store = get_store()
    transport = config.get("transport", "outbox")
    msg = build_message(config)
    extra: dict[str, Any] | None = None
    # Every ledger read and write waits out a store outage (bounded): the claim before sending, so nothing
    # goes out unrecorded; the finish after it, so a sent email is recorded as sent, never sent again.
    ledger = f"the email ledger of {key}"
    claim = secrets.token_hex(8)  # the same claim when it is repeated after an outage
    if not through_outage(ledger, lambda: store.claim_side_effect(key, "email", claim=claim)):
        recorded = through_outage(ledger, lambda: store.side_effect(key))
        status, detail = recorded if recorded else ("unknown", {})
        if status == "done":
            log.info("Email already sent by an earlier try (%s); not sending again", detail.get("message_id"))
            return {**detail, "sent": False, "already_sent": True}
        if transport != "gmail" or not detail.get("message_id"):
            raise RuntimeError(
                f"an earlier try started sending this email and did not finish ({key}); "
                "not sending again: check the mailbox, then clear this task's record if it never went out"
            )
        # Reconcile: the earlier try recorded its Message-ID before sending; ask Gmail whether it arrived.
        msg.replace_header("Message-ID", detail["message_id"])
        gmail_id = gmail_find(config, detail["message_id"])
        if gmail_id:
            log.info(
                "Email %s was sent by an earlier try (Gmail %s); not sending again", detail["message_id"], gmail_id
            )
            extra = {"gmail_id": gmail_id, "reconciled": True}
    else:
        noted = {"transport": transport, "message_id": msg["Message-ID"]}
        through_outage(ledger, lambda: store.note_side_effect(key, noted))  # record before
    sender = {
        "outbox": lambda: _send_outbox(msg, context),
        "smtp": lambda: _send_smtp(msg, config),
        "gmail": lambda: _send_gmail(msg, config),
    }
    if extra is None:
        try:
            extra = sender[transport]()
        except Exception as exc:
            if transport == "gmail" and outcome_unknown(exc):
                raise  # maybe sent: the record stays "started"; the retry reconciles with the mailbox
            through_outage(ledger, lambda: store.release_side_effect(key))  # nothing went out: a retry may send
            raise
    detail = {
        "transport": transport,
        "message_id": msg["Message-ID"],
        "to": config["to"],
        "subject": config["subject"],
        # what went out, as the review page shows it after the decision (Bcc is not a header anyone received)
        "headers": {name: str(value) for name, value in msg.items() if name.lower() != "bcc"},
        **extra,
    }
    through_outage(ledger, lambda: store.finish_side_effect(key, detail))
    return {**detail, "sent": True}
