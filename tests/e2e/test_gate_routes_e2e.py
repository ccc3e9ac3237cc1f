"""Two routes ending one gate at once never harm the triggerer (issue 18, item 5).

A real Airflow (api-server, scheduler, dag-processor, triggerer; LocalExecutor) on PostgreSQL, the decision
store on PostgreSQL too, default settings: the deciding process ends a gate at once (``DirectRoute``) while the
gate's trigger may end it at the same moment (``Trigger.submit_event``). Needs HITL_TEST_POSTGRES_URL.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from helpers import wait_for
from hitl.store import Store
from hitl.store.engine import sync_url
from hitl_devstack import REPO, AirflowStack, free_port, fresh_postgres_database

pytestmark = pytest.mark.e2e
DAG = "topology_gate"  # two cheap steps and a gate between them
GATE = "draft__approval"
RUNS = 50
DOUBLE_END = Path(__file__).with_name("double_end.py")


class PgStack:
    def __init__(self, stack: AirflowStack, airflow_url: str, store_url: str) -> None:
        self.stack, self.airflow_url, self.store = stack, airflow_url, Store(store_url)

    def rows(self, sql: str, *params: object) -> list[tuple[Any, ...]]:
        import psycopg2

        conn = psycopg2.connect(self.airflow_url)
        try:
            with conn.cursor() as cur:
                cur.execute(sql, params)
                return list(cur.fetchall())
        finally:
            conn.close()

    def parked(self, run_ids: list[str]) -> dict[str, Any] | None:
        """The pending request of each run's gate once every one of them is deferred, else None."""
        deferred = {
            r
            for (r,) in self.rows(
                "select run_id from task_instance where dag_id=%s and task_id=%s and state='deferred'", DAG, GATE
            )
        }
        if not set(run_ids) <= deferred:
            return None
        reqs = {r: self.store.current_for_gate(DAG, r, GATE) for r in run_ids}
        if any(q is None or q.status != "pending" for q in reqs.values()):
            return None
        return reqs

    def run_states(self, run_ids: list[str]) -> dict[str, str]:
        states = dict(self.rows("select run_id, state from dag_run where dag_id=%s", DAG))
        return {r: str(states.get(r)) for r in run_ids}

    def all_succeeded(self, run_ids: list[str]) -> Callable[[], bool]:
        def check() -> bool:
            states = self.run_states(run_ids)
            failed = [r for r, s in states.items() if s == "failed"]
            assert not failed, f"failed runs: {failed}"
            return all(s == "success" for s in states.values())

        return check

    def triggerer_alive(self) -> bool:
        proc = self.stack.procs.get("triggerer")
        return proc is not None and proc.poll() is None

    def triggerer_log(self) -> str:
        return (self.stack.home / "logs" / "triggerer.out").read_text(errors="replace")


@pytest.fixture(scope="module")
def pg_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PgStack]:
    import os

    server = os.environ.get("HITL_TEST_POSTGRES_URL")
    if not server:
        pytest.skip("needs HITL_TEST_POSTGRES_URL (e.g. postgresql://postgres@127.0.0.1:5432/test)")
    home: Path = tmp_path_factory.mktemp("airflow-routes")
    specs = home / "workflow_specs"
    specs.mkdir()
    shutil.copy(REPO / "tests" / "topology" / "specs" / "topology_gate.yaml", specs)
    with (
        fresh_postgres_database(server, "hitl_routes_airflow") as airflow_url,
        fresh_postgres_database(server, "hitl_routes_store") as store_url,
    ):
        stack = AirflowStack(
            home=home,
            port=free_port(),
            specs_folder=specs,
            extra_env={
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": str(sync_url(airflow_url).render_as_string(hide_password=False)),
                "AIRFLOW__HITL__STORE_URL": store_url,
                "AIRFLOW__HITL__POLL_INTERVAL": "0.5",
                "AIRFLOW__CORE__MAX_ACTIVE_RUNS_PER_DAG": "64",
                "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": "64",
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "300",
                "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
            },
        )
        pg = PgStack(stack, airflow_url, store_url)
        try:
            stack.setup()
            stack.start()
            stack.wait_healthy()
            stack.wait_for_dag(DAG)
            yield pg
        finally:
            stack.stop()
            pg.store.engine.dispose()


