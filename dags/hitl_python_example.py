"""A hand-written DAG with an approval gate: the Python API beside the YAML specs.

``ApprovalSensor`` gates any task; ``publish`` receives ``review.output``: the approved (maybe
edited) output, as the Python value ``draft_post`` returned, read from the decision store. If
someone marks ``review_post`` successful or writes its XCom without a recorded approval,
``publish`` fails with "no recorded approval ..." and does nothing.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from airflow.sdk import dag, task

from hitl import ApprovalSensor


@dag(
    schedule=None,
    start_date=datetime(2024, 1, 1, tzinfo=UTC),
    catchup=False,
    tags=["hitl", "example"],
    params={"topic": "our new sourdough"},
)
def hitl_python_example() -> None:
    @task
    def draft_post(params: dict[str, Any] | None = None) -> dict[str, Any]:
        topic = (params or {}).get("topic", "our news")
        return {"text": f"Fresh from the oven: {topic}. Come and try it this weekend!"}

    @task
    def publish(approved: dict[str, Any]) -> dict[str, Any]:
        # A real DAG would post it; the example returns what it would publish.
        return {"published": approved["text"], "length": len(approved["text"])}

    post = draft_post()
    review = ApprovalSensor(
        task_id="review_post", step_id="draft_post", approvers=[{"userId": "alice"}], approve_label="Publish"
    )
    post >> review
    publish(review.output)


hitl_python_example()
