"""Shared fixtures. Airflow reads its settings at import, so the test AIRFLOW_HOME is set before anything imports it."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from helpers import FakeSlack

REPO = Path(__file__).resolve().parents[1]
_HOME = Path(tempfile.mkdtemp(prefix="hitl-test-airflow-"))
for key in [k for k in os.environ if k.startswith("AIRFLOW__")]:
    del os.environ[key]
os.environ.update(
    {
        "AIRFLOW_HOME": str(_HOME),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "tests" / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__HITL__STORE_URL": f"sqlite:///{_HOME / 'hitl.db'}",
        "AIRFLOW__HITL__SPECS_FOLDER": str(REPO / "workflow_specs"),
        "AIRFLOW__HITL__POLL_INTERVAL": "0.2",
        "AIRFLOW__HITL__DIRECTORY_REFRESH": "0",  # no background sync threads; tests sync the directory themselves
    }
)
if os.environ.get("HITL_TEST_FROM_INSTALL") == "1":
    # `make wheel-e2e`: hitl comes from the installed wheel; only the dev-stack harness comes from the checkout.
    _HARNESS = _HOME / "harness"
    _HARNESS.mkdir()
    (_HARNESS / "hitl_devstack").symlink_to(REPO / "plugins" / "hitl_devstack")
    (_HOME / "plugins").mkdir()
    os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(_HOME / "plugins")
    sys.path[:] = [p for p in sys.path if Path(p).resolve() != (REPO / "plugins").resolve()]
    sys.path.insert(0, str(_HARNESS))
else:
    sys.path.insert(0, str(REPO / "plugins"))
sys.path.insert(0, str(REPO / "tests" / "dags"))

PG_URL = os.environ.get("HITL_TEST_POSTGRES_URL")


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """Airflow's own metadata DB (SQLite), migrated once per session: dag.test() needs it."""
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"], check=True, capture_output=True, env=os.environ.copy()
    )
    from hitl.store import get_store

    get_store().upgrade()
    return _HOME


def _sqlite_store(tmp_path: Path):  # type: ignore[no-untyped-def]
    from hitl.store import Store

    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    store.upgrade()
    return store


@pytest.fixture
def sqlite_store(tmp_path: Path):  # type: ignore[no-untyped-def]
    return _sqlite_store(tmp_path)


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for one test (needs HITL_TEST_POSTGRES_URL; CI sets it)."""
    if not PG_URL:
        pytest.skip("PostgreSQL tests need HITL_TEST_POSTGRES_URL (e.g. postgresql://postgres@127.0.0.1:5432/test)")
    from hitl_devstack import fresh_postgres_database

    with fresh_postgres_database(PG_URL, "hitl_test") as url:
        try:
            yield url
        finally:
            from hitl.store import _store_for

            _store_for.cache_clear()


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path):  # type: ignore[no-untyped-def]
    """The decision store on SQLite, and on PostgreSQL where one is given."""
    if request.param == "sqlite":
        yield _sqlite_store(tmp_path)
        return
    from hitl.store import Store

    url = request.getfixturevalue("pg_url")
    s = Store(url)
    s.upgrade()
    yield s
    s.engine.dispose()


class SmtpInbox:
    """What a real SMTP server on loopback (aiosmtpd) received."""

    def __init__(self) -> None:
        self.messages: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        import email
        from email import policy

        self.messages.append(email.message_from_bytes(envelope.content, policy=policy.default))
        return "250 OK"


@pytest.fixture
def smtp_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[SmtpInbox]:
    """An SMTP server on loopback, reachable as Airflow connections ``smtp_test`` and ``smtp_default``."""
    import json

    from aiosmtpd.controller import Controller

    from hitl_devstack import free_port

    inbox = SmtpInbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    conn = json.dumps(
        {"conn_type": "smtp", "host": "127.0.0.1", "port": port, "extra": {"disable_ssl": True, "disable_tls": True}}
    )
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_TEST", conn)
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", conn)
    yield inbox
    controller.stop()


@pytest.fixture
def fake_slack(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeSlack]:
    """Airflow connections ``slack_hook`` (incoming webhook) and ``slack_bot`` (bot token) pointing at FakeSlack."""
    import json

    from helpers import FakeSlack

    slack = FakeSlack()
    monkeypatch.setenv(
        "AIRFLOW_CONN_SLACK_HOOK",
        json.dumps({"conn_type": "slackwebhook", "password": f"{slack.url}/services/T000/B000/XXXX"}),
    )
    monkeypatch.setenv(
        "AIRFLOW_CONN_SLACK_BOT",
        json.dumps({"conn_type": "slack", "password": "xoxb-test-token", "extra": {"base_url": f"{slack.url}/api/"}}),
    )
    yield slack
    slack.server.close()


@pytest.fixture
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """The test must never reach past this machine, whatever the code under test does."""
    import ipaddress
    import socket

    real_connect = socket.socket.connect

    def connect(self: socket.socket, address: Any) -> Any:
        if self.family in (socket.AF_INET, socket.AF_INET6):
            ip = ipaddress.ip_address(str(address[0]).split("%")[0])
            if not ip.is_loopback:
                raise AssertionError(f"a test tried to connect to {address}")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)


@pytest.fixture
def configured(monkeypatch: pytest.MonkeyPatch, sqlite_store: Any) -> Any:
    """The process settings pointing at a fresh store, with a link secret and a public base URL."""
    from hitl.store import _store_for

    monkeypatch.setenv("AIRFLOW__HITL__STORE_URL", sqlite_store.url)
    monkeypatch.setenv("AIRFLOW__HITL__SECRET_KEY", "test-link-secret")
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "http://airflow.example:8080")
    _store_for.cache_clear()
    yield sqlite_store
    _store_for.cache_clear()
