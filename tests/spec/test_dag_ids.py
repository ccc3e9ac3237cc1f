"""A spec may not take the DAG id of a hand-written DAG file in the DAGs folder (Airflow would flip between them)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hitl.spec.dag_ids import defined_dag_ids, hand_written_dag_ids
from hitl.spec.loader import load_specs

REPO = Path(__file__).resolve().parents[2]
OUTREACH = "local_business_outreach"

HAND_WRITTEN = """\
from airflow.sdk import DAG, dag
from airflow.providers.standard.operators.empty import EmptyOperator

with DAG("local_business_outreach", schedule=None) as outreach:  # line 4: the spec's id, by hand
    EmptyOperator(task_id="hello")
"""

ONLY_NAMES_IT = """\
from airflow.sdk import DAG
from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator

with DAG("kicks_off_outreach", schedule=None):
    TriggerDagRunOperator(task_id="go", trigger_dag_id="local_business_outreach")
"""


def test_the_forms_that_define_a_dag_id_and_those_that_only_name_one() -> None:
    source = """
import airflow.sdk as sdk
from airflow.sdk import DAG, dag
a = DAG("by_position")
b = sdk.DAG(dag_id="by_keyword", schedule=None)
with DAG(dag_id="in_with"):
    pass
@dag
def decorated(): ...
@dag(dag_id="decorated_with_id")
def ignored_name(): ...
@sdk.dag(schedule=None)
def decorated_call(): ...
c = DAG(dag_id=some_variable)
TriggerDagRunOperator(trigger_dag_id="triggered")
ExternalTaskSensor(external_dag_id="watched")
"""
    assert {i for i, _ in defined_dag_ids(source)} == {
        "by_position",
        "by_keyword",
        "in_with",
        "decorated",
        "decorated_with_id",
        "decorated_call",
    }


def test_hand_written_ids_are_found_with_their_line_and_the_rest_is_left_alone(tmp_path: Path) -> None:
    (tmp_path / "outreach_by_hand.py").write_text(HAND_WRITTEN)
    (tmp_path / "kicks_off.py").write_text(ONLY_NAMES_IT)
    (tmp_path / "broken.py").write_text("def local_business_outreach(:\n")  # does not parse: Airflow reports it
    hidden = tmp_path / ".hidden"
    hidden.mkdir()
    (hidden / "old.py").write_text(HAND_WRITTEN)
    found = hand_written_dag_ids(tmp_path, [OUTREACH, "kicks_off_outreach_not", "other"])
    assert found == {OUTREACH: (tmp_path / "outreach_by_hand.py", 4)}
    assert hand_written_dag_ids(tmp_path, [OUTREACH], skip=(tmp_path / "outreach_by_hand.py",)) == {}
    assert hand_written_dag_ids(tmp_path / "nowhere", [OUTREACH]) == {}


def test_load_specs_refuses_the_taken_id_at_its_line(tmp_path: Path) -> None:
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "outreach_by_hand.py").write_text(HAND_WRITTEN)
    (dags / "kicks_off.py").write_text(ONLY_NAMES_IT)
    spec = REPO / "workflow_specs" / f"{OUTREACH}.yaml"
    [alone] = load_specs([spec])
    assert alone.ok  # no DAGs folder given: nothing to clash with
    [loaded] = load_specs([spec], dags_folder=dags)
    assert not loaded.ok and loaded.spec is None
    assert [str(e) for e in loaded.errors] == [
        f"{spec}:1: id: workflow id '{OUTREACH}' is the DAG id of {dags / 'outreach_by_hand.py'}:4, a DAG file in"
        " the DAGs folder: two files with one DAG id make Airflow switch between them; rename the workflow"
    ]


def test_a_dagbag_of_the_folder_keeps_the_hand_written_dag_and_shows_the_spec_as_invalid(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Airflow's own DagBag over a DAGs folder holding both: no duplicate-id import error, no flip."""
    from airflow.dag_processing.dagbag import DagBag

    dags = tmp_path / "dags"
    dags.mkdir()
    shutil.copy(REPO / "dags" / "hitl_workflows.py", dags)
    (dags / "outreach_by_hand.py").write_text(HAND_WRITTEN)
    monkeypatch.setenv("AIRFLOW__HITL__SPECS_FOLDER", str(REPO / "workflow_specs"))
    monkeypatch.setenv("AIRFLOW__CORE__DAGS_FOLDER", str(dags))
    bag = DagBag(dag_folder=str(dags))
    assert bag.import_errors == {}
    assert Path(bag.dags[OUTREACH].fileloc).name == "outreach_by_hand.py"
    assert [t.task_id for t in bag.dags[OUTREACH].tasks] == ["hello"]
    invalid = bag.dags[f"hitl_invalid__{OUTREACH}"]
    assert f"is the DAG id of {dags / 'outreach_by_hand.py'}:4" in invalid.doc_md  # type: ignore[operator]


def test_cli_validate_sees_the_dags_folder(tmp_path: Path) -> None:
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "outreach_by_hand.py").write_text(HAND_WRITTEN)
    env = {**os.environ, "PYTHONPATH": str(REPO / "plugins"), "AIRFLOW__CORE__DAGS_FOLDER": str(dags)}
    spec = str(REPO / "workflow_specs" / f"{OUTREACH}.yaml")

    def validate(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "hitl", "validate", *args], capture_output=True, text=True, env=env, cwd=REPO
        )

    refused = validate(spec)  # [core] dags_folder
    assert refused.returncode == 1 and f"is the DAG id of {dags / 'outreach_by_hand.py'}:4" in refused.stdout
    elsewhere = tmp_path / "empty"
    elsewhere.mkdir()
    assert validate(spec, "--dags-folder", str(elsewhere)).returncode == 0
    missing = validate(spec, "--dags-folder", str(tmp_path / "nowhere"))
    assert missing.returncode == 2 and "no such folder (--dags-folder)" in missing.stderr
