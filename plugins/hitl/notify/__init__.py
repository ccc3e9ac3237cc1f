"""Telling people a gate waits: the dashboard always, email and Slack where configured.

Each (request, channel, occasion) is sent at most once: the store claims it first, so a
retried task or a second sweep sends nothing again. A channel that is down never fails the
gate: the failure is logged and audited, the claim released, and the monitor DAG's next
sweep tries again (up to ``MAX_ATTEMPTS``).
"""

from __future__ import annotations

import functools
import hashlib
import logging
from collections.abc import Callable, Sequence
from typing import Any

from hitl.metrics import metrics
from hitl.settings import setting
from hitl.store import PENDING, ApprovalRequest, Comment, Store, get_store, utcnow

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


def notify_mention(
    req: ApprovalRequest, comment: Comment, people: Sequence[Any], *, store: Store | None = None
) -> dict[str, dict[str, str]]:
    """Tell the users ``@mentioned`` in ``comment`` (``Reviewer`` values): an email to each one's address, and
    one line in the workflow's Slack channel naming them all, where configured; each once per comment.

    Any reader may comment, so a thread of mentions must not become a flood: one author notifies one user about
    one request at most once per ``MENTION_EVERY`` seconds, and tells at most ``MENTION_BUDGET`` people in all per
    ``MENTION_EVERY`` window, across every request (twenty comments on twenty requests are not 120 emails). A user
    held back is ``"throttled"`` on every channel, audited once per comment as ``mention_throttled`` (with
    ``budget`` when the author's budget held them). Mention emails go out for pending requests only: a decided
    request's thread is recorded, and its channel line posted, but nobody's mailbox fills with it.
    Returns user -> channel -> outcome.
    """
    store = store or get_store()
    slack = req.notify.get("slack") or _global_slack()
    email = bool(req.notify.get("email", True)) and req.status == PENDING
    channels = [c for c, on in (("email", email), ("slack", bool(slack))) if on]
    outcomes: dict[str, dict[str, str]] = {}
    told: list[Any] = []
    held: list[str] = []
    over_budget: list[str] = []
    for person in people:
        if channels and not _mention_allowed(store, req, comment, person.name):
            held.append(person.name)
            outcomes[person.name] = dict.fromkeys(channels, "throttled")
            continue
        if channels and not _budget_allows(store, comment, person.name):
            over_budget.append(person.name)
            outcomes[person.name] = dict.fromkeys(channels, "throttled")
            continue
        told.append(person)
        outcomes[person.name] = {}
        if not email and req.notify.get("email", True):
            outcomes[person.name]["email"] = f"skipped: request {req.id} is {req.status}, not pending"
        if email:
            from hitl.notify.mentions import email_mention

            occasion = f"mention:{comment.id}:{person.name}"[:200]
            outcomes[person.name]["email"] = _once(
                store, req, "email", occasion, functools.partial(email_mention, req, comment, person)
            )
    if held:
        store.audit(req.id, "mention_throttled", comment.author, comment_id=comment.id, users=held)
    if over_budget:
        store.audit(
            req.id, "mention_throttled", comment.author, comment_id=comment.id, users=over_budget, budget=MENTION_BUDGET
        )
    if slack and told:  # one post per comment, naming everyone it tells
        from hitl.notify.mentions import slack_mention

        posted = _once(
            store, req, "slack", f"mention:{comment.id}", functools.partial(slack_mention, req, comment, told, slack)
        )
        for person in told:
            outcomes[person.name]["slack"] = posted
    return outcomes


MENTION_EVERY = 600  # seconds: one author notifies one user about one request at most this often
MENTION_BUDGET = 20  # people one author's mentions may tell per MENTION_EVERY window, across every request


def _budget_allows(store: Store, comment: Comment, user: str) -> bool:
    """Whether ``comment``'s author may tell one more person in this window: claims one of their numbered slots.

    Slot ``n`` of the window is a side-effect record keyed by the author and the window; each is claimed by one
    caller only, so concurrent comments never exceed ``MENTION_BUDGET``. The count of slots taken is where the
    claiming starts (a race moves on to the next number). A window is fixed (``MENTION_EVERY`` seconds of the
    clock), so across its boundary an author may tell up to twice the budget in a short time, never more.
    """
    window = int(utcnow().timestamp() // MENTION_EVERY)
    base = f"mention-budget:{hashlib.sha256(comment.author.encode()).hexdigest()}:{window}:"
    for slot in range(store.count_side_effects(base), MENTION_BUDGET):
        key = f"{base}{slot:03d}"
        if store.claim_side_effect(key, "mention"):
            store.finish_side_effect(key, {"comment_id": comment.id, "user": user})
            return True
    return False


def _mention_allowed(store: Store, req: ApprovalRequest, comment: Comment, user: str) -> bool:
    """Whether ``comment`` may notify ``user``: claims the (request, author, user) slot of this window.

    A slot is a side-effect record per ``MENTION_EVERY`` window holding when and for which comment it was taken;
    the window before is checked too, so two notifications are always ``MENTION_EVERY`` apart. A retry for the
    comment that took the slot is allowed (its channels are sent once each anyway).
    """
    from datetime import datetime

    now = utcnow()
    window = int(now.timestamp() // MENTION_EVERY)
    base = "mention-slot:" + hashlib.sha256(f"{req.id}\0{comment.author}\0{user}".encode()).hexdigest()
    for key in (f"{base}:{window}", f"{base}:{window - 1}"):
        taken = store.side_effect(key)
        if taken is None:
            continue
        detail = taken[1]
        if detail.get("comment_id") == comment.id:
            return True
        try:
            at = datetime.fromisoformat(str(detail.get("at")))
        except ValueError:  # being claimed right now by another comment
            return False
        if (now - at).total_seconds() < MENTION_EVERY:
            return False
    key = f"{base}:{window}"
    if not store.claim_side_effect(key, "mention"):
        taken = store.side_effect(key)
        return taken is not None and taken[1].get("comment_id") == comment.id
    store.finish_side_effect(key, {"at": now.isoformat(), "comment_id": comment.id})
    return True


def _global_slack() -> dict[str, str] | None:
    conn_id = setting("slack_conn_id")
    return {"connId": conn_id, "channel": setting("slack_channel")} if conn_id else None


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
        metrics.notification(channel, sent=False)
        return f"failed: {reason}"
    store.finish_side_effect(key, detail)
    store.audit(req.id, "notified", None, channel=channel, occasion=occasion, **detail)
    metrics.notification(channel, sent=True)
    return "sent"


def round_note(req: ApprovalRequest, store: Store | None = None) -> str | None:
    """For a draft after "request changes": which draft it is and the feedback it answers, else None.

    A reviewer told of draft 2 must see that it is not the draft they already sent back, and what was asked.
    """
    if req.revision <= 1:
        return None
    feedback, by = "", ""
    if req.previous_request_id is not None:
        try:
            previous = (store or get_store()).get(req.previous_request_id)
        except Exception:  # only the note's second half
            previous = None
        if previous is not None:
            feedback, by = " ".join((previous.comment or "").split()), previous.decided_by or ""
    note = f"Draft {req.revision}"
    if by:
        note += f", after {by} requested changes"
    if feedback:
        clipped = feedback if len(feedback) <= 500 else feedback[:497] + "..."
        note += f": \u201c{clipped}\u201d"
    return note


def message_text(req: ApprovalRequest) -> tuple[str, str, str, str]:
    """(review URL, approve URL, reject URL, summary) for every channel's message."""
    from hitl.notify.links import review_url

    return review_url(req.id), review_url(req.id, "approve"), review_url(req.id, "reject"), req.summary
