"""docker-compose.yaml's topology: the file checked, and its Airflow services run as local processes.

PostgreSQL (``HITL_TOPOLOGY_POSTGRES``, default the local server's ``postgres`` user) and Redis
(``HITL_TOPOLOGY_REDIS``, default 127.0.0.1:6379) must be running; the stack creates and drops its own
databases.
"""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from hitl_devstack import REPO, free_port, serve_demo_site

PG_ADMIN = os.environ.get("HITL_TOPOLOGY_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS = os.environ.get("HITL_TOPOLOGY_REDIS", "127.0.0.1:6379")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "topology: runs docker-compose.yaml's Airflow services (CeleryExecutor, PostgreSQL, Redis) as local processes",
    )


def _reachable(hostport: str) -> bool:
    host, _, port = hostport.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=3):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def topology_site() -> Iterator[str]:
    server = serve_demo_site()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


@pytest.fixture(scope="session")
def topology(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    pytest.importorskip("airflow.providers.celery", reason="needs apache-airflow-providers-celery")
    from urllib.parse import urlsplit

    pg = urlsplit(PG_ADMIN)
    if not _reachable(f"{pg.hostname}:{pg.port or 5432}"):
        pytest.fail(f"PostgreSQL is not reachable at {PG_ADMIN} (HITL_TOPOLOGY_POSTGRES)")
    if not _reachable(REDIS):
        pytest.fail(f"Redis is not reachable at {REDIS} (HITL_TOPOLOGY_REDIS)")
    from hitl_devstack.compose import API_SERVICE, ComposeStack

    home: Path = tmp_path_factory.mktemp("airflow-topology")
    specs = home / "workflow_specs"  # the shipped example plus the topology test's light workflow
    shutil.copytree(REPO / "workflow_specs", specs)
    shutil.copy(Path(__file__).parent / "specs" / "topology_gate.yaml", specs)
    stack = ComposeStack(
        home=home,
        port=free_port(),
        specs_folder=specs,
        postgres_admin_url=PG_ADMIN,
        postgres_host=f"{pg.hostname}:{pg.port or 5432}",
        postgres_user=pg.username or "postgres",
        redis_host=REDIS,
        worker_concurrency=4,
        extra_env={
            "AIRFLOW__HITL__POLL_INTERVAL": "0.5",
            # Light on a 2-core machine: fewer re-parses, small pools.
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "300",
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "300",
            "AIRFLOW__CORE__PARALLELISM": "16",
            "AIRFLOW__CORE__MAX_ACTIVE_RUNS_PER_DAG": "64",
            "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": "64",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
            # A killed triggerer's triggers are adopted once its heartbeat is this old (default 30 s).
            "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "2",
            "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": "10",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        },
        # Decisions reach the gates through the trigger only: the deciding process does not end them.
        service_env={API_SERVICE: {"AIRFLOW__HITL__END_GATE_FROM_DECIDER": "false"}},
    )
    try:
        stack.setup()
        stack.start()
        stack.wait_healthy()
        stack.wait_for_dag("local_business_outreach")
        stack.wait_for_dag("topology_gate")
        yield stack
    finally:
        stack.stop()
