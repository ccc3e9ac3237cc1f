"""Airflow DAG file for the benchmarks: the factory over benchmarks/specs (set by AIRFLOW__HITL__SPECS_FOLDER)."""

from hitl.factory import build_dags, default_specs_dir

build_dags(default_specs_dir(__file__), globals())
