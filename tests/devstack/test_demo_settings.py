"""The demo: every port settable, the shell's AIRFLOW__* reported or passed on, a JWT secret Airflow takes."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

from hitl_devstack import JWT_SECRET_BYTES, AirflowStack

REPO = Path(__file__).resolve().parents[2]


def _demo() -> Any:
    spec = importlib.util.spec_from_file_location("demo_script", REPO / "scripts" / "demo.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_shells_airflow_settings_are_passed_on_or_named(tmp_path: Path) -> None:
    stack = AirflowStack(home=tmp_path, port=18080, worker_log_port=18793, trigger_log_port=18794)
    shell = {
        "AIRFLOW__CORE__PARALLELISM": "2",  # the demo sets 8: named as overridden
        "AIRFLOW__WEBSERVER__INSTANCE_NAME": "mine",  # the demo does not set it: passed on
        "PATH": "/usr/bin",
    }
    kept, overridden = _demo().shell_airflow_settings(shell, stack)
    assert kept == {"AIRFLOW__WEBSERVER__INSTANCE_NAME": "mine"}
    assert overridden == ["AIRFLOW__CORE__PARALLELISM"]
    env = stack.env()
    assert env["AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT"] == "18793"
    assert env["AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT"] == "18794"


def test_a_bad_port_is_refused_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HITL_MAIL_PORT", "smtp")
    with pytest.raises(SystemExit, match=r"HITL_MAIL_PORT='smtp' is not a port"):
        _demo()._port("HITL_MAIL_PORT", 0)
    monkeypatch.setenv("HITL_MAIL_PORT", "2525")
    assert _demo()._port("HITL_MAIL_PORT", 0) == 2525


def test_the_jwt_secret_is_as_long_as_hs512_wants_and_an_old_short_one_is_replaced(tmp_path: Path) -> None:
    stack = AirflowStack(home=tmp_path, port=18080)
    assert len(stack.env()["AIRFLOW__API_AUTH__JWT_SECRET"]) >= JWT_SECRET_BYTES
    (tmp_path / "stack-secrets.json").write_text(json.dumps({"jwt": "short", "api": "kept", "fernet": ""}))
    env = stack.env()
    assert len(env["AIRFLOW__API_AUTH__JWT_SECRET"]) >= JWT_SECRET_BYTES and env["AIRFLOW__API__SECRET_KEY"] == "kept"

    import warnings

    import jwt

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # PyJWT's InsecureKeyLengthWarning would fail here
        jwt.encode({"sub": "alice"}, env["AIRFLOW__API_AUTH__JWT_SECRET"], algorithm="HS512")
