"""The review page's "why" panel: what fed the gated step, who started the run, what ran after the gate.

Read from Airflow's database through ``AirflowReads`` (the api-server may; task code may not) and from the store,
and only what the signed-in user may read of the request's DAG in Airflow (``dag_access``).
"""

from __future__ import annotations

import logging
from email.parser import BytesHeaderParser
from email.policy import default as email_policy
from pathlib import Path
from typing import Any

from hitl.store import ApprovalRequest
from hitl.views import render
from hitl.views.limits import open_store

log = logging.getLogger(__name__)
SENT_HEADERS = ("From", "To", "Cc", "Reply-To", "Subject", "Date", "Message-ID")
MAX_HEADER_BYTES = 64 << 10


class AirflowReads:
    """The review page's reads of Airflow's database (the api-server may read it; task code may not).

    One object, so the page can be given another (``PageRoutes.airflow_reads``) and these reads are tested once
    against a real DAG run (``tests/e2e``), not stood in for function by function.
    """

    def graph(self, req: ApprovalRequest) -> tuple[list[str], list[str]]:
        """(tasks right before the gated step, tasks right after the gate), from Airflow's serialized DAG."""
        from airflow.models.serialized_dag import SerializedDagModel

        dag = SerializedDagModel.get_dag(req.dag_id)
        if dag is None:
            return [], []
        before = sorted(dag.get_task(req.step_id).upstream_task_ids) if dag.has_task(req.step_id) else []
        after = sorted(dag.get_task(req.gate_task_id).downstream_task_ids) if dag.has_task(req.gate_task_id) else []
        return before, after

    def xcom_outputs(self, req: ApprovalRequest, task_ids: list[str], key: str = "return_value") -> dict[str, Any]:
        """The return values (or XComs of ``key``) of these tasks in the request's run (Airflow's database)."""
        if not task_ids:
            return {}
        from airflow.models.xcom import XComModel
        from airflow.utils.session import create_session

        with create_session() as session:
            query = XComModel.get_many(
                run_id=req.run_id, key=key, task_ids=task_ids, dag_ids=req.dag_id, map_indexes=req.map_index
            )
            rows: list[Any] = list(session.scalars(query))
            return {row.task_id: XComModel.deserialize_value(row) for row in rows}

    def dag_run(self, req: ApprovalRequest) -> dict[str, Any]:
        from airflow.models.dagrun import DagRun
        from airflow.utils.session import create_session
        from sqlalchemy import select

        with create_session() as session:
            run = session.scalar(select(DagRun).where(DagRun.dag_id == req.dag_id, DagRun.run_id == req.run_id))
            if run is None:
                return {}
            return {
                "triggered_by": run.triggering_user_name,
                "started": run.start_date or run.queued_at,
                "run_type": str(run.run_type.value if hasattr(run.run_type, "value") else run.run_type),
                "state": str(run.state.value if hasattr(run.state, "value") else run.state),
            }


def sent_headers(detail: dict[str, Any]) -> list[tuple[str, str]]:
    """The headers of a message the email step recorded: its ``headers``, else those of its outbox file."""
    recorded = detail.get("headers")
    if isinstance(recorded, dict):
        given = {str(k).lower(): str(v) for k, v in recorded.items()}
        return [(name, given[name.lower()]) for name in SENT_HEADERS if name.lower() in given]
    path = detail.get("path")
    if not isinstance(path, str):
        return []
    from hitl.config import load_settings

    outbox = load_settings().outbox_dir.resolve()
    file = Path(path).resolve()
    if outbox not in file.parents or not file.is_file():
        return []
    with file.open("rb") as fh:
        message = BytesHeaderParser(policy=email_policy).parsebytes(fh.read(MAX_HEADER_BYTES))
    return [(name, str(message[name])) for name in SENT_HEADERS if message[name] is not None]


