"""The anchor: Airflow 3.3's own ApprovalOperator between the same two steps as benchmarks/specs/gate_latency.yaml."""

from __future__ import annotations

from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG


def draft() -> dict[str, str]:
    return {"from": "sam@acme.example", "to": "owner@shop.example", "subject": "Hello", "body": "Hi"}


with DAG("native_approval_latency", schedule=None, catchup=False, tags=["benchmark"]):
    step = PythonOperator(task_id="draft", python_callable=draft)
    gate = ApprovalOperator(task_id="approve", subject="Send email?", body="{{ ti.xcom_pull(task_ids='draft') }}")
    after = PythonOperator(task_id="send", python_callable=lambda: None)
    step >> gate >> after
