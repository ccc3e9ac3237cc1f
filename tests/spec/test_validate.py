"""Spec validation: each broken spec in tests/specs/broken names its mistake in an ``# expect:`` header."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from hitl.spec.loader import load_spec, load_specs

SPECS = Path(__file__).resolve().parents[1] / "specs"
REPO = SPECS.parents[1]
BROKEN = sorted((SPECS / "broken").glob("*.yaml"))


def expected(path: Path) -> tuple[int, str, str]:
    line, key_path, message = path.read_text().splitlines()[0].removeprefix("# expect: ").split("|", 2)
    return int(line), key_path, message


def test_there_are_at_least_25_broken_specs() -> None:
    assert len(BROKEN) >= 25


@pytest.mark.parametrize("path", BROKEN, ids=lambda p: p.stem)
def test_broken_spec_reports_file_line_and_key_path(path: Path) -> None:
    line, key_path, message = expected(path)
    loaded = load_spec(path)
    assert not loaded.ok and loaded.spec is None
    matches = [e for e in loaded.errors if e.path == key_path and message in e.message]
    assert matches, f"expected {line}: {key_path}: {message!r}; got {[str(e) for e in loaded.errors]}"
    assert matches[0].line == line, str(matches[0])
    assert str(matches[0]).startswith(f"{path}:{line}: ")


def test_valid_examples_pass() -> None:
    loaded = load_specs([REPO / "workflow_specs", SPECS / "valid"])
    assert loaded, "no example specs found"
    for item in loaded:
        assert item.ok, [str(e) for e in item.errors]


def test_all_errors_in_a_file_are_collected(tmp_path: Path) -> None:
    spec = tmp_path / "many.yaml"
    spec.write_text(
        "id: many\nschedule: '@dialy'\nsteps:\n"
        "  - id: a\n    type: webResearh\n    next: nowhere\n"
        "  - id: b\n    type: python\n    config: {callable: 'x.y', kwargs: 3}\n"
    )
    messages = [str(e) for e in load_spec(spec).errors]
    assert any(":2: schedule: unknown schedule preset" in m for m in messages)
    assert any(":5: steps[0].type: unknown step type" in m for m in messages)
    assert any(":6: steps[0].next: next step 'nowhere' does not exist" in m for m in messages)
    assert any(":9: steps[1].config.kwargs: must be a mapping" in m for m in messages)


def test_duplicate_workflow_ids_across_files(tmp_path: Path) -> None:
    body = "id: same\nsteps:\n  - id: a\n    type: python\n    config: {callable: 'os.getcwd'}\n"
    (tmp_path / "a.yaml").write_text(body)
    (tmp_path / "b.json").write_text(
        '{"id": "same", "steps": [{"id": "a", "type": "python", "config": {"callable": "os.getcwd"}}]}'
    )
    first, second = load_specs([tmp_path])
    assert first.ok
    assert not second.ok and "already used by" in str(second.errors[0])


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hitl", "validate", *args], capture_output=True, text=True, cwd=REPO)


def test_cli_validate_prints_every_mistake_and_exits_1() -> None:
    result = _cli(str(SPECS / "broken"))
    assert result.returncode == 1
    for path in BROKEN:
        line, key_path, message = expected(path)
        prefix = f"{path}:{line}: {key_path + ': ' if key_path else ''}"
        assert any(out.startswith(prefix) and message in out for out in result.stdout.splitlines()), prefix


def test_cli_validate_default_folder_is_valid() -> None:
    result = _cli()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "local_business_outreach" in result.stdout
