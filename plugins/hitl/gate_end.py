"""How a decided request ends its gate task: the one event, and the two routes that deliver it.

``GateEnd`` is built from the stored request only (``GateEnd.of``), so the trigger and the deciding
process can never disagree on what ends the gate:

- approved -> ``TaskSuccessEvent`` whose XCom ``return_value`` is the approved (maybe edited) output;
- rejected (also by expiry) -> ``TaskSkippedEvent``: downstream steps do not run, the run is not failed;
- superseded or timed out -> a plain ``TriggerEvent``: the worker's ``execute_complete`` finds the current
  request (a timed-out gate fails there, without retries).

Routes, first wins (Airflow only ends a task instance that is still deferred):

1. ``DirectRoute``: the deciding process (api-server behind the review page, the CLI, Slack) submits the
   event through Airflow's own ``handle_event_submit`` at once, as Airflow's HITL endpoint does. Setting
   ``[hitl] end_gate_from_decider`` (default true). It falls back with a WARNING, never silently.
2. The trigger (``hitl.trigger``), which sees the decision through the shared watcher.

Neither route is trusted by the steps after a gate: they read the approved output from the decision
store (``hitl.guard``). The XCom is a convenience for hand-written DAGs and Airflow's UI.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from hitl.store import APPROVED, DECIDED, REJECTED, ApprovalRequest

log = logging.getLogger(__name__)

DECISION_XCOM_KEY = "hitl_decision"


def decode_gate_xcom(value: Any) -> Any:
    """The output a gate pushed, as the step produced it.

    Airflow 3.3 stores XComs pushed by a trigger's ``TaskSuccessEvent`` JSON-encoded twice
    (``XComModel.set`` serializes a value that its JSON column encodes again), so the trigger
    route reads back a JSON string. The direct route writes the value as the task SDK would.
    Values that were never encoded (a plain string output) come back unchanged.
    """
    if isinstance(value, str) and value[:1] in ("{", "[", '"'):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


@dataclass(frozen=True)
class GateEnd:
    """What ends a gate: derived from the stored request, nothing else."""

    request_id: int
    status: str
    decided_by: str | None
    decided_at: str | None
    comment: str | None
    edited: bool
    output: Any

    @classmethod
    def of(cls, req: ApprovalRequest) -> GateEnd:
        """The end of the gate that ``req`` (as stored) decides."""
        return cls(
            request_id=req.id,
            status=req.status,
            decided_by=req.decided_by,
            decided_at=req.decided_at.isoformat() if req.decided_at else None,
            comment=req.comment,
            edited=req.edited_output is not None,
            output=req.final_output,
        )

    @property
    def decision(self) -> dict[str, Any]:
        """The ``hitl_decision`` XCom: who decided what, when, why."""
        return {
            "request_id": self.request_id,
            "status": self.status,
            "decided_by": self.decided_by,
            "decided_at": self.decided_at,
            "comment": self.comment,
            "edited": self.edited,
        }

    def event(self, *, with_output: bool = True) -> Any:
        """The trigger event that ends the gate task (``with_output=False``: the caller writes the XCom itself)."""
        from airflow.triggers.base import TaskSkippedEvent, TaskSuccessEvent, TriggerEvent

        if self.status == APPROVED:
            xcoms: dict[str, Any] = {DECISION_XCOM_KEY: self.decision}
            if with_output:
                xcoms["return_value"] = self.output
            return TaskSuccessEvent(xcoms=xcoms)
        if self.status == REJECTED:
            return TaskSkippedEvent(xcoms={DECISION_XCOM_KEY: self.decision})
        return TriggerEvent(self.decision)  # superseded or timed out: the worker decides what follows

    def describe(self) -> str:
        """One log line for the gate's log."""
        if self.status == APPROVED:
            edits = " with edits" if self.edited else ""
            why = f": {self.comment}" if self.comment else ""
            return f"approval request {self.request_id} approved by {self.decided_by} at {self.decided_at}{edits}{why}"
        if self.status in DECIDED:
            return (
                f"approval request {self.request_id} {self.status.upper()} by {self.decided_by} at {self.decided_at}."
                f" Reason: {self.comment}. Downstream steps will not run."
            )
        return f"approval request {self.request_id} is {self.status}; the worker looks up the current request"


class DirectRoute:
    """Ends a parked gate from the deciding process, where that process may use Airflow's database."""

    setting = ("hitl", "end_gate_from_decider")

    @classmethod
    def enabled(cls) -> bool:
        """``[hitl] end_gate_from_decider``: off leaves every gate to its trigger (benchmarks, locked-down DBs)."""
        from hitl.config import conf_get

        return conf_get(*cls.setting, "true").strip().lower() in ("1", "true", "yes", "on")

    @classmethod
    def end(cls, req: ApprovalRequest) -> bool:
        """True when the gate task was ended here; False leaves it to the trigger (logged)."""
        if not cls.enabled():
            log.info("request %s: [hitl] end_gate_from_decider is off; the trigger ends the gate", req.id)
            return False
        try:
            return cls._submit(GateEnd.of(req), req)
        except Exception as exc:  # the trigger delivers the same decision
            log.warning(
                "request %s: could not end gate %s/%s from this process (%s: %s); its trigger will",
                req.id,
                req.run_id,
                req.gate_task_id,
                type(exc).__name__,
                exc,
            )
            return False

    @staticmethod
    def _submit(end: GateEnd, req: ApprovalRequest) -> bool:
        from airflow.models.taskinstance import TaskInstance
        from airflow.models.trigger import handle_event_submit
        from airflow.models.xcom import XComModel
        from airflow.sdk.serde import serialize
        from airflow.utils.session import create_session
        from airflow.utils.state import TaskInstanceState
        from sqlalchemy import select

        with create_session() as session:
            ti = session.scalars(
                select(TaskInstance)
                .where(
                    TaskInstance.dag_id == req.dag_id,
                    TaskInstance.run_id == req.run_id,
                    TaskInstance.task_id == req.gate_task_id,
                    TaskInstance.map_index == req.map_index,
                    TaskInstance.state == TaskInstanceState.DEFERRED,
                )
                .with_for_update()
            ).one_or_none()
            if ti is None:  # not parked (yet, or any more): the trigger or the worker ends it
                log.info("request %s: gate %s is not deferred; its trigger or worker ends it", req.id, req.gate_task_id)
                return False
            parked_on = (ti.next_kwargs or {}).get("request_id")
            if parked_on != req.id:  # the gate was cleared and now waits on another request: not ours to end
                log.info("request %s: gate %s now waits on request %s; left alone", req.id, req.gate_task_id, parked_on)
                return False
            handle_event_submit(end.event(with_output=False), task_instance=ti, session=session)
            if end.status == APPROVED:
                # As the task SDK stores a return value, so a downstream task reads the value itself
                # (the event's own XCom would be encoded twice).
                XComModel.set(
                    key="return_value",
                    value=serialize(end.output),
                    task_id=ti.task_id,
                    dag_id=ti.dag_id,
                    run_id=ti.run_id,
                    map_index=ti.map_index,
                    serialize=False,
                    session=session,
                )
        log.info("request %s: ended gate task %s/%s at once", req.id, req.run_id, req.gate_task_id)
        return True
