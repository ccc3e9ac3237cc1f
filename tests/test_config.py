"""``hitl.config.conf_get`` reads what Airflow reads (env var, airflow.cfg) without importing Airflow."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CFG = """\
[api]
base_url = http://reviews.example:8080
secret_key = s3cret-from-the-cfg-file-0123456789
[hitl]
store_url = sqlite:///$HITL_TEST_DIR/from-cfg.db
poll_interval = 0.7
outbox_dir = ~/outbox-from-cfg
slack_channel =
specs_folder_cmd = echo /from/a/command
"""

PROBE = """
import json, sys
from hitl.config import conf_get
keys = [("api", "base_url"), ("api", "secret_key"), ("hitl", "store_url"), ("hitl", "poll_interval"),
        ("hitl", "outbox_dir"), ("hitl", "slack_channel"), ("hitl", "not_set"), ("hitl", "email_from")]
ours = {f"{s}.{k}": conf_get(s, k, "FALLBACK") for s, k in keys}
imported = "airflow.configuration" in sys.modules
cmd = conf_get("hitl", "specs_folder", "FALLBACK")  # a _cmd option: Airflow decides whether to run it
from airflow.configuration import conf
theirs = {f"{s}.{k}": conf.get(s, k, fallback="FALLBACK") or "FALLBACK" for s, k in keys}
their_cmd = conf.get("hitl", "specs_folder", fallback="FALLBACK")
print(json.dumps({"ours": ours, "theirs": theirs, "imported": imported, "cmd": [cmd, their_cmd]}))
"""


def _probe(tmp_path: Path, **env: str) -> dict:  # type: ignore[type-arg]
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    (home / "airflow.cfg").write_text(CFG)
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__")}
    clean.update(
        {
            "AIRFLOW_HOME": str(home),
            "HITL_TEST_DIR": str(tmp_path),
            "PYTHONPATH": str(REPO / "plugins"),
            "AIRFLOW__CORE__CONFIG_CMD_ALLOWED_LIST": "",
            **env,
        }
    )
    clean.pop("AIRFLOW_CONFIG", None)
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, env=clean, cwd=tmp_path, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_the_values_are_airflows_and_airflow_is_not_imported_for_them(tmp_path: Path) -> None:
    got = _probe(tmp_path)
    assert got["ours"] == got["theirs"]
    assert got["ours"]["hitl.store_url"] == f"sqlite:///{tmp_path}/from-cfg.db"  # env var in the value expanded
    assert got["ours"]["hitl.outbox_dir"] == str(Path.home() / "outbox-from-cfg")
    assert got["ours"]["hitl.slack_channel"] == "FALLBACK" and got["ours"]["hitl.not_set"] == "FALLBACK"
    assert got["imported"] is False
    assert got["cmd"][0] == got["cmd"][1]  # asked Airflow (which runs commands only for its sensitive options)


def test_an_env_var_wins_over_the_file(tmp_path: Path) -> None:
    got = _probe(tmp_path, AIRFLOW__HITL__POLL_INTERVAL="2.5", AIRFLOW__API__BASE_URL="http://env.example")
    assert got["ours"]["hitl.poll_interval"] == "2.5" == got["theirs"]["hitl.poll_interval"]
    assert got["ours"]["api.base_url"] == "http://env.example" == got["theirs"]["api.base_url"]
    assert got["imported"] is False


def test_a_secret_env_variant_is_left_to_airflow(tmp_path: Path) -> None:
    got = _probe(tmp_path, AIRFLOW__HITL__EMAIL_FROM_SECRET="hitl_email_from")
    assert got["ours"]["hitl.email_from"] == got["theirs"]["hitl.email_from"]
    assert got["imported"] is True


def test_the_airflow_defaults_it_knows_are_airflows() -> None:
    probe = (
        "import json; from airflow.configuration import conf; from hitl.config import AIRFLOW_DEFAULTS;"
        "print(json.dumps([[s, k, v, conf.get_default_value(s, k) or ''] for (s, k), v in AIRFLOW_DEFAULTS.items()]))"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__")}
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True)
    for section, key, ours, theirs in json.loads(out.stdout.strip().splitlines()[-1]):
        assert ours == theirs, f"[{section}] {key}: Airflow's default is {theirs!r}, hitl.config says {ours!r}"
