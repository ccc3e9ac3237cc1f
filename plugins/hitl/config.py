"""The settings most of the plugin reads at once (``load_settings``), and where to read Airflow's config (``conf_get``).

Each ``[hitl]`` key is declared in ``hitl.settings``; ``hitl.airflow_config`` reads them as Airflow would.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hitl.airflow_config import AIRFLOW_DEFAULTS, airflow_home, cfg_path, conf_get
from hitl.settings import setting

__all__ = ["AIRFLOW_DEFAULTS", "Settings", "airflow_home", "cfg_path", "conf_get", "load_settings"]


@dataclass(frozen=True)
class Settings:
    store_url: str
    poll_interval: float
    base_url: str
    outbox_dir: Path
    secret_key: str
    # webResearch: hosts, addresses and CIDRs (each optionally :port) it may fetch although they are not
    # public (loopback, private, ...); see hitl.steps.address_policy. Empty: public web sites only.
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
        store_url=(setting("store_url") or f"sqlite:///{home / 'hitl.db'}"),
        poll_interval=float(setting("poll_interval")),
        base_url=conf_get("api", "base_url", "http://localhost:8080").rstrip("/"),
        outbox_dir=Path(setting("outbox_dir") or str(home / "outbox")),
        secret_key=setting("secret_key") or conf_get("api", "secret_key", ""),
        web_research_allow=setting("web_research_allow"),
        web_research_max_bytes=_positive_int(setting("web_research_max_bytes"), 2_000_000),
    )
