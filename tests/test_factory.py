"""The DAG factory through a real DagBag: good specs load, a broken one is visible and hides nothing."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def specs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "workflow_specs"
    shutil.copytree(REPO / "workflow_specs", folder)
    shutil.copy(REPO / "tests/specs/valid/every_feature.yaml", folder)
    shutil.copy(REPO / "tests/specs/broken/01_bool_type.yaml", folder / "broken_outreach.yaml")
    monkeypatch.setenv("AIRFLOW__HITL__SPECS_FOLDER", str(folder))
    return folder


def dagbag() -> object:
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(REPO / "dags"))


def test_examples_load_and_a_broken_spec_hides_nothing(specs: Path) -> None:
    bag = dagbag()
    assert bag.import_errors == {}  # type: ignore[attr-defined]
    dags = bag.dags  # type: ignore[attr-defined]
    assert {"local_business_outreach", "every_feature", "hitl_invalid__broken_outreach", "hitl_monitor"} <= set(dags)
    assert [t.task_id for t in dags["hitl_monitor"].tasks] == ["sweep"]
    invalid = dags["hitl_invalid__broken_outreach"]
    assert "invalid-spec" in invalid.tags
    where = f"{specs / 'broken_outreach.yaml'}:27: steps[1].next.conditions.approvalRequired"
    expected = f"{where}: must be true or false, got 'yes please'"
    assert expected in invalid.doc_md
    assert invalid.description.startswith("INVALID SPEC broken_outreach.yaml: ")


def test_an_invalid_specs_errors_are_text_not_markdown(tmp_path: Path) -> None:
    """A hostile key (backticks, a link) is shown as text in the stand-in DAG's docs, never as Markdown."""
    from hitl.factory import build_invalid_dag
    from hitl.spec.loader import load_spec

    path = tmp_path / "evil`[x](y).yaml"
    key = "k0`](https://evil.example)[" + "x" * 2000
    path.write_text(f"id: evil\nsteps: []\n'{key}': 1\n")
    doc = build_invalid_dag(load_spec(path)).doc_md
    lines = doc.splitlines()
    body = [line for line in lines if line.startswith("    ")]
    assert body and all(len(line) <= 504 for line in body)  # one indented code line per error, clipped
    assert all(line.startswith("    ") or "evil.example" not in line for line in lines)  # the link stays in code
    assert "\\`" in lines[0] and "\\[" in lines[0]  # the file name's Markdown characters are escaped


def test_outreach_dag_shape(specs: Path) -> None:
    dag = dagbag().dags["local_business_outreach"]  # type: ignore[attr-defined]
    tasks = {t.task_id: t for t in dag.tasks}
    assert set(tasks) == {"research_prospect", "draft_email", "draft_email__approval", "send_email"}
    assert tasks["research_prospect"].downstream_task_ids == {"draft_email"}
    assert tasks["draft_email"].downstream_task_ids == {"draft_email__approval"}
    assert tasks["draft_email__approval"].downstream_task_ids == {"send_email"}
    gate = tasks["draft_email__approval"]
    assert gate.options.approve_label == "Send email" and gate.options.approvers == [{"userId": "alice"}]
    assert gate.options.output_kind == "email" and gate.options.timeout is None  # waits indefinitely by default
    # send_email reads the gate's approved output (from the store), not the raw draft, and checks the gate first
    assert tasks["send_email"].sources == {"draft_email": "draft_email__approval"}
    assert tasks["send_email"].gates == ["draft_email__approval"]
    assert dag.params["prospect_url"] == ""  # empty: the demo site, from the Variable hitl_demo_site_url


def test_gate_options_reach_the_sensor(specs: Path) -> None:
    dag = dagbag().dags["every_feature"]  # type: ignore[attr-defined]
    gate = dag.get_task("summarise__approval")
    assert gate.options.min_approvals == 2 and gate.options.allow_self_approval is False
    assert gate.options.timeout == 7 * 86400
    assert gate.options.approvers == [{"role": "Op"}, {"email": "lead@example.com"}, {"userId": "alice"}]
    assert dag.get_task("fetch").retries == 0 and dag.get_task("summarise").retries == 1


def test_dag_file_imports_nothing_heavy(specs: Path) -> None:
    import subprocess
    import sys

    code = (
        "import sys, runpy, airflow.sdk; before = set(sys.modules); runpy.run_path(sys.argv[1]);"
        "heavy = [m for m in ('hitl.store', 'sqlalchemy.ext.asyncio', 'bs4', 'requests', 'google.genai',"
        " 'flask_appbuilder') if m in set(sys.modules) - before];"
        "print('HEAVY=' + ','.join(heavy))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(REPO / "dags/hitl_workflows.py")], capture_output=True, text=True, check=True
    )
    assert "HEAVY=\n" in out.stdout + "\n", out.stdout


def test_every_step_after_a_gate_checks_it_however_far_downstream(tmp_path: Path) -> None:
    """a (gated) -> b -> c: forcing a's gate and b to success must not let c act, so c checks a's gate too."""
    from hitl.factory import build_dag
    from hitl.spec.loader import load_spec

    spec = tmp_path / "chain.yaml"
    spec.write_text(
        "id: chain\n"
        "steps:\n"
        "  - id: a\n    type: python\n    config: {callable: os.getcwd}\n"
        "    next: {step: b, conditions: {approvalRequired: true}}\n"
        "  - id: b\n    type: python\n    config: {callable: os.getcwd}\n    next: c\n"
        "  - id: c\n    type: python\n    config: {callable: os.getcwd}\n"
    )
    loaded = load_spec(spec)
    assert loaded.ok, [str(e) for e in loaded.errors]
    dag = build_dag(loaded)
    assert dag.get_task("b").gates == ["a__approval"]
    assert dag.get_task("c").gates == ["a__approval"]
    assert dag.get_task("a").gates == []


def test_a_gate_binds_the_ungated_outputs_its_next_steps_read(specs: Path) -> None:
    shutil.copy(REPO / "tests/specs/e2e/bound_email.yaml", specs)
    dag = dagbag().dags["bound_email"]  # type: ignore[attr-defined]
    # send_email reads steps.contact.output (ungated, upstream of the gated draft): the gate records it
    assert dag.get_task("draft__approval").options.binds == ["contact"]
    assert dag.get_task("send_email").binds == {"draft__approval": ["contact"]}
    # the outreach example's email reads only the approved draft: nothing else to bind
    outreach = dagbag().dags["local_business_outreach"]  # type: ignore[attr-defined]
    assert outreach.get_task("draft_email__approval").options.binds == []
