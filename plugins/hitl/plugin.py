"""The Airflow plugin: the review UI (FAB view under /pluginsv2/hitl/) and its navigation entry."""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin


class HitlPlugin(AirflowPlugin):
    name = "hitl"
