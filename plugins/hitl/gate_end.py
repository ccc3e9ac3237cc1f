"""How a decided request ends its gate task: the one event, and the two routes that deliver it.

``GateEnd`` is built from the stored request only (``GateEnd.of``), so the trigger and the deciding
process can never disagree on what ends the gate:

- approved -> ``TaskSuccessEvent`` whose XCom ``return_value`` is the approved (maybe edited) output;
- rejected (also by expiry) -> ``TaskSkippedEvent``: downstream steps do not run, the run is not failed;
- superseded or timed out -> a plain ``TriggerEvent``: the worker's ``execute_complete`` finds the current
  request (a timed-out gate fails there, without retries);
- changes requested -> nothing reaches the gate: ``hitl.rerun.StepRerun`` clears the gated step, the gate and
  what follows in the same DAG run (a mapped gate: its own item), inside the transaction that writes the
  decision, and only while the gate is deferred on that request.

Every route reads one table for what a status means (``ENDINGS``: succeed, skip, fail, re-run, look again,
wait). A rejection also goes on the DAG run's note wherever the deciding process may use Airflow's database.

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
from enum import StrEnum
from typing import Any

from hitl.store import (
    APPROVED,
    CHANGES_REQUESTED,
    DECIDED,
    PENDING,
    REJECTED,
    SUPERSEDED,
    TIMED_OUT,
    ApprovalRequest,
)

log = logging.getLogger(__name__)

DECISION_XCOM_KEY = "hitl_decision"


class Ending(StrEnum):
    """What a request's status means for its gate task: one meaning per status, read by every route."""

    SUCCEED = "succeed"  # the gate succeeds; its output is the approved (maybe edited) one
    SKIP = "skip"  # rejected (by a person, a policy, or expiry): the steps after it are skipped, the run not failed
    FAIL = "fail"  # timed out: the gate fails without retries; clearing it asks again
    RERUN = "rerun"  # changes requested: the decider cleared the step and the gate; a gate that still sees it fails
    LOOK_AGAIN = "look_again"  # superseded: the worker looks up the gate's current request
    WAIT = "wait"  # pending: the gate parks (again)


# The one table from a stored status to what happens to the gate: the trigger's and the direct route's event
# (``GateEnd.event``) and the worker's ending (``ApprovalSensor._end``) read it.
ENDINGS: dict[str, Ending] = {
    APPROVED: Ending.SUCCEED,
    REJECTED: Ending.SKIP,
    TIMED_OUT: Ending.FAIL,
    CHANGES_REQUESTED: Ending.RERUN,
    SUPERSEDED: Ending.LOOK_AGAIN,
    PENDING: Ending.WAIT,
}


def ending_of(status: str) -> Ending:
    """What ``status`` means for the gate (``ENDINGS``); a status this release does not know is an error."""
    return ENDINGS[status]


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

    def xcoms(self) -> dict[str, Any]:
        """The XComs the trigger's event pushes with the gate's end (none for a plain event)."""
        how = ending_of(self.status)
        if how is Ending.SUCCEED:
            return {DECISION_XCOM_KEY: self.decision, "return_value": self.output}
        if how is Ending.SKIP:
            return {DECISION_XCOM_KEY: self.decision}
        return {}

    def event(self, *, with_xcoms: bool = True) -> Any:
        """The trigger event that ends the gate task (``with_xcoms=False``: the caller writes the XComs itself)."""
        from airflow.triggers.base import TaskSkippedEvent, TaskSuccessEvent, TriggerEvent

        xcoms = self.xcoms() if with_xcoms else None
        how = ending_of(self.status)
        if how is Ending.SUCCEED:
            return TaskSuccessEvent(xcoms=xcoms)
        if how is Ending.SKIP:
            return TaskSkippedEvent(xcoms=xcoms)
        return TriggerEvent(self.decision)  # the others: the worker ends the gate (``ApprovalSensor._end``)

    def describe(self) -> str:
        """One log line for the gate's log."""
        if self.status == APPROVED:
            edits = " with edits" if self.edited else ""
            why = f": {self.comment}" if self.comment else ""
            return f"approval request {self.request_id} approved by {self.decided_by} at {self.decided_at}{edits}{why}"
        if self.status == CHANGES_REQUESTED:
            return (
                f"approval request {self.request_id}: changes requested by {self.decided_by} at {self.decided_at}:"
                f" {self.comment}. The step runs again with this feedback."
            )
        if self.status in DECIDED:
            return (
                f"approval request {self.request_id} {self.status.upper()} by {self.decided_by} at {self.decided_at}."
                f" Reason: {self.comment}. Downstream steps will not run."
            )
        return f"approval request {self.request_id} is {self.status}; the worker looks up the current request"


