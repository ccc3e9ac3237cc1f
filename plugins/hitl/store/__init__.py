"""The decision store: approval requests, votes, the append-only audit log, at-most-once side effects.

``model`` holds the values (statuses, requests, queries), ``repository`` the reads and writes,
``schema`` the tables (changed only through ``migrations``), ``watcher`` the triggerer's shared poller.
This module is the public face.
"""

from __future__ import annotations

from functools import cache

from hitl.store.model import (
    APPROVED,
    CHANGES_REQUESTED,
    DECIDED,
    EXPIRY_ACTOR,
    PENDING,
    REJECTED,
    SUPERSEDED,
    TIMED_OUT,
    TIMEOUT_ACTOR,
    ApprovalRequest,
    AuditEvent,
    Comment,
    GateRequest,
    RequestQuery,
    approver_rows,
    canonical_json,
    content_hash,
    utcnow,
)
from hitl.store.repository import NOTIFY_CHANNEL, Store

__all__ = [
    "APPROVED",
    "CHANGES_REQUESTED",
    "DECIDED",
    "EXPIRY_ACTOR",
    "NOTIFY_CHANNEL",
    "PENDING",
    "REJECTED",
    "SUPERSEDED",
    "TIMED_OUT",
    "TIMEOUT_ACTOR",
    "ApprovalRequest",
    "AuditEvent",
    "Comment",
    "GateRequest",
    "RequestQuery",
    "Store",
    "approver_rows",
    "canonical_json",
    "content_hash",
    "get_store",
    "utcnow",
]


@cache
def _store_for(url: str) -> Store:
    return Store(url)


def get_store(url: str | None = None) -> Store:
    """The process-wide store for the configured URL (engines are pooled per URL)."""
    if url is None:
        from hitl.config import load_settings

        url = load_settings().store_url
    return _store_for(url)
