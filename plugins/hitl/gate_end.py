"""How a decided request ends its gate task: the one event, and the two routes that deliver it.

``GateEnd`` is built from the stored request only (``GateEnd.of``), so the trigger and the deciding
process can never disagree on what ends the gate:

- approved -> ``TaskSuccessEvent`` whose XCom ``return_value`` is the approved (maybe edited) output;
- rejected (also by expiry) -> ``TaskSkippedEvent``: downstream steps do not run, the run is not failed;
- superseded or timed out -> a plain ``TriggerEvent``: the worker's ``execute_complete`` finds the current
  request (a timed-out gate fails there, without retries);
- changes requested -> nothing reaches the gate: ``StepRerun`` clears the gated step, the gate and what
  follows in the same DAG run (a mapped gate: its own item), inside the transaction that writes the
  decision, and only while the gate is deferred on that request (see ``StepRerun``).

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

from hitl.store import APPROVED, CHANGES_REQUESTED, DECIDED, REJECTED, ApprovalRequest

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

    def xcoms(self) -> dict[str, Any]:
        """The XComs the trigger's event pushes with the gate's end (none for a plain event)."""
        if self.status == APPROVED:
            return {DECISION_XCOM_KEY: self.decision, "return_value": self.output}
        if self.status == REJECTED:
            return {DECISION_XCOM_KEY: self.decision}
        return {}

    def event(self, *, with_xcoms: bool = True) -> Any:
        """The trigger event that ends the gate task (``with_xcoms=False``: the caller writes the XComs itself)."""
        from airflow.triggers.base import TaskSkippedEvent, TaskSuccessEvent, TriggerEvent

        xcoms = self.xcoms() if with_xcoms else None
        if self.status == APPROVED:
            return TaskSuccessEvent(xcoms=xcoms)
        if self.status == REJECTED:
            return TaskSkippedEvent(xcoms=xcoms)
        return TriggerEvent(self.decision)  # superseded or timed out: the worker decides what follows

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


class RerunUnavailable(Exception):
    """The gated step cannot be re-run from this process; ``str()`` says why. Raised before anything is written."""


class RerunConflict(RerunUnavailable):
    """Airflow's database refused a lock the clearing needed (a deadlock or a lock timeout), most often because a
    simultaneous change request on the same gate holds it: the caller asks the store whether that one decided."""


# A refused lock, by code: PostgreSQL deadlock_detected, serialization_failure, lock_not_available; MySQL
# ER_LOCK_DEADLOCK, ER_LOCK_WAIT_TIMEOUT, ER_LOCK_NOWAIT (airflow.utils.sqlalchemy.is_lock_not_available_error's).
LOCK_CONFLICT_CODES = ("40P01", "40001", "55P03", 1213, 1205, 3572)
PLAN_TRIES = 3  # looks for the task instances to clear when a lock is refused; each retry waits on the holder


def lock_conflict(exc: BaseException | None) -> bool:
    """Whether ``exc``, or an error that caused it, is Airflow's database refusing a lock (``LOCK_CONFLICT_CODES``,
    or SQLite's "database is locked")."""
    from sqlalchemy.exc import DBAPIError

    for _ in range(10):  # the chain of causes, bounded
        if exc is None:
            return False
        if isinstance(exc, DBAPIError):
            orig = exc.orig
            code = getattr(orig, "pgcode", None) or (orig.args[0] if orig is not None and orig.args else None)
            if code in LOCK_CONFLICT_CODES or "database is locked" in str(orig).lower():
                return True
        exc = exc.__cause__ or exc.__context__
    return False


class GateNotWaiting(RerunUnavailable):
    """The gate is not parked on this request (the run was stopped or cleared, or it waits on a newer request).

    ``transient``: the gate has not deferred yet (it is starting, or just recorded the request): try again.
    """

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


# A gate in one of these states is on its way to parking on the request it just recorded: try again shortly.
_STARTING = ("scheduled", "queued", "running", "restarting", "up_for_retry", "up_for_reschedule")


