"""Airflow DAG file: one DAG per workflow spec in workflow_specs/ (see plugins/hitl/factory.py)."""

from hitl.factory import build_dags, default_specs_dir

build_dags(default_specs_dir(__file__), globals())
