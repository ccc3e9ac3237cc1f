"""ApprovalTrigger: waits in the triggerer for a decision and ends the gate task itself.

All the triggers of one triggerer share one ``DecisionWatcher``: one batched query per
poll interval for every parked gate, and on PostgreSQL a LISTEN wake-up so a decision is
seen at once. The event that ends the gate is ``hitl.gate_end.GateEnd``, the same one the
deciding process submits; no worker round trip sits between a decision and the next step.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from hitl.gate_end import GateEnd
from hitl.store.watcher import DecisionWatcher, watcher_for

TRIGGER_PATH = "hitl.trigger.ApprovalTrigger"


class ApprovalTrigger(BaseTrigger):
    """Fires when approval request ``request_id`` is decided (or superseded)."""

    def __init__(self, *, request_id: int, poll_interval: float | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.request_id = request_id
        self.poll_interval = poll_interval

    def serialize(self) -> tuple[str, dict[str, Any]]:
        # No store URL here: it may hold a password, and the triggerer reads it from its own config.
        return TRIGGER_PATH, {"request_id": self.request_id, "poll_interval": self.poll_interval}

    def _watcher(self) -> DecisionWatcher:
        from hitl.config import load_settings

        settings = load_settings()
        return watcher_for(settings.store_url, self.poll_interval or settings.poll_interval)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        self.log.info("Waiting for a decision on approval request %s", self.request_id)
        end = GateEnd.of(await self._watcher().wait(self.request_id))
        self.log.info("%s", end.describe())
        yield end.event()
