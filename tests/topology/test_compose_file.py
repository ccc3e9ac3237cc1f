"""docker-compose.yaml's shape: checked by `docker-compose config` (the Debian package, no daemon needed),
and the same structure by PyYAML in any case."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from hitl_devstack import REPO
from hitl_devstack.compose import ENV_KEYS, INIT_SERVICE, ComposeError, command, environment, generate_env, load

COMPOSE = REPO / "docker-compose.yaml"
AIRFLOW_SERVICES = (
    "airflow-api-server",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-worker",
    "airflow-triggerer",
)


def env_example() -> dict[str, str]:
    lines = (REPO / ".env.example").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def check_structure(spec: dict[str, Any]) -> None:
    services = spec["services"]
    assert {"postgres", "redis", INIT_SERVICE, *AIRFLOW_SERVICES} <= set(services)
    init = services[INIT_SERVICE]
    script = " ".join(command(init))
    assert "airflow db migrate" in script and "python -m hitl db upgrade" in script
    assert "set -euo pipefail" in script and "|| true" not in script
    assert init.get("restart") == "no"
    for name in AIRFLOW_SERVICES:
        svc = services[name]
        deps = svc["depends_on"]
        assert deps[INIT_SERVICE]["condition"] == "service_completed_successfully", name
        assert deps["postgres"]["condition"] == "service_healthy", name
        env = environment(svc)
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name
        assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg2://"), name
        assert "@postgres:5432/airflow" in env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"], name
        assert env["AIRFLOW__HITL__STORE_URL"].startswith("postgresql://") and env["AIRFLOW__HITL__STORE_URL"].endswith(
            "@postgres:5432/hitl"
        ), name
        assert (
            env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://")
            and "@redis:6379/" in env["AIRFLOW__CELERY__BROKER_URL"]
        )
        assert "build" in svc, f"{name} runs the image built from this repository (the wheel installed)"
    assert command(services["airflow-worker"])[:3] == ["airflow", "celery", "worker"]
    assert int(services["airflow-worker"]["deploy"]["replicas"]) >= 2
    assert "container_name" not in services["airflow-worker"], "a fixed name would prevent --scale"
    assert int(services["airflow-triggerer"]["deploy"]["replicas"]) == 2
    assert "deploy/postgres-init.sql" in " ".join(services["postgres"]["volumes"])


def test_structure_with_pyyaml() -> None:
    values = generate_env()
    check_structure(load(COMPOSE, values))
    assert set(ENV_KEYS) <= set(env_example()), ".env.example lists every required secret"
    assert all(env_example()[k] == "" for k in ENV_KEYS), ".env.example ships no secret"
    for key in ENV_KEYS:
        with pytest.raises(ComposeError, match=key):
            load(COMPOSE, {k: v for k, v in values.items() if k != key})
    assert "CREATE DATABASE hitl" in (REPO / "deploy" / "postgres-init.sql").read_text()


def test_docker_compose_config(tmp_path: Path) -> None:
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.skip(
            "the docker-compose binary is missing (Debian: apt-get install docker-compose); .ci/run installs it"
        )
    env_file = tmp_path / ".env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in generate_env().items()))
    result = subprocess.run(
        [binary, "--project-directory", str(REPO), "--env-file", str(env_file), "-f", str(COMPOSE), "config"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    check_structure(yaml.safe_load(result.stdout))

    # A required secret missing: compose refuses, naming it.
    env_file.write_text("".join(f"{k}={v}\n" for k, v in generate_env().items() if k != "JWT_SECRET"))
    result = subprocess.run(
        [binary, "--project-directory", str(REPO), "--env-file", str(env_file), "-f", str(COMPOSE), "config"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0 and "JWT_SECRET" in result.stderr
