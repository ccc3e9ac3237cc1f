"""The local stack keeps its secrets private: home 0700; secrets, passwords, databases 0600. Starts no Airflow."""

from __future__ import annotations

import json
import os
import stat
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from hitl_devstack import AirflowStack, write_private


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def loose_umask() -> Iterator[None]:
    """The most permissive umask: what is private must be so by how it is created, not by luck."""
    old = os.umask(0)
    yield
    os.umask(old)


@pytest.mark.usefixtures("loose_umask")
def test_secrets_and_passwords_are_created_private_in_a_private_home(tmp_path: Path) -> None:
    stack = AirflowStack(home=tmp_path / "home")
    env = stack.env()  # writes stack-secrets.json, as every command the stack runs does
    stack.passwords()
    assert mode(stack.home) == 0o700
    assert mode(stack.home / "stack-secrets.json") == 0o600
    assert mode(stack.home / "passwords.json") == 0o600
    sec = json.loads((stack.home / "stack-secrets.json").read_text())
    assert env["AIRFLOW__API_AUTH__JWT_SECRET"] == sec["jwt"] and env["AIRFLOW__CORE__FERNET_KEY"] == sec["fernet"]
    assert set(json.loads((stack.home / "passwords.json").read_text())) == {"admin", "alice", "bob"}
    assert not [p.name for p in stack.home.iterdir() if p.name.endswith(".tmp")]  # no temporary file left


@pytest.mark.usefixtures("loose_umask")
def test_a_home_left_readable_by_an_older_version_is_tightened(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o755)
    os.chmod(home, 0o755)
    (home / "passwords.json").write_text(json.dumps({"admin": "kept"}))
    for name in ("stack-secrets.json", "airflow.db", "hitl.db", "hitl.db-wal"):
        (home / name).write_text("{}" if name.endswith(".json") else "")
    for path in home.iterdir():
        os.chmod(path, 0o644)
    stack = AirflowStack(home=home)
    stack.prepare_home()
    pw = stack.passwords()
    assert pw["admin"] == "kept" and {"alice", "bob"} <= set(pw)
    assert mode(home) == 0o700
    assert {p.name: mode(p) for p in home.iterdir()} == {
        name: 0o600 for name in ("passwords.json", "stack-secrets.json", "airflow.db", "hitl.db", "hitl.db-wal")
    }


@pytest.mark.usefixtures("loose_umask")
def test_write_private_replaces_a_readable_file_with_a_private_one(tmp_path: Path) -> None:
    target = tmp_path / "secret.json"
    target.write_text("old")
    os.chmod(target, 0o644)
    write_private(target, "new")
    assert target.read_text() == "new" and mode(target) == 0o600


@pytest.mark.usefixtures("loose_umask")
def test_what_the_stacks_commands_create_is_private(tmp_path: Path) -> None:
    """Airflow's components (db migrate, the scheduler, ...) run with umask 077: a database they create is 0600."""
    stack = AirflowStack(home=tmp_path / "home")
    stack.prepare_home()
    script = (
        "import os, sqlite3; sqlite3.connect(os.environ['AIRFLOW_HOME'] + '/airflow.db').execute('create table t (x)')"
    )
    stack.run(sys.executable, "-c", script)
    assert mode(stack.home / "airflow.db") == 0o600
    assert stack.run("/bin/sh", "-c", "umask").stdout.strip() == "0077"


def test_the_stack_allows_webresearch_on_loopback_and_the_demo_narrows_it(tmp_path: Path) -> None:
    assert AirflowStack(home=tmp_path / "a").env()["AIRFLOW__HITL__WEB_RESEARCH_ALLOW"] == "127.0.0.1"
    narrowed = AirflowStack(home=tmp_path / "b", web_research_allow="127.0.0.1:8765").env()
    assert narrowed["AIRFLOW__HITL__WEB_RESEARCH_ALLOW"] == "127.0.0.1:8765"