def side_effects(req: ApprovalRequest, tasks: list[str]) -> list[dict[str, Any]]:
    """What the steps after the gate did at most once (the email step records each message it sent)."""
    from hitl.steps.email import sent_key

    store = open_store()
    done = []
    for task in tasks:
        key = sent_key(req.dag_id, req.run_id, task, req.map_index)
        recorded = store.side_effect(key)
        if recorded is None:
            continue
        status, detail = recorded
        headers = sent_headers(detail) if status == "done" else []
        if not headers and status == "done":
            headers = [
                (name.title().replace("_", "-"), str(detail[name]))
                for name in ("to", "subject", "message_id")
                if detail.get(name)
            ]
        if status == "done" and detail.get("gmail_id"):  # Gmail's own id of the message, to find it in Sent
            headers = [*headers, ("Gmail message id", str(detail["gmail_id"]))]
        done.append({"task": task, "status": status, "detail": detail, "headers": headers})
    return done


OUTPUTS_HIDDEN = "you may not see this DAG's task outputs"


def dag_access(dag_id: str, user: Any) -> dict[str, bool]:
    """What ``user`` may read of DAG ``dag_id`` in Airflow, asked of Airflow's auth manager (FAB roles, DAG
    access control, SimpleAuthManager, any other): ``outputs`` (its XComs) and ``runs`` (its runs' details).

    Reading Approvals is not reading the DAG: the review page shows a request's upstream outputs and run
    details only to a user Airflow would show them to. No user, or an auth manager that fails: nothing.
    """
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails

    access = {"outputs": False, "runs": False}
    if user is None:
        return access
    manager = get_auth_manager()
    for name, entity in (("outputs", DagAccessEntity.XCOM), ("runs", DagAccessEntity.RUN)):
        try:
            access[name] = bool(
                manager.is_authorized_dag(method="GET", access_entity=entity, details=DagDetails(id=dag_id), user=user)
            )
        except Exception as exc:  # an auth manager that cannot say: not allowed
            log.info("hitl: could not check %s access to DAG %s: %s", name, dag_id, type(exc).__name__)
    return access


def run_facts(req: ApprovalRequest, reads: AirflowReads, user: Any) -> dict[str, Any]:
    """Why and what: the outputs that fed the gated step, who started the run and when, what ran after the gate.

    Read from Airflow's database (the api-server may; task code may not) and the store, and only what the
    signed-in user may read of the request's DAG in Airflow (``dag_access``): otherwise ``outputs_hidden``
    says why they are not shown. Best effort: whatever cannot be read is left out, the page still renders.
    """
    facts: dict[str, Any] = {"inputs": [], "done": [], "run": {}, "after": [], "outputs_hidden": "", "model": None}
    try:
        access = dag_access(req.dag_id, user)
    except Exception as exc:  # no auth manager in this process: show nothing of the DAG
        log.info("hitl: no DAG access check for request %s: %s", req.id, exc)
        access = {"outputs": False, "runs": False}
    if access["runs"]:
        try:
            facts["run"] = reads.dag_run(req)
        except Exception as exc:
            log.debug("hitl: no run details for request %s: %s", req.id, exc)
    if not access["outputs"]:
        facts["outputs_hidden"] = OUTPUTS_HIDDEN
        return facts
    try:
        before, after = reads.graph(req)
        facts["after"] = after
        outputs = reads.xcom_outputs(req, before)
        facts["inputs"] = [
            {"step": task, "output": outputs[task], "rows": render.context_fields(outputs[task])}
            for task in before
            if task in outputs
        ]
        facts["done"] = side_effects(req, after)
    except Exception as exc:
        log.debug("hitl: no step context for request %s: %s", req.id, exc)
    try:  # an llm step's own provenance: connection, model, rendered prompt, tokens, time (never the key)
        from hitl.steps.llm import PROVENANCE_KEY

        fed = reads.xcom_outputs(req, [req.step_id], key=PROVENANCE_KEY).get(req.step_id)
        facts["model"] = fed if isinstance(fed, dict) else None
    except Exception as exc:
        log.debug("hitl: no model provenance for request %s: %s", req.id, exc)
    return facts