def rejection_note(req: ApprovalRequest) -> str:
    """The run's note for a rejection; Airflow renders notes as Markdown, so the reason is literal text."""
    from hitl.markdown import md_text

    when = req.decided_at.strftime("%Y-%m-%d %H:%M UTC") if req.decided_at else ""
    return f"Rejected at step {req.step_id} by {md_text(req.decided_by)} at {when}: " + md_text(
        req.comment or "", limit=1000
    )


def note_rejection(req: ApprovalRequest) -> None:
    """Best effort: who rejected, when and why, on the DAG run's note (where this process may use Airflow's DB)."""
    try:
        from airflow.models.dagrun import DagRun
        from airflow.utils.session import create_session

        with create_session() as session:
            run = session.query(DagRun).filter(DagRun.dag_id == req.dag_id, DagRun.run_id == req.run_id).one_or_none()
            if run is not None:
                run.note = rejection_note(req)
    except Exception as exc:  # the decision stands whatever happens here
        log.debug("could not set the run note: %s", exc)


class DirectRoute:
    """Ends a parked gate from the deciding process, where that process may use Airflow's database."""

    setting = ("hitl", "end_gate_from_decider")

    @classmethod
    def enabled(cls) -> bool:
        """``[hitl] end_gate_from_decider``: off leaves every gate to its trigger (benchmarks, locked-down DBs)."""
        from hitl.settings import flag

        return flag(cls.setting[1])

    @classmethod
    def end(cls, req: ApprovalRequest) -> bool:
        """True when the gate task was ended here; False leaves it to the trigger (logged).

        A rejection (by a person, a policy, or expiry found while deciding) also goes on the DAG run's note,
        whichever route ends the gate: this process may use Airflow's database, the trigger may not."""
        if ending_of(req.status) is Ending.SKIP:
            note_rejection(req)
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
        """End the gate in ONE transaction of Airflow's database that holds the gate's row lock throughout.

        The trigger may end the same gate at the same moment (``Trigger.submit_event`` in the triggerer).
        Both routes write the same XCom keys, and ``XComModel.set`` is a delete then an insert: two of them
        overlapping on one key is a unique violation, which in the triggerer is an exception out of its
        event loop. What makes the double ending harmless is the order of the locks, not a retry:

        - here the task instance row is locked (``FOR UPDATE``, only while still deferred) before anything is
          written, and every write (state, callback, both XComs) commits at once with it. Airflow's
          ``handle_event_submit`` pushes an event's XComs with ``ti.xcom_push`` in a session of its own making,
          which on the scoped session commits the caller's transaction and releases the lock halfway: so the
          event submitted here carries no XComs, and this route writes them itself, in the same transaction;
        - the triggerer updates that row (``set_state``) before it pushes its XComs, so its update waits for
          this commit and its XComs are written after ours are committed (a delete that sees them, an insert
          that cannot collide);
        - if the triggerer got there first, its update holds the row lock, the ``FOR UPDATE`` below waits for
          it, sees the gate no longer deferred, and this route writes nothing.
        """
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
            handle_event_submit(end.event(with_xcoms=False), task_instance=ti, session=session)
            for key, value in end.xcoms().items():
                raw = key == "return_value"  # as the task SDK stores a return value (the trigger's is encoded twice)
                XComModel.set(
                    key=key,
                    value=serialize(value) if raw else value,  # else as ti.xcom_push writes it, the trigger's route
                    serialize=not raw,
                    task_id=ti.task_id,
                    dag_id=ti.dag_id,
                    run_id=ti.run_id,
                    map_index=ti.map_index,
                    session=session,
                )
        log.info("request %s: ended gate task %s/%s at once", req.id, req.run_id, req.gate_task_id)
        return True
