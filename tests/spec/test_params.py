"""Spec params with a description, a type and bounds: checked by validate, explained and enforced by Trigger."""

from __future__ import annotations

from pathlib import Path

from hitl.spec.loader import load_spec

STEPS = "steps:\n  - id: a\n    type: python\n    config: {callable: os.getcwd}\n"


def errors_of(tmp_path: Path, params: str) -> list[str]:
    path = tmp_path / "s.yaml"
    path.write_text(f"id: p\nparams:\n{params}{STEPS}")
    return [str(e).removeprefix(f"{path}:") for e in load_spec(path).errors]


def test_a_declared_param_reaches_airflow_with_its_description_type_and_bounds(tmp_path: Path) -> None:
    from hitl.factory import build_dag

    path = tmp_path / "s.yaml"
    path.write_text(
        "id: p\nparams:\n  retries_wanted:\n    default: 2\n    description: How many tries\n    type: integer\n"
        "    minimum: 0\n    maximum: 5\n  plain: hello\n" + STEPS
    )
    loaded = load_spec(path)
    assert loaded.ok, loaded.errors
    dag = build_dag(loaded)
    param = dag.params.get_param("retries_wanted")
    assert param.value == 2 and param.description == "How many tries"
    assert param.schema == {"type": "integer", "minimum": 0, "maximum": 5}
    assert dag.params["plain"] == "hello"
    import pytest
    from airflow.sdk.exceptions import ParamValidationError

    with pytest.raises(ParamValidationError):
        dag.params.get_param("retries_wanted").resolve(9)  # what the Trigger form refuses


def test_a_declared_param_is_checked_with_lines(tmp_path: Path) -> None:
    errors = errors_of(
        tmp_path,
        "  n:\n    default: 9\n    type: integer\n    maximum: 5\n"  # lines 3-6
        "  s:\n    default: x\n    type: text\n    descripton: oops\n",  # lines 7-10
    )
    fits = "4: params.n.default: the default does not fit the param: 9 is greater than the maximum of 5"
    assert fits in errors, errors
    assert any(e.startswith("9: params.s.type: type 'text' is not one of string") for e in errors), errors
    assert any(e.startswith("10: params.s.descripton: unknown key 'descripton' in a param") for e in errors), errors


def test_the_example_explains_its_params(tmp_path: Path) -> None:
    repo = Path(__file__).resolve().parents[2]
    (spec,) = repo.glob("workflow_specs/*.yaml")
    loaded = load_spec(spec)
    assert loaded.ok and loaded.spec is not None
    assert loaded.spec.params["prospect_url"]["description"].startswith("The prospect's web site")
