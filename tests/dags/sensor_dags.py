"""DAGs for tests/test_sensor.py (dag.test() needs them in the dags folder): step -> ApprovalSensor -> send."""

from __future__ import annotations

from typing import Any

from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG, task

from hitl import approved_output
from hitl.sensor import ApprovalSensor

RECEIVED: dict[str, Any] = {}


def draft() -> dict[str, str]:
    return {"from": "sam@acme.example", "to": "owner@shop.example", "subject": "Hello", "body": "Hi"}


def send(ti: Any) -> None:
    """A hand-written acting task: it takes the approved output from the decision store, not from XCom."""
    RECEIVED[ti.dag_id] = approved_output("draft__approval", step_id="draft")


for dag_id in ("sensor_edit", "sensor_reject", "sensor_retry", "sensor_expire"):
    with DAG(dag_id, schedule=None, catchup=False) as dag:
        step = PythonOperator(task_id="draft", python_callable=draft)
        gate = ApprovalSensor(
            task_id="draft__approval",
            step_id="draft",
            approvers=[{"userId": "alice"}],
            poll_interval=0.1,
            expire_after=2 if dag_id == "sensor_expire" else None,
        )
        step >> gate >> PythonOperator(task_id="send", python_callable=send)
    globals()[dag_id] = dag


with DAG("sensor_taskflow", schedule=None, catchup=False) as sensor_taskflow:

    @task
    def make_draft() -> dict[str, Any]:
        return {**draft(), "tags": ["a", "b"], "score": 0.5}

    @task
    def deliver(approved: dict[str, Any]) -> None:
        RECEIVED["sensor_taskflow"] = approved

    drafted = make_draft()
    review = ApprovalSensor(
        task_id="review", step_id="make_draft", approvers=[{"userId": "alice"}], output_kind="json", poll_interval=0.1
    )
    drafted >> review
    deliver(review.output)  # type: ignore[arg-type]


# Gate policies (tests/test_policy_gate.py): score -> draft -> gate with a policy reading the score -> send.
def score(dag_run: Any) -> dict[str, Any]:
    return {"confidence": float((dag_run.conf or {}).get("confidence", 0.5))}


CONFIDENT = {"path": "steps.score.output.confidence", "gte": 0.9}
POLICY_DAGS = {
    "policy_enforce": {"policy": {"mode": "enforce", "approveWhen": CONFIDENT}},
    "policy_shadow": {"policy": {"approveWhen": CONFIDENT}},
    "policy_reject": {"policy": {"mode": "enforce", "rejectWhen": {"path": "output.subject", "equals": "Hello"}}},
    "policy_sampled": {"policy": {"mode": "enforce", "approveWhen": CONFIDENT, "sample": 1}},
}
for dag_id, extra in POLICY_DAGS.items():
    with DAG(dag_id, schedule=None, catchup=False) as dag:
        scored = PythonOperator(task_id="score", python_callable=score)
        step = PythonOperator(task_id="draft", python_callable=draft)
        gate = ApprovalSensor(  # type: ignore[arg-type]
            task_id="draft__approval", step_id="draft", approvers=[{"userId": "alice"}], poll_interval=0.1, **extra
        )
        scored >> step >> gate >> PythonOperator(task_id="send", python_callable=send)
    globals()[dag_id] = dag


with DAG("sensor_reminded", schedule=None, catchup=False) as sensor_reminded:  # a time bound, and no monitor
    bounded_gate = ApprovalSensor(
        task_id="draft__approval",
        step_id="draft",
        approvers=[{"userId": "alice"}],
        poll_interval=0.1,
        remind_after=3600,
    )
    PythonOperator(task_id="draft", python_callable=draft) >> bounded_gate


# Bound inputs in a hand-written DAG (tests/test_sensor.py): send reads contact too, which the gate binds (or not).
def contact() -> dict[str, str]:
    return {"to": "owner@shop.example"}


def send_bound(ti: Any) -> None:
    RECEIVED[ti.dag_id] = approved_output("draft__approval", step_id="draft", binds=["contact"])


for dag_id, gate_binds in (("sensor_binds", ["contact"]), ("sensor_binds_missing", [])):
    with DAG(dag_id, schedule=None, catchup=False) as dag:
        who = PythonOperator(task_id="contact", python_callable=contact)
        step = PythonOperator(task_id="draft", python_callable=draft)
        gate = ApprovalSensor(
            task_id="draft__approval",
            step_id="draft",
            approvers=[{"userId": "alice"}],
            poll_interval=0.1,
            binds=gate_binds,
        )
        who >> step >> gate >> PythonOperator(task_id="send", python_callable=send_bound)
    globals()[dag_id] = dag
