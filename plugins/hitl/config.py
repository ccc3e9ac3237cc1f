"""Settings, read through Airflow's config so ``AIRFLOW__HITL__*`` env vars and airflow.cfg both work."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


def airflow_home() -> Path:
    return Path(os.environ.get("AIRFLOW_HOME") or Path.home() / "airflow")


def conf_get(section: str, key: str, fallback: str) -> str:
    # An env var wins without importing Airflow (the CLI and tests stay fast);
    # otherwise ask Airflow's config, which also reads airflow.cfg.
    env = os.environ.get(f"AIRFLOW__{section.upper()}__{key.upper()}")
    if env is not None:
        return env
    try:
        from airflow.configuration import conf
    except ImportError:  # pragma: no cover - Airflow is a hard dependency
        return fallback
    return conf.get(section, key, fallback=fallback) or fallback


@dataclass(frozen=True)
class Settings:
    store_url: str
    poll_interval: float
    base_url: str
    outbox_dir: Path
    secret_key: str


def load_settings() -> Settings:
    home = airflow_home()
    return Settings(
        store_url=conf_get("hitl", "store_url", f"sqlite:///{home / 'hitl.db'}"),
        poll_interval=float(conf_get("hitl", "poll_interval", "0.5")),
        base_url=conf_get("api", "base_url", "http://localhost:8080").rstrip("/"),
        outbox_dir=Path(conf_get("hitl", "outbox_dir", str(home / "outbox"))),
        secret_key=conf_get("hitl", "secret_key", "") or conf_get("api", "secret_key", ""),
    )
