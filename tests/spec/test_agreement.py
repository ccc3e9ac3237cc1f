"""``validate`` and the DAG factory agree: a spec with no errors is one the factory builds and Airflow bags.

Three directions: every valid fixture builds; edge-of-the-rules specs that validate also build;
and each thing the factory or Airflow would refuse is a validation error (shown by building the
same mistake past the loader and watching Airflow refuse it).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from hitl.spec.loader import GATE_SUFFIX, RESERVED_DAG_IDS, RESERVED_PREFIXES, LoadedSpec, load_spec, spec_files

REPO = Path(__file__).resolve().parents[2]
VALID_FOLDERS = [
    REPO / "workflow_specs",
    REPO / "tests/specs/valid",
    REPO / "tests/specs/e2e",
    REPO / "benchmarks/specs",
]
VALID = spec_files([f for f in VALID_FOLDERS if f.exists()])


def build(loaded: LoadedSpec) -> Any:
    """What the dag-processor does with the factory's DAG: build, validate, bag-check, serialize."""
    from airflow.serialization.serialized_objects import DagSerialization

    from hitl.factory import build_dag

    dag = build_dag(loaded)
    dag.validate()
    dag.check_cycle()
    DagSerialization.to_dict(dag)
    return dag


def test_there_are_valid_fixtures() -> None:
    assert len(VALID) >= 3


