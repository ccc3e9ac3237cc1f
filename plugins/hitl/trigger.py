"""ApprovalTrigger: waits in the triggerer for a decision and ends the gate task itself.

All the triggers of one triggerer share one ``DecisionWatcher``: one batched query per
poll interval for every parked gate, and on PostgreSQL a LISTEN wake-up so a decision is
seen at once. The approved output goes straight to XCom through ``TaskSuccessEvent``, so
no worker round trip sits between a decision and the downstream task.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TaskSkippedEvent, TaskSuccessEvent, TriggerEvent

from hitl.store.watcher import DecisionWatcher, watcher_for

TRIGGER_PATH = "hitl.trigger.ApprovalTrigger"
DECISION_XCOM_KEY = "hitl_decision"


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
        row = await self._watcher().wait(self.request_id)
        final = row["edited_output"] if row["edited_output"] is not None else row["output"]
        event = end_event(
            request_id=self.request_id,
            status=row["status"],
            decided_by=row["decided_by"],
            decided_at=row["decided_at"],
            comment=row["comment"],
            final_output=json.loads(final),
            edited=row["edited_output"] is not None,
        )
        if row["status"] == "approved":
            self.log.info(
                "Approval request %s approved by %s at %s%s%s",
                self.request_id,
                row["decided_by"],
                row["decided_at"],
                " with edits" if row["edited_output"] is not None else "",
                f": {row['comment']}" if row["comment"] else "",
            )
        elif row["status"] == "rejected":
            self.log.info(
                "Approval request %s REJECTED by %s at %s. Reason: %s. Downstream steps will not run.",
                self.request_id,
                row["decided_by"],
                row["decided_at"],
                row["comment"],
            )
        yield event


def end_event(
    *,
    request_id: int,
    status: str,
    decided_by: str | None,
    decided_at: str | None,
    comment: str | None,
    final_output: Any,
    edited: bool,
) -> TriggerEvent:
    """The event that ends a gate: approved -> success with the output as XCom; rejected -> skipped.

    A superseded request goes back to the worker (plain TriggerEvent), which finds the current one.
    Shared by the trigger and by ``hitl.decisions``, which submits it at once where it can.
    """
    decision: dict[str, Any] = {
        "request_id": request_id,
        "status": status,
        "decided_by": decided_by,
        "decided_at": decided_at,
        "comment": comment,
        "edited": edited,
    }
    if status == "approved":
        return TaskSuccessEvent(xcoms={"return_value": final_output, DECISION_XCOM_KEY: decision})
    if status == "rejected":
        return TaskSkippedEvent(xcoms={DECISION_XCOM_KEY: decision})
    return TriggerEvent(decision)