def test_both_routes_ending_one_gate_at_once_harm_nothing(pg_stack: PgStack) -> None:
    """The forced race: the trigger's ``submit_event`` and ``DirectRoute`` on one gate, their writes interleaved."""
    stack = pg_stack.stack
    run_id = stack.trigger(DAG, {})
    req = wait_for("the gate parked", lambda: pg_stack.parked([run_id]), 240)[run_id]
    # Nothing else may end this gate while the two routes race: the triggerer stops (it is restarted below).
    stack.kill("triggerer", signal.SIGTERM)
    done = stack.run(sys.executable, str(DOUBLE_END), str(req.id), timeout=600)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    print(json.dumps({k: v for k, v in result.items() if k not in ("approved_output",)}, indent=1))
    assert result["timeouts"] == [], result  # every forced step of the interleaving happened
    assert "direct route commits while the trigger's route waits on a lock" in result["waits"]
    assert result["trigger"] == {"returned": None}, result["trigger"]  # submit_event raised nothing
    assert result["direct"] == {"returned": True}, result["direct"]  # the direct route ended it
    assert result["state"] == "success"
    assert result["return_value"] == req.output == result["approved_output"]
    assert result["decision"]["status"] == "approved" and result["decision"]["request_id"] == req.id

    stack.start(("triggerer",))
    wait_for(f"run {run_id} finished", pg_stack.all_succeeded([run_id]), 240, every=1)
    assert stack.task_state(DAG, run_id, "publish") == "success"


def decide(base_url: str, token: str, request_id: int) -> dict[str, Any]:
    req = urllib.request.Request(
        f"{base_url}/pluginsv2/hitl/api/requests/{request_id}/decision",
        data=json.dumps({"action": "approve"}).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
    )
    with urllib.request.urlopen(req, timeout=120) as resp:
        assert resp.status == 200
        return dict(json.loads(resp.read()))


def test_fifty_decisions_at_once_end_every_gate_and_the_triggerer_lives(pg_stack: PgStack) -> None:
    stack = pg_stack.stack
    with ThreadPoolExecutor(4) as pool:
        run_ids = list(pool.map(lambda i: stack.trigger(DAG, {}, run_id=f"routes_{i:02d}"), range(RUNS)))
    requests = wait_for(f"{RUNS} gates parked", lambda: pg_stack.parked(run_ids), 900, every=2)
    assert pg_stack.triggerer_alive()

    token = stack.token("alice")
    with ThreadPoolExecutor(RUNS) as pool:  # every decision in flight at once
        answers = list(pool.map(lambda r: decide(stack.base_url, token, requests[r].id), run_ids))
    wait_for(f"all {RUNS} runs succeeded", pg_stack.all_succeeded(run_ids), 600, every=2)
    for r in run_ids:
        closed = pg_stack.store.get(requests[r].id)
        assert closed is not None and closed.status == "approved"
    assert pg_stack.triggerer_alive(), pg_stack.triggerer_log()[-3000:]
    log = pg_stack.triggerer_log()
    assert "UniqueViolation" not in log and "Trigger runner process has died" not in log, log[-3000:]
    print(f"\n{sum('ended at once' in json.dumps(a) for a in answers)} of {RUNS} gates ended by the deciding process")

    # The trigger still delivers: a decision that only the trigger may deliver ends its gate.
    last = stack.trigger(DAG, {}, run_id="routes_trigger_only")
    req = wait_for("the last gate parked", lambda: pg_stack.parked([last]), 240)[last]
    cli = subprocess.run(
        [sys.executable, "-m", "hitl", "approvals", "approve", str(req.id), "--user", "alice"],
        env={**stack.env(), "AIRFLOW__HITL__END_GATE_FROM_DECIDER": "false"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert cli.returncode == 0, cli.stdout + cli.stderr
    assert "its trigger ends the gate task" in cli.stdout + cli.stderr
    wait_for("the trigger ended the last gate", pg_stack.all_succeeded([last]), 240, every=1)
    assert pg_stack.triggerer_alive()
