"""DAGs for tests/test_sensor.py (dag.test() needs them in the dags folder): step -> ApprovalSensor -> send."""

from __future__ import annotations

from typing import Any

from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG

from hitl.sensor import ApprovalSensor
from hitl.steps.operator import pull_output

RECEIVED: dict[str, Any] = {}


def draft() -> dict[str, str]:
    return {"from": "sam@acme.example", "to": "owner@shop.example", "subject": "Hello", "body": "Hi"}


def send(ti: Any) -> None:
    RECEIVED[ti.dag_id] = pull_output(ti, "draft__approval")


for dag_id in ("sensor_edit", "sensor_reject", "sensor_retry"):
    with DAG(dag_id, schedule=None, catchup=False) as dag:
        step = PythonOperator(task_id="draft", python_callable=draft)
        gate = ApprovalSensor(
            task_id="draft__approval", step_id="draft", approvers=[{"userId": "alice"}], poll_interval=0.1
        )
        step >> gate >> PythonOperator(task_id="send", python_callable=send)
    globals()[dag_id] = dag
