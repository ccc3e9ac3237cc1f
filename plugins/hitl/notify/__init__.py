"""Telling people a gate waits: the dashboard always, email and Slack where configured.

Each (request, channel, occasion) is sent at most once: the store claims it first, so a
retried task or a second sweep sends nothing again. A channel that is down never fails the
gate: the failure is logged and audited, the claim released, and the monitor DAG's next
sweep tries again (up to ``MAX_ATTEMPTS``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from hitl.config import conf_get
from hitl.store import ApprovalRequest, Store, get_store

log = logging.getLogger(__name__)
MAX_ATTEMPTS = 5


def notify_requested(req: ApprovalRequest, store: Store | None = None) -> dict[str, str]:
    """Announce a new request; returns channel -> outcome ("sent", "skipped: ...", "failed: ...", "already")."""
    return notify(req, "requested", list(req.approvers), store=store)


def notify(
    req: ApprovalRequest, occasion: str, approvers: Sequence[dict[str, str]], *, store: Store | None = None
) -> dict[str, str]:
    """Tell ``approvers`` about ``req`` on every configured channel, each once per ``occasion``."""
    store = store or get_store()
    outcomes = {"dashboard": _once(store, req, "dashboard", occasion, lambda: {"shown": True})}
    if req.notify.get("email", True):
        from hitl.notify.email import send_email

        outcomes["email"] = _once(store, req, "email", occasion, lambda: send_email(req, occasion, approvers))
    slack = req.notify.get("slack") or _global_slack()
    if slack:
        from hitl.notify.slack import post_request

        outcomes["slack"] = _once(store, req, "slack", occasion, lambda: post_request(req, occasion, slack))
    return outcomes


def _global_slack() -> dict[str, str] | None:
    conn_id = conf_get("hitl", "slack_conn_id", "")
    return {"connId": conn_id, "channel": conf_get("hitl", "slack_channel", "")} if conn_id else None


class Skip(Exception):
    """Nothing to send on this channel (not configured, nobody to send to); not an error."""


def _once(store: Store, req: ApprovalRequest, channel: str, occasion: str, send: Callable[[], dict[str, Any]]) -> str:
    key = f"notify:{channel}:{req.id}:{occasion}"
    failures = sum(1 for e in store.history(req.id) if e.event == "notify_failed" and e.detail.get("key") == key)
    if failures >= MAX_ATTEMPTS:
        return "gave up"
    if not store.claim_side_effect(key, "notify"):
        return "already"
    try:
        detail = send()
    except Skip as why:
        store.finish_side_effect(key, {"skipped": str(why)})
        store.audit(req.id, "notify_skipped", None, channel=channel, occasion=occasion, reason=str(why))
        return f"skipped: {why}"
    except Exception as exc:
        store.release_side_effect(key)
        reason = f"{type(exc).__name__}: {exc}"[:500]
        log.warning("hitl: %s notification for request %s failed: %s", channel, req.id, reason)
        store.audit(req.id, "notify_failed", None, channel=channel, occasion=occasion, key=key, error=reason)
        return f"failed: {reason}"
    store.finish_side_effect(key, detail)
    store.audit(req.id, "notified", None, channel=channel, occasion=occasion, **detail)
    return "sent"


def message_text(req: ApprovalRequest) -> tuple[str, str, str, str]:
    """(review URL, approve URL, reject URL, summary) for every channel's message."""
    from hitl.notify.links import review_url

    return review_url(req.id), review_url(req.id, "approve"), review_url(req.id, "reject"), req.summary
