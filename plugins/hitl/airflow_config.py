"""Airflow's configuration as Airflow reads it (``AIRFLOW__<SECTION>__<KEY>`` env vars, airflow.cfg), mostly without it.

The low-level reader the declared settings (``hitl.settings``) and the few options the plugin reads outside
``[hitl]`` go through; it imports nothing of the plugin, so every module may use it.
"""

from __future__ import annotations

import configparser
import os
import sys
from pathlib import Path
from typing import Any


def airflow_home() -> Path:
    return Path(os.environ.get("AIRFLOW_HOME") or Path.home() / "airflow")


# Airflow's own defaults (config_templates/config.yml) for the options the plugin reads outside [hitl], when
# neither an env var nor airflow.cfg sets them (tests/test_config.py checks them against Airflow's). The API
# secret key has no fixed default (Airflow generates one): for it Airflow is asked.
AIRFLOW_DEFAULTS = {
    ("core", "auth_manager"): "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
    ("core", "simple_auth_manager_users"): "admin:admin",
    ("api", "base_url"): "",
}
_ONLY_AIRFLOW_KNOWS = {("api", "secret_key")}


def conf_get(section: str, key: str, fallback: str) -> str:
    """``[section] key`` as Airflow would read it: its env var, else airflow.cfg, else ``fallback``.

    Importing Airflow's config costs about a second (two to ten on a busy machine) and most CLI calls need
    three or four plain values, so the env var and airflow.cfg are read here directly, as Airflow reads
    them (``AIRFLOW_CONFIG`` or ``$AIRFLOW_HOME/airflow.cfg``, env vars in the value expanded). Airflow is
    asked only where it adds something: a ``_cmd`` or ``_secret`` variant of the option, or an option whose
    Airflow default is generated (``[api] secret_key``).
    """
    env = os.environ.get(f"AIRFLOW__{section.upper()}__{key.upper()}")
    if env is not None:
        return env
    if "airflow.configuration" in sys.modules:  # loaded already (a component, a task): it is the authority
        return _airflow_conf_get(section, key, fallback)
    found = _from_cfg_file(section, key)
    if found is _ASK_AIRFLOW or _has_variant(section, key) or (found is None and (section, key) in _ONLY_AIRFLOW_KNOWS):
        return _airflow_conf_get(section, key, fallback)
    if found is None:
        found = AIRFLOW_DEFAULTS.get((section, key), "")
    return found if isinstance(found, str) and found else fallback


def _airflow_conf_get(section: str, key: str, fallback: str) -> str:
    try:
        from airflow.configuration import conf
    except ImportError:  # pragma: no cover - Airflow is a hard dependency
        return fallback
    return conf.get(section, key, fallback=fallback) or fallback


def _has_variant(section: str, key: str) -> bool:
    """Whether a ``key_cmd`` / ``key_secret`` (env var) could set the option: only Airflow runs those."""
    prefix = f"AIRFLOW__{section.upper()}__{key.upper()}"
    return f"{prefix}_CMD" in os.environ or f"{prefix}_SECRET" in os.environ


_CFG_CACHE: dict[tuple[str, float], Any] = {}
_ASK_AIRFLOW = object()  # airflow.cfg sets the option through a command or a secrets backend


def cfg_path() -> Path:
    return Path(_expand(os.environ.get("AIRFLOW_CONFIG") or str(airflow_home() / "airflow.cfg")))


def _from_cfg_file(section: str, key: str) -> str | object | None:
    """The option's value in airflow.cfg, None if the file does not set it, _ASK_AIRFLOW if through _cmd/_secret."""
    path = cfg_path()
    try:
        stamp = path.stat().st_mtime
    except OSError:
        return None
    parser = _CFG_CACHE.get((str(path), stamp))
    if parser is None:
        parser = configparser.ConfigParser(interpolation=None, strict=False)
        try:
            parser.read(path, encoding="utf-8")
        except (OSError, configparser.Error, UnicodeDecodeError):
            return None
        _CFG_CACHE.clear()
        _CFG_CACHE[(str(path), stamp)] = parser
    if not parser.has_section(section):
        return None
    if parser.has_option(section, f"{key}_cmd") or parser.has_option(section, f"{key}_secret"):
        return _ASK_AIRFLOW
    if not parser.has_option(section, key):
        return None
    return _expand(parser.get(section, key))


def _expand(value: str) -> str:
    """Env vars and ``~`` expanded until nothing changes, as Airflow's ``expand_env_var`` does."""
    while True:
        expanded = os.path.expanduser(os.path.expandvars(value))
        if expanded == value:
            return expanded
        value = expanded
