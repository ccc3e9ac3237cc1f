"""A real Airflow (api-server, scheduler, dag-processor, triggerer; LocalExecutor; SQLite) for the end-to-end tests."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from hitl_devstack import REPO, AirflowStack, free_port, serve_demo_site


@pytest.fixture(scope="session")
def demo_site() -> Iterator[str]:
    server = serve_demo_site()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


@pytest.fixture(scope="session", autouse=True)
def _hitl_from_the_right_place() -> None:
    """Under `make wheel-e2e` every test here must exercise the installed wheel, never the checkout."""
    import os

    import hitl

    if os.environ.get("HITL_TEST_FROM_INSTALL") == "1":
        assert "site-packages" in str(hitl.__file__), hitl.__file__


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AirflowStack]:
    home: Path = tmp_path_factory.mktemp("airflow-e2e")
    specs = home / "workflow_specs"  # the shipped examples plus the e2e-only specs
    shutil.copytree(REPO / "workflow_specs", specs)
    for extra in (REPO / "tests" / "specs" / "e2e").glob("*.yaml"):
        shutil.copy(extra, specs)
    s = AirflowStack(home=home, port=free_port(), specs_folder=specs, extra_env={"AIRFLOW__HITL__POLL_INTERVAL": "0.5"})
    s.setup()
    s.start()
    try:
        s.wait_healthy()
        s.wait_for_dag("local_business_outreach")
        yield s
    finally:
        s.stop()
