"""Clearing a gated step for its next draft ("request changes"): found, cleared and committed with the decision.

``StepRerun`` finds the gated step's task instances in the request's DAG run, refuses before anything is written
when the gate is not parked on this request (``GateNotWaiting``) or Airflow's database cannot be used from here
(``RerunUnavailable``), and clears the step, its gate and what follows inside the transaction that writes the
decision (``hitl.decisions``). A lock Airflow's database refuses (a simultaneous change request) is
``RerunConflict``: looked at again, then answered "already decided" by the caller when the other one won.
"""

from __future__ import annotations

import logging
from typing import Any

from hitl.store import ApprovalRequest

log = logging.getLogger(__name__)


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
