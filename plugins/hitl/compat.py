"""Which Airflow this plugin runs on: the 3.3 line it is tested against, and no other.

The plugin reaches into Airflow internals that change between minor releases (the FAB app, the
task runner's supervisor comms, the execution API's task states), so a different minor version
fails in ways far from the cause. The guard turns that into one clear message at plugin load.
``HITL_ALLOW_UNSUPPORTED_AIRFLOW=1`` turns the refusal into a warning, for trying a new release.
"""

from __future__ import annotations

import logging
import os

from packaging.specifiers import SpecifierSet
from packaging.version import InvalidVersion, Version

__all__ = ["SUPPORTED_AIRFLOW", "UnsupportedAirflowVersion", "check_airflow_version"]

DIST_NAME = "airflow-hitl"
# Keep in step with the apache-airflow requirement in pyproject.toml (tests/test_packaging.py checks).
SUPPORTED_RANGE = ">=3.3.0,<3.4"
SUPPORTED_AIRFLOW = SpecifierSet(SUPPORTED_RANGE)
SUPPORTED_LABEL = "3.3.x"
OVERRIDE_ENV = "HITL_ALLOW_UNSUPPORTED_AIRFLOW"

log = logging.getLogger(__name__)


class UnsupportedAirflowVersion(ImportError):
    """Airflow is outside the supported range: an ImportError, so Airflow lists it as the plugin's import error."""


def is_supported(version: str) -> bool:
    """Whether ``version`` is in the supported line; its pre-releases and local builds count as that release."""
    try:
        parsed = Version(version)
    except InvalidVersion:
        return False
    return Version(parsed.base_version) in SUPPORTED_AIRFLOW


def installed_airflow_version() -> str:
    """The running Airflow's version (read at call time, so a test can stand in another)."""
    import airflow

    return str(getattr(airflow, "__version__", "unknown"))


def check_airflow_version(version: str | None = None) -> None:
    """Refuse to load on an Airflow outside the supported range, naming what was found.

    Raises UnsupportedAirflowVersion unless ``HITL_ALLOW_UNSUPPORTED_AIRFLOW`` is set, in which case
    it only logs a warning.
    """
    found = installed_airflow_version() if version is None else version
    if is_supported(found):
        return
    message = (
        f"{DIST_NAME} supports Airflow {SUPPORTED_LABEL}; found {found}. "
        f"Install 'apache-airflow{SUPPORTED_RANGE}', or a release of {DIST_NAME} made for Airflow {found}; "
        f"set {OVERRIDE_ENV}=1 to load it anyway."
    )
    if os.environ.get(OVERRIDE_ENV, "").strip().lower() in {"1", "true", "yes"}:
        log.warning("%s Loading anyway because %s is set.", message, OVERRIDE_ENV)
        return
    raise UnsupportedAirflowVersion(message)
