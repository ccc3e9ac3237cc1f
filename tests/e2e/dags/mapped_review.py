"""For tests/e2e/test_mapped_gate_e2e.py: a gate inside an expanded task group, one review per item."""

from __future__ import annotations

from typing import Any

from airflow.sdk import DAG, task, task_group

from hitl.sensor import ApprovalSensor

with DAG("mapped_review", schedule=None, catchup=False) as mapped_review:

    @task
    def topics() -> list[str]:
        return ["bread", "cakes", "coffee"]

    @task_group
    def review_one(topic: str) -> None:
        @task
        def draft(topic: str) -> dict[str, str]:
            return {
                "from": "sam@bakery.example",
                "to": f"{topic}@shop.example",
                "subject": f"About our {topic}",
                "body": f"A note on {topic}.",
            }

        @task
        def publish(approved: dict[str, Any]) -> dict[str, Any]:
            return approved  # what the acting task received: the approved output of its own item

        drafted = draft(topic)
        gate = ApprovalSensor(
            task_id="draft__approval",
            step_id="review_one.draft",
            approvers=[{"userId": "alice"}],
            poll_interval=0.2,
        )
        drafted >> gate
        publish(gate.output)  # type: ignore[arg-type]

    review_one.expand(topic=topics())