@pytest.mark.parametrize("path", VALID, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_valid_fixture_builds(path: Path) -> None:
    loaded = load_spec(path)
    assert loaded.ok, [str(e) for e in loaded.errors]
    dag = build(loaded)
    assert dag.dag_id == loaded.spec.id  # type: ignore[union-attr]
    if loaded.spec.start_date:  # type: ignore[union-attr]
        assert loaded.start_date is not None


STEP = "  - id: a\n    type: python\n    config: {callable: os.getcwd}\n"
GATED = (
    "  - id: a\n    type: python\n    config: {callable: os.getcwd}\n"
    "    next:\n      step: b\n      conditions: {approvalRequired: true%s}\n"
    "  - id: b\n    type: python\n    config: {callable: os.getcwd}\n"
)
LONG_ID = "s" + "x" * 199

EDGE_VALID = {
    **{f"preset_{p[1:]}": f"id: e\nschedule: '{p}'\nsteps:\n{STEP}" for p in ("@once", "@hourly", "@daily")},
    **{f"preset_{p[1:]}": f"id: e\nschedule: '{p}'\nsteps:\n{STEP}" for p in ("@weekly", "@monthly")},
    **{f"preset_{p[1:]}": f"id: e\nschedule: '{p}'\nsteps:\n{STEP}" for p in ("@quarterly", "@yearly", "@annually")},
    "cron_5": f"id: e\nschedule: '*/5 9-17 * * 1-5'\nsteps:\n{STEP}",
    "cron_6_seconds": f"id: e\nschedule: '0 */5 * * * *'\nsteps:\n{STEP}",
    "cron_leap_day": f"id: e\nschedule: '0 0 29 2 *'\nsteps:\n{STEP}",
    "unquoted_date": f"id: e\nschedule: '@daily'\nstart_date: 2024-01-01\nsteps:\n{STEP}",
    "unquoted_datetime": f"id: e\nstart_date: 2024-01-01 10:30:00\nsteps:\n{STEP}",
    "datetime_with_offset": f"id: e\nschedule: '@daily'\nstart_date: '2024-01-01T09:30:00+05:30'\nsteps:\n{STEP}",
    "datetime_utc_z": f"id: e\nstart_date: '2024-06-30T23:59:59Z'\nsteps:\n{STEP}",
    "earliest_start": f"id: e\nschedule: '@daily'\nstart_date: '1900-01-01'\nsteps:\n{STEP}",
    "latest_start": f"id: e\nschedule: '@daily'\nstart_date: '2999-12-31T23:59:59'\nsteps:\n{STEP}",
    "longest_ids_gated": f"id: {'w' * 200}\nsteps:\n" + GATED.replace("id: a", f"id: {LONG_ID}") % "",
    "dotted_ids": f"id: team.flow-1\nsteps:\n{STEP.replace('id: a', 'id: step.one-2')}",
    "longest_tag_and_owner": f"id: e\ntags: ['{'t' * 100}']\nowner: '{'o' * 500}'\nsteps:\n{STEP}",
    "all_durations": "id: e\nsteps:\n"
    + GATED % ", timeout: 3650d, remindAfter: 1s, escalateAfter: 2w, escalateTo: [{role: Admin}], expireAfter: 1h",
    "quorum_of_roles": "id: e\nsteps:\n" + GATED % ", minApprovals: 20, approvers: [{role: Op}]",
    "params_plain_data": "id: e\nschedule: '@daily'\nparams:\n  none: null\n  n: 12\n  f: 1.5\n  b: true\n"
    "  nested: {list: [1, {deep: x}]}\n  'dotted.name': 1\n  unicode_ключ: значение\n  date: 2024-01-01\n"
    f"steps:\n{STEP}",
    "anchors_and_merge": "id: e\nparams:\n  base: &base {a: 1, b: 2}\n  copy: *base\n  merged: {<<: *base, b: 3}\n"
    "steps:\n  - &step\n    id: a\n    type: python\n    config: {callable: os.getcwd}\n"
    "  - <<: *step\n    id: b\n",
    "params_nested_to_the_depth_limit": "id: e\nparams:\n  p: " + "[" * 48 + "1" + "]" * 48 + f"\nsteps:\n{STEP}",
    "json_spec": '{"id": "e", "steps": [{"id": "a", "type": "python", "config": {"callable": "os.getcwd"}}]}',
}


@pytest.mark.parametrize("name", sorted(EDGE_VALID))
def test_edge_of_the_rules_validates_and_builds(name: str, tmp_path: Path) -> None:
    path = tmp_path / (f"{name}.json" if name.startswith("json") else f"{name}.yaml")
    path.write_text(EDGE_VALID[name])
    loaded = load_spec(path)
    assert loaded.ok, [str(e) for e in loaded.errors]
    build(loaded)


def test_start_date_is_parsed_once_for_the_factory(tmp_path: Path) -> None:
    from datetime import datetime, timedelta, timezone

    path = tmp_path / "s.yaml"
    path.write_text(EDGE_VALID["datetime_with_offset"])
    loaded = load_spec(path)
    assert loaded.start_date == datetime(2024, 1, 1, 9, 30, tzinfo=timezone(timedelta(hours=5, minutes=30)))
    assert loaded.start_date == datetime.fromisoformat(loaded.spec.start_date)  # type: ignore[union-attr, arg-type]
    assert build(loaded).start_date.isoformat() == "2024-01-01T04:00:00+00:00"


def _set(attr: str, value: Any) -> Callable[[LoadedSpec], None]:
    def mutate(loaded: LoadedSpec) -> None:
        setattr(loaded.spec, attr, value)

    return mutate


def _rename_second_step(loaded: LoadedSpec) -> None:
    loaded.steps[1].id = loaded.steps[0].id + GATE_SUFFIX
    loaded.steps[0].next_step = loaded.steps[1].id


# Each: a spec text with the mistake (the loader must refuse it), the same mistake forced past the
# loader into a good LoadedSpec, and how Airflow (or datetime) refuses that: proof the check is needed.
REFUSED: dict[str, tuple[str, str, Callable[[LoadedSpec], None], tuple[str, str]]] = {
    "impossible_start_date": (
        f"id: e\nstart_date: '2024-13-45'\nsteps:\n{STEP}",
        "start_date: must be a date",
        _set("start_date", "2024-13-45"),
        ("ValueError", "month must be in 1..12"),
    ),
    "start_date_overflows_utc": (
        f"id: e\nstart_date: '0001-01-01T00:00:00+05:00'\nsteps:\n{STEP}",
        "between the years 1900 and 2999",
        _set("start_date", "0001-01-01T00:00:00+05:00"),
        ("OverflowError", "date value out of range"),
    ),
    "continuous_schedule": (
        f"id: e\nschedule: '@continuous'\nsteps:\n{STEP}",
        "does not support @continuous",
        _set("schedule", "@continuous"),
        ("ValueError", "requires max_active_runs <= 1"),
    ),
    "bad_cron": (
        f"id: e\nschedule: '61 * * * *'\nsteps:\n{STEP}",
        "not a valid cron expression",
        _set("schedule", "61 * * * *"),
        ("AirflowTimetableInvalid", "out of range"),
    ),
    "tag_too_long": (
        f"id: e\ntags: ['{'t' * 101}']\nsteps:\n{STEP}",
        "at most 100",
        _set("tags", ["t" * 101]),
        ("ValueError", "tag cannot be longer than 100"),
    ),
    "dag_id_too_long": (
        f"id: {'w' * 251}\nsteps:\n{STEP}",
        "id: must be text matching",
        _set("id", "w" * 251),
        ("ValueError", "has to be less than 250 characters"),
    ),
    "dag_id_bad_chars": (
        "id: 'has space'\nsteps:\n" + STEP,
        "id: must be text matching",
        _set("id", "has space"),
        ("ValueError", "alphanumeric characters"),
    ),
    "gate_task_id_taken": (
        "id: e\nsteps:\n" + GATED.replace("step: b", "step: a__approval").replace("id: b", "id: a__approval") % "",
        "is taken by the approval gate of step 'a'",
        _rename_second_step,
        ("DuplicateTaskIdFound", "a__approval"),
    ),
}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_what_airflow_refuses_is_a_validation_error(name: str, tmp_path: Path) -> None:
    text, message, mutate, (refusal, match) = REFUSED[name]
    path = tmp_path / "refused.yaml"
    path.write_text(text)
    loaded = load_spec(path)
    assert not loaded.ok and any(message in str(e) for e in loaded.errors), [str(e) for e in loaded.errors]

    good = tmp_path / "good.yaml"
    good.write_text("id: e\nsteps:\n" + GATED % "")
    forced = load_spec(good)
    assert forced.ok
    forced = copy.deepcopy(forced)
    mutate(forced)
    from airflow.sdk import exceptions

    expected = getattr(exceptions, refusal, None) or {"ValueError": ValueError, "OverflowError": OverflowError}[refusal]
    with pytest.raises(expected, match=re.escape(match)):
        build(forced)


def test_reserved_names_match_the_factory() -> None:
    from hitl import factory
    from hitl.steps.operator import GATE_SUFFIX as OPERATOR_GATE_SUFFIX

    assert GATE_SUFFIX == OPERATOR_GATE_SUFFIX
    assert factory.gate_task_id("x") == "x" + GATE_SUFFIX
    assert factory.MONITOR_DAG_ID in RESERVED_DAG_IDS
    assert factory.INVALID_PREFIX in RESERVED_PREFIXES


@pytest.mark.parametrize("dag_id", ["hitl_monitor", "hitl_invalid__outreach"])
def test_factory_dag_ids_are_reserved(dag_id: str, tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(f"id: {dag_id}\nsteps:\n{STEP}")
    errors = [str(e) for e in load_spec(path).errors]
    assert errors == [f"{path}:1: id: workflow id {dag_id!r} is reserved for the DAGs the hitl factory makes itself"]
