"""Every ``[hitl]`` setting is declared once (``hitl.settings``), read through it, and known to Airflow."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from hitl import settings

PLUGINS = Path(__file__).resolve().parents[1] / "plugins" / "hitl"
READ = re.compile(r"""\b(?:setting|flag|number)\(\s*["']([a-z_]+)["']""")


def _sources() -> list[tuple[Path, str]]:
    return [(p, p.read_text()) for p in PLUGINS.rglob("*.py")]


def test_no_hitl_option_is_read_around_the_declarations() -> None:
    for path, text in _sources():
        assert 'conf_get("hitl"' not in text and "conf_get('hitl'" not in text, path


def test_every_setting_read_is_declared_and_every_declared_one_is_read() -> None:
    read = {key for _, text in _sources() for key in READ.findall(text)}
    read |= {"end_gate_from_decider"}  # gate_end.DirectRoute.setting names it as a value
    assert read <= set(settings.BY_KEY), read - set(settings.BY_KEY)
    assert set(settings.BY_KEY) <= read, set(settings.BY_KEY) - read  # nothing declared that nothing reads


def test_an_undeclared_key_is_an_error_not_a_silent_default() -> None:
    with pytest.raises(KeyError):
        settings.setting("poll_intervall")


def test_defaults_and_bad_numbers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRFLOW__HITL__MONITOR_INTERVAL_SECONDS", raising=False)
    assert settings.number("monitor_interval_seconds") == 300.0
    monkeypatch.setenv("AIRFLOW__HITL__MONITOR_INTERVAL_SECONDS", "five")
    assert settings.number("monitor_interval_seconds") == 300.0  # a typo falls back, never a crash
    monkeypatch.setenv("AIRFLOW__HITL__END_GATE_FROM_DECIDER", "off")
    assert settings.flag("end_gate_from_decider") is False


def test_provider_info_is_what_airflow_validates() -> None:
    import jsonschema
    from airflow import __file__ as airflow_init

    schema = json.loads((Path(airflow_init).parent / "provider_info.schema.json").read_text())
    info = settings.provider_info()
    jsonschema.validate(info, schema)
    options = info["config"]["hitl"]["options"]
    assert options["poll_interval"]["default"] == "0.5" and options["slack_signing_secret"]["sensitive"] is True


def test_airflow_config_shows_the_declared_defaults(tmp_path: Path) -> None:
    """Through the ``apache_airflow_provider`` entry point: ``airflow config`` knows [hitl] with no airflow.cfg."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__HITL__")}
    env["AIRFLOW_HOME"] = str(tmp_path)
    airflow = [sys.executable, "-m", "airflow", "config"]
    got = subprocess.run([*airflow, "get-value", "hitl", "monitor_interval_seconds"], env=env, capture_output=True)
    assert got.returncode == 0 and got.stdout.decode().strip() == "300", got.stderr.decode()[-2000:]
    listed = subprocess.run(
        [*airflow, "list", "--section", "hitl", "--include-descriptions"], env=env, capture_output=True, text=True
    )
    assert "# Slack's signing secret: enables interactive Slack buttons" in listed.stdout, listed.stdout[-2000:]
