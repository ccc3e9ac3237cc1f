"""A mapped gate reviews its own item (issue 18, item 4), on a real Airflow.

An ``ApprovalSensor`` inside an expanded task group (``tests/e2e/dags/mapped_review.py``, three items): each item's
request holds that item's draft only, and the acting task after an approved item receives that item's approved
output (as edited), never the list of every item's draft. A rejected item's next task is skipped; the others run.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from helpers import wait_for
from hitl.store import Store
from hitl_devstack import REPO, AirflowStack, free_port

pytestmark = pytest.mark.e2e
DAG = "mapped_review"
GATE = "review_one.draft__approval"
ITEMS = ["bread", "cakes", "coffee"]


@pytest.fixture(scope="module")
def mapped_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AirflowStack]:
    home: Path = tmp_path_factory.mktemp("airflow-mapped")
    dags = home / "dags"
    dags.mkdir()
    shutil.copy(REPO / "dags" / "hitl_workflows.py", dags)
    shutil.copy(Path(__file__).parent / "dags" / "mapped_review.py", dags)
    specs = home / "workflow_specs"
    specs.mkdir()
    stack = AirflowStack(
        home=home,
        port=free_port(),
        dags_folder=dags,
        specs_folder=specs,
        extra_env={"AIRFLOW__HITL__POLL_INTERVAL": "0.5"},
    )
    stack.setup()
    stack.start()
    try:
        stack.wait_healthy()
        stack.wait_for_dag(DAG)
        yield stack
    finally:
        stack.stop()


def cli(stack: AirflowStack, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "hitl", "approvals", *args], env=stack.env(), capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def test_each_item_of_a_mapped_gate_reviews_and_receives_its_own_output(mapped_stack: AirflowStack) -> None:
    stack = mapped_stack
    store = Store(f"sqlite:///{stack.home / 'hitl.db'}")  # the stack's default store
    run_id = stack.trigger(DAG, {})

    def parked() -> dict[int, Any] | None:
        reqs = {i: store.current_for_gate(DAG, run_id, GATE, i) for i in range(len(ITEMS))}
        return reqs if all(r is not None and r.status == "pending" for r in reqs.values()) else None

    reqs = wait_for("every item's gate parked", parked, 300)
    for i, topic in enumerate(ITEMS):
        assert reqs[i].map_index == i
        assert reqs[i].output == {
            "from": "sam@bakery.example",
            "to": f"{topic}@shop.example",
            "subject": f"About our {topic}",
            "body": f"A note on {topic}.",
        }, reqs[i].output

    edited = {**reqs[1].output, "subject": "Cakes, edited"}
    cli(stack, "approve", str(reqs[0].id), "--user", "alice")
    cli(stack, "approve", str(reqs[1].id), "--user", "alice", "--output-json", json.dumps(edited))
    cli(stack, "reject", str(reqs[2].id), "--user", "alice", "--reason", "Not this one")
    assert stack.wait_run(DAG, run_id, timeout=300) == "success"

    tis = {
        ti["map_index"]: ti
        for ti in stack.api("GET", f"/api/v2/dags/{DAG}/dagRuns/{run_id}/taskInstances?task_id=review_one.publish")[
            "task_instances"
        ]
        if ti["task_id"] == "review_one.publish"
    }
    assert {i: tis[i]["state"] for i in range(3)} == {0: "success", 1: "success", 2: "skipped"}

    def received(i: int) -> Any:
        entry = stack.api(
            "GET",
            f"/api/v2/dags/{DAG}/dagRuns/{run_id}/taskInstances/review_one.publish/xcomEntries/return_value"
            f"?map_index={i}&deserialize=true",
        )
        value = entry["value"]
        return json.loads(value) if isinstance(value, str) else value

    assert received(0) == reqs[0].output
    assert received(1) == edited
