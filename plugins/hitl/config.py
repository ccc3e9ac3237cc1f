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
    # webResearch: hosts, addresses and CIDRs (each optionally :port) it may fetch although they are not
    # public (loopback, private, ...); see hitl.steps.web_research. Empty: public web sites only.
    web_research_allow: str = ""
    # webResearch: at most this many bytes of a page's (decompressed) body are read.
    web_research_max_bytes: int = 2_000_000


def _positive_int(text: str, default: int) -> int:
    """A webResearch limit: a bad value must not take the whole plugin down, so it falls back to the default."""
    try:
        value = int(text.strip().replace("_", ""))
    except ValueError:
        return default
    return value if value > 0 else default


def load_settings() -> Settings:
    home = airflow_home()
    return Settings(
        store_url=conf_get("hitl", "store_url", f"sqlite:///{home / 'hitl.db'}"),
        poll_interval=float(conf_get("hitl", "poll_interval", "0.5")),
        base_url=conf_get("api", "base_url", "http://localhost:8080").rstrip("/"),
        outbox_dir=Path(conf_get("hitl", "outbox_dir", str(home / "outbox"))),
        secret_key=conf_get("hitl", "secret_key", "") or conf_get("api", "secret_key", ""),
        web_research_allow=conf_get("hitl", "web_research_allow", ""),
        web_research_max_bytes=_positive_int(conf_get("hitl", "web_research_max_bytes", ""), 2_000_000),
    )
