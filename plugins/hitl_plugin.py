"""Entry point Airflow's plugin manager loads; the plugin itself lives in ``hitl.plugin``."""

from __future__ import annotations

from hitl.plugin import HitlPlugin

__all__ = ["HitlPlugin"]