def check_parked(req: ApprovalRequest, gate_state: Any, parked_on: Any) -> None:
    """Raise ``GateNotWaiting`` unless the gate task instance is deferred on ``req`` (as ``DirectRoute`` checks).

    ``gate_state`` is its state (None: cleared, no state yet), ``parked_on`` its ``next_kwargs["request_id"]``.
    """
    state = str(getattr(gate_state, "value", gate_state) or "").lower()
    if state == "deferred" and parked_on == req.id:
        return
    where = f"gate {req.gate_task_id} in run {req.run_id}" + (f" (item {req.map_index})" if req.map_index >= 0 else "")
    if state == "deferred":
        raise GateNotWaiting(
            f"cannot request changes on request {req.id}: {where} now waits on request {parked_on}; review that one"
        )
    if state in _STARTING:
        raise GateNotWaiting(
            f"cannot request changes on request {req.id} yet: {where} is {state}, not waiting for a review yet; "
            "try again in a moment",
            transient=True,
        )
    raise GateNotWaiting(
        f"cannot request changes on request {req.id}: {where} is {state or 'without a state'}, not waiting for a "
        "review (the run was stopped, cleared or changed in Airflow); nothing was written"
    )


class StepRerun:
    """Re-runs the gated step in the same DAG run: "request changes" clears the step, its gate and everything after.

    Used as a context manager around writing the decision, in the deciding process (api-server, CLI,
    Slack endpoint), which may use Airflow's database as ``DirectRoute`` does:

    - entering opens a session and finds the task instances to clear (the gated step and its
      downstream tasks in this run, the deferred gate among them); without Airflow's database, the run
      or the step it raises ``RerunUnavailable``, and unless the gate is deferred on this very request
      (``check_parked``) ``GateNotWaiting``: the caller refuses before writing anything;
    - ``clear()`` clears them with Airflow's own ``clear_task_instances`` and flushes: the rows stay locked
      until the session commits, so the gate's trigger cannot end the gate in between;
    - ``commit()`` commits the clearing, inside the caller's store transaction before that commits: if
      Airflow's commit fails the store rolls back (nothing was decided); if the store's commit fails after
      it, the step re-runs without feedback and its draft reuses (or supersedes) the still-pending request;
    - leaving rolls back what was not committed (the decision was not written: nothing re-runs).

    A mapped gate (``req.map_index`` >= 0) re-runs its own item only: the step's and downstream tasks'
    instances of that map index, and unmapped downstream tasks (-1, which wait on every item anyway);
    other items' instances are left alone. An unmapped gate clears every instance of its downstream tasks.

    Only the gated step runs again: its upstream outputs are reused. The scheduler then runs the step,
    which reads the feedback (``hitl.rounds``), and the gate, which records the new draft as the next round.
    """

    def __init__(self, req: ApprovalRequest) -> None:
        self.req = req
        self.task_ids: list[str] = []
        self._session: Any = None
        self._cm: Any = None
        self._tis: list[Any] = []

    def __enter__(self) -> StepRerun:
        try:
            from airflow.utils.session import create_session

            self._cm = create_session()
            self._session = self._cm.__enter__()
            self._plan_waiting_on_conflicts()
        except RerunUnavailable:
            self._abandon()
            raise
        except Exception as exc:
            self._abandon()
            first = (str(exc).strip().splitlines() or [""])[0][:200]
            raise RerunUnavailable(
                f"cannot re-run step {self.req.step_id} from here: Airflow's database is not reachable from this "
                f"process ({type(exc).__name__}: {first}); request changes from the review page or the CLI "
                "where Airflow's database is configured"
            ) from exc
        return self

    def _abandon(self) -> None:
        if self._cm is not None:
            try:
                self._cm.__exit__(RerunUnavailable, RerunUnavailable(), None)
            except Exception:  # already failing; the reason given is the first one
                pass
            self._cm = None

    def _plan_waiting_on_conflicts(self) -> None:
        """``_plan``, again after a refused lock: a simultaneous change request that deadlocked with this one holds
        the rows, and the next look waits for it to commit, then finds the gate no longer parked (GateNotWaiting:
        "already decided"), where giving up at once would have said "try again"."""
        for attempt in range(1, PLAN_TRIES + 1):
            try:
                self._plan()
                return
            except RerunUnavailable:
                raise
            except Exception as exc:
                if not lock_conflict(exc):
                    raise
                log.info(
                    "request %s: Airflow's database refused a lock (%s, try %d of %d); looking again",
                    self.req.id,
                    type(exc).__name__,
                    attempt,
                    PLAN_TRIES,
                )
                self._session.rollback()
                if attempt == PLAN_TRIES:
                    raise self._refused(exc) from exc

    def _plan(self) -> None:
        from airflow.models.dagbag import DBDagBag
        from airflow.models.dagrun import DagRun
        from airflow.models.taskinstance import TaskInstance
        from sqlalchemy import select

        req, session = self.req, self._session
        run = session.scalars(
            select(DagRun).where(DagRun.dag_id == req.dag_id, DagRun.run_id == req.run_id)
        ).one_or_none()
        if run is None:
            raise RerunUnavailable(f"cannot re-run step {req.step_id}: no DAG run {req.run_id} of {req.dag_id}")
        dag = DBDagBag(load_op_links=False).get_dag_for_run(dag_run=run, session=session)
        if dag is None or not dag.has_task(req.step_id):
            raise RerunUnavailable(
                f"cannot re-run step {req.step_id}: it is not a task of {req.dag_id} as this run knows it"
            )
        subset = dag.partial_subset(task_ids=[req.step_id], include_downstream=True, include_upstream=False)
        self.task_ids = sorted(subset.task_dict)
        where = [
            TaskInstance.dag_id == req.dag_id,
            TaskInstance.run_id == req.run_id,
            TaskInstance.task_id.in_(self.task_ids),
        ]
        if req.map_index >= 0:  # this item only (and the unmapped tasks after it), never the other items
            where.append(TaskInstance.map_index.in_([req.map_index, -1]))
        self._tis = list(session.scalars(select(TaskInstance).where(*where).with_for_update()))
        if not any(ti.task_id == req.step_id for ti in self._tis):
            raise RerunUnavailable(f"cannot re-run step {req.step_id}: it has no task instance in run {req.run_id}")
        gate = next((ti for ti in self._tis if ti.task_id == req.gate_task_id and ti.map_index == req.map_index), None)
        if gate is None:
            raise GateNotWaiting(
                f"cannot request changes on request {req.id}: gate {req.gate_task_id} has no task instance "
                f"{req.map_index} in run {req.run_id}; nothing was written"
            )
        check_parked(req, gate.state, (gate.next_kwargs or {}).get("request_id"))

    def clear(self) -> list[str]:
        """Clear the step and what follows it (flushed, committed by ``commit()``); returns the cleared task ids."""
        from airflow.models.taskinstance import clear_task_instances
        from airflow.utils.state import DagRunState

        try:
            self._end_the_gates_try()
            clear_task_instances(self._tis, self._session, DagRunState.QUEUED)
            self._session.flush()
        except Exception as exc:
            raise self._refused(exc) from exc
        return sorted({ti.task_id for ti in self._tis})

    def _end_the_gates_try(self) -> None:
        """The parked gate's try ends as *skipped*, not *failed*.

        Clearing archives each task's current try in Airflow's try history, and a try that had not finished
        (the gate is deferred) is archived as failed: a red mark in the task's tries where nothing failed. The
        try did end without an approval, by a reviewer's "request changes", which Airflow's states say best as
        skipped; the next draft's gate is the next try.
        """
        from datetime import UTC, datetime

        from airflow.utils.state import TaskInstanceState

        for ti in self._tis:
            if (ti.task_id, ti.map_index) == (self.req.gate_task_id, self.req.map_index) and ti.state == "deferred":
                ti.state = TaskInstanceState.SKIPPED
                ti.end_date = datetime.now(UTC)
                ti.set_duration()

    def commit(self) -> None:
        """Commit the clearing to Airflow's database; ``RerunUnavailable`` when that fails (nothing re-runs)."""
        try:
            self._session.commit()
        except Exception as exc:
            raise self._refused(exc) from exc

    def _refused(self, exc: Exception) -> RerunUnavailable:
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        return (RerunConflict if lock_conflict(exc) else RerunUnavailable)(
            f"cannot re-run step {self.req.step_id}: Airflow's database did not take the clearing "
            f"({type(exc).__name__}: {first}); nothing was decided, try again"
        )

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        cm, self._cm = self._cm, None
        if cm is not None:
            cm.__exit__(exc_type, exc, tb)
