"""ApprovalSensor through dag.test(): the trigger runs inline, a reviewer thread decides."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import sensor_dags
from hitl.decisions import decide
from hitl.identity import Reviewer
from hitl.store import ApprovalRequest, RequestQuery, get_store

ALICE = Reviewer("alice")


def build_dag(dag_id: str) -> Any:
    import sensor_dags

    return getattr(sensor_dags, dag_id)


def reviewer(dag_id: str, act: Callable[[ApprovalRequest], object]) -> threading.Thread:
    def run() -> None:
        store = get_store()
        for _ in range(300):
            pending = store.list_requests(RequestQuery(dag_id=dag_id))
            if pending:
                act(pending[0])
                return
            time.sleep(0.1)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def states(run: Any) -> dict[str, str]:
    return {ti.task_id: ti.state for ti in run.get_task_instances()}


@pytest.fixture(autouse=True)
def _db(airflow_db: Path) -> None:
    pass


def test_edit_and_approve_reaches_the_downstream_task() -> None:
    dag = build_dag("sensor_edit")
    edited = {**sensor_dags.draft(), "subject": "Edited subject"}
    reviewer("sensor_edit", lambda r: decide(get_store(), r.id, ALICE, "approve", edited_output=edited))
    run = dag.test()
    assert run.state == "success", states(run)
    assert sensor_dags.RECEIVED["sensor_edit"] == edited
    req = get_store().list_requests(RequestQuery(dag_id="sensor_edit", status="all"))[0]
    assert req.status == "approved" and req.output == sensor_dags.draft()


def run_note(dag_id: str, run_id: str) -> str:
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        found = session.query(DagRun).filter(DagRun.dag_id == dag_id, DagRun.run_id == run_id).one()
        return str(found.note or "")


def test_reject_skips_downstream_and_does_not_fail_the_run() -> None:
    dag = build_dag("sensor_reject")
    reviewer("sensor_reject", lambda r: decide(get_store(), r.id, ALICE, "reject", comment="wrong [shop](x)"))
    run = dag.test()
    assert states(run) == {"draft": "success", "draft__approval": "skipped", "send": "skipped"}
    assert run.state == "success"
    assert "sensor_reject" not in sensor_dags.RECEIVED
    note = run_note("sensor_reject", run.run_id)
    assert note.startswith("Rejected at step draft by alice at ") and note.endswith(": wrong \\[shop\\]\\(x\\)")


def test_a_rejection_by_expiry_found_while_deciding_goes_on_the_run_note() -> None:
    """expireAfter passes; alice's late approval is refused, the request expires (a rejection) and, as any rejection
    the deciding process ends, the run's note says so (it did not before)."""
    from hitl.decisions import AlreadyDecided

    def late(req: ApprovalRequest) -> None:
        time.sleep(2.5)
        with pytest.raises(AlreadyDecided, match="expired"):
            decide(get_store(), req.id, ALICE, "approve")

    dag = build_dag("sensor_expire")
    reviewer("sensor_expire", late)
    run = dag.test()
    assert states(run)["draft__approval"] == "skipped" and run.state == "success"
    note = run_note("sensor_expire", run.run_id)  # Markdown: the actor's colon is escaped, shown as written
    assert note.startswith("Rejected at step draft by hitl\\:expiry at ") and "no decision within 2s" in note


class RetriedTry:
    """What a later try of the gate task sees: the same task instance, a higher try number."""

    def __init__(self, run_id: str, output: Any, try_number: int) -> None:
        self.dag_id, self.run_id, self.task_id, self.map_index, self.try_number = (
            "sensor_retry",
            run_id,
            "draft__approval",
            -1,
            try_number,
        )
        self.output = output

    def xcom_pull(self, task_ids: str) -> Any:
        assert task_ids == "draft"
        return self.output


def test_a_retried_gate_reuses_the_decision_and_a_changed_output_asks_again() -> None:
    from types import SimpleNamespace

    from airflow.sdk.exceptions import TaskDeferred

    dag = build_dag("sensor_retry")
    reviewer("sensor_retry", lambda r: decide(get_store(), r.id, ALICE, "approve"))
    run = dag.test()
    assert run.state == "success"
    gate = dag.get_task("draft__approval")
    [req] = get_store().list_requests(RequestQuery(dag_id="sensor_retry", status="all"))

    same = {"ti": RetriedTry(req.run_id, sensor_dags.draft(), 2), "dag_run": SimpleNamespace(triggering_user_name=None)}
    assert gate.execute(same) == sensor_dags.draft()  # already approved: no second request, no waiting
    assert get_store().count(RequestQuery(dag_id="sensor_retry", status="all")) == 1

    changed = {**sensor_dags.draft(), "body": "rewritten by the retry"}
    retry = {"ti": RetriedTry(req.run_id, changed, 3), "dag_run": SimpleNamespace(triggering_user_name=None)}
    with pytest.raises(TaskDeferred):
        gate.execute(retry)  # new content: a new pending request, and the gate waits again
    current = get_store().current_for_gate("sensor_retry", req.run_id, "draft__approval")
    assert current is not None and current.id != req.id and current.status == "pending"
    assert current.output == changed


def test_a_gate_with_time_bounds_warns_in_its_log_when_no_monitor_runs(capfd: pytest.CaptureFixture[str]) -> None:
    from sqlalchemy import delete

    from hitl.store.schema import side_effect

    store = get_store()
    with store.writing() as conn:  # whatever swept this store before: no monitor now
        conn.execute(delete(side_effect).where(side_effect.c.key == store.MONITOR_HEARTBEAT))
    dag = build_dag("sensor_reminded")
    reviewer("sensor_reminded", lambda r: decide(get_store(), r.id, ALICE, "approve"))
    run = dag.test()  # the task's log goes to the console under dag.test()
    assert run.state == "success", states(run)
    logged = "".join(capfd.readouterr())
    warned = [line for line in logged.splitlines() if "hitl_monitor DAG is not running" in line]
    assert warned and "[warning" in warned[0] and "remind_after is set" in warned[0], logged[-3000:]
    assert "python -m hitl monitor install" in warned[0]


def test_a_hand_written_task_checks_what_its_gate_bound() -> None:
    """``approved_output(..., binds=[...])``: the gate recorded contact's output; the acting task finds it unchanged.
    A gate that did not bind it: the task refuses (what it reads was never shown to the reviewer)."""
    bound = build_dag("sensor_binds")
    reviewer("sensor_binds", lambda r: decide(get_store(), r.id, ALICE, "approve"))
    run = bound.test()
    assert run.state == "success", states(run)
    req = get_store().list_requests(RequestQuery(dag_id="sensor_binds", status="all"))[0]
    assert get_store().bound_inputs(req.id) == {"contact": {"to": "owner@shop.example"}}
    assert sensor_dags.RECEIVED["sensor_binds"] == sensor_dags.draft()

    unbound = build_dag("sensor_binds_missing")
    reviewer("sensor_binds_missing", lambda r: decide(get_store(), r.id, ALICE, "approve"))
    run = unbound.test()
    assert states(run)["send"] == "failed" and "sensor_binds_missing" not in sensor_dags.RECEIVED
    req = get_store().list_requests(RequestQuery(dag_id="sensor_binds_missing", status="all"))[0]
    [refused] = [e for e in get_store().history(req.id) if e.event == "bound_input_refused"]
    assert "did not bind: the approval does not cover it" in refused.detail["reason"]
