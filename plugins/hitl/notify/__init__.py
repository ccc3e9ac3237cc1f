"""Telling approvers a gate is waiting. The dashboard (the inbox and its badge) is always on."""

from __future__ import annotations

from typing import Any


def notify_requested(req: Any) -> None:
    """Record that the request is on the dashboard; other channels hook in here."""
    from hitl.store import get_store

    get_store().audit(req.id, "notified", None, channel="dashboard")
