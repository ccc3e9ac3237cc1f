"""Hostile workflow specs: none may crash, hang or hide a DAG (issue 9 item 2, issue 11 item 8).

Each case is one spec file written beside a good spec. ``load_spec`` must return errors (never
raise) that name the file and a line; ``load_specs`` on the folder must still load the good
spec; and for most cases ``python -m hitl validate FILE`` must exit 1 with no traceback.
The limits themselves are documented in ``hitl.spec.safe_yaml``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from hitl.spec.loader import load_spec, load_specs
from hitl.spec.safe_yaml import MAX_FILE_BYTES

REPO = Path(__file__).resolve().parents[2]

GOOD = b"""\
id: good_neighbour
steps:
  - id: a
    type: python
    config: {callable: os.getcwd}
"""
STEPS = b"steps:\n  - id: a\n    type: python\n    config: {callable: os.getcwd}\n"
PWNED = "/tmp/hitl-hostile-spec-pwned"


@dataclass(frozen=True)
class Case:
    name: str
    body: bytes
    line: int | None  # the line the first matching error must name (None: any line)
    message: str  # a regex the error must contain
    suffix: str = ".yaml"
    cli: bool = False  # also run `python -m hitl validate FILE`


def laughs(levels: int = 9) -> bytes:
    out = ["id: lol", "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i in range(1, levels):
        prev, name = chr(ord("a") + i - 1), chr(ord("a") + i)
        out.append(f"{name}: &{name} [{', '.join(['*' + prev] * 9)}]")
    return ("\n".join(out) + "\n").encode() + STEPS


CASES = [
    Case("alias_self_reference_list", b"id: x\nsteps: &a [*a]\n", 2, r"recursive structure", cli=True),
    Case("alias_self_reference_map", b"id: x\nparams: &p\n  me: *p\n" + STEPS, 3, r"recursive structure"),
    Case("billion_laughs", laughs(), None, r"more than 50,000 values \(after expanding aliases\)", cli=True),
    Case(
        "laughs_with_long_strings",
        b"id: x\ns: &s '" + b"x" * 200_000 + b"'\nt: [" + b", ".join([b"*s"] * 40) + b"]\n" + STEPS,
        3,
        r"more than 2,097,152 characters of text",
        cli=True,
    ),
    Case("undefined_alias", b"id: x\nowner: *nobody\n" + STEPS, 2, r"alias \*nobody refers to no anchor"),
    Case(
        "depth_5000_flow",
        b"id: x\nparams: {p: " + b"[" * 5000 + b"]" * 5000 + b"}\n" + STEPS,
        2,
        r"nested deeper than 50 levels",
        cli=True,
    ),
    Case(
        "depth_5000_block",
        b"id: x\nparams:\n  p:\n    " + b"- " * 5000 + b"x\n" + STEPS,
        4,
        r"nested deeper than 50 levels",
        cli=True,
    ),
    Case(
        "depth_51_json",
        b'{"id": "x", "params": {"p": ' + b"[" * 51 + b"]" * 51 + b"}}\n",
        1,
        r"nested deeper than 50 levels",
        suffix=".json",
    ),
    Case(
        "huge_file",
        b"id: x\n" + STEPS + b"# padding\n" * (MAX_FILE_BYTES // 10 + 1),
        1,
        r"a spec file may have at most 1,048,576 bytes",
        cli=True,
    ),
    Case("too_many_nodes", b"id: x\nparams:\n  p: [" + b"1," * 60_000 + b"1]\n" + STEPS, 3, r"more than 50,000 values"),
    Case("non_utf8_latin1", b"id: x\ndescription: caf\xe9\n" + STEPS, 2, r"not UTF-8 text: byte 0xe9", cli=True),
    Case("utf8_encoded_surrogate", b"id: x\ndescription: \xed\xa0\x80\n" + STEPS, 2, r"not UTF-8 text"),
    Case("utf16_with_bom", "id: x\n".encode("utf-16"), 1, r"UTF-16"),
    Case("bom_mid_file", b"id: x\n\xef\xbb\xbfsteps: []\n", 2, r"byte-order mark \(U\+FEFF\)"),
    Case("nul_byte", b"id: x\nowner: a\x00b\n" + STEPS, 2, r"U\+0000 \(NUL\)", cli=True),
    Case("nul_escape_yaml", b'id: x\ndescription: "a\\0b"\n' + STEPS, 2, r"description: contains a NUL character"),
    Case(
        "nul_escape_json",
        b'{"id": "x",\n "owner": "a\\u0000b"}\n',
        2,
        r"owner: contains a NUL character",
        suffix=".json",
    ),
    Case("lone_surrogate_escape", b'id: x\nowner: "\\ud800"\n' + STEPS, 2, r"invalid Unicode character escape"),
    Case(
        "nul_flood",
        b"id: x\nowner: " + b"\x00" * 1_000_000 + b"\n" + STEPS,
        2,
        r"U\+0000 \(NUL\) at column 8",
        cli=True,
    ),
    Case("escape_byte", b"id: x\nowner: \x1b[31mred\n" + STEPS, 2, r"U\+001B \(ESC\)"),
    Case("unhashable_list_key", b"id: x\n? [a, b]\n: 1\n" + STEPS, 2, r"a list cannot be a key", cli=True),
    Case("unhashable_map_key", b"id: x\nparams:\n  ? {a: 1}\n  : 1\n" + STEPS, 3, r"params: a mapping cannot be a key"),
    Case("null_key", b"id: x\n~: 1\n" + STEPS, 2, r"a key cannot be empty or null"),
    Case("integer_keys", b"id: x\nparams: {1: one, 2: two}\n" + STEPS, 2, r"params: key '1' is a number, not text"),
    Case("bool_key", b"id: x\nparams:\n  on: push\n" + STEPS, 3, r"key 'on' reads as true, not text"),
    Case("integer_top_level_key", b"id: x\n404: not found\n" + STEPS, 2, r"key '404' is a number"),
    Case(
        "impossible_date",
        b"id: x\nstart_date: 2024-13-45\n" + STEPS,
        2,
        r"start_date: must be a date .*month must be in 1\.\.12",
        cli=True,
    ),
    Case("impossible_day", b"id: x\nstart_date: '2023-02-29'\n" + STEPS, 2, r"start_date: must be a date"),
    Case(
        "start_date_overflows_utc",
        b"id: x\nstart_date: '0001-01-01T00:00:00+05:00'\n" + STEPS,
        2,
        r"between the years 1900 and 2999",
    ),
    Case(
        "huge_int",
        b"id: x\nsteps:\n  - id: a\n    type: python\n    retries: "
        + b"9" * 5000
        + b"\n    config: {callable: os.getcwd}\n",
        5,
        r"number too long \(5,000 characters",
        cli=True,
    ),
    Case("huge_sexagesimal_int", b"id: x\nparams: {n: " + b"1:" * 3000 + b"1}\n" + STEPS, 2, r"number too long"),
    Case(
        "huge_duration",
        b"id: x\nsteps:\n  - id: a\n    type: python\n    config: {callable: os.getcwd}\n"
        b"    next:\n      conditions: {approvalRequired: true, timeout: 99999999999999999w}\n",
        7,
        r"timeout: must be",
    ),
    Case("tab_indent", b"id: x\nsteps:\n\t- id: a\n", 3, r"YAML syntax error: .*tab"),
    Case("multiple_documents", b"id: x\n" + STEPS + b"---\nid: y\n" + STEPS, 6, r"a second YAML document", cli=True),
    Case(
        "python_object_tag",
        b"id: x\nowner: !!python/object/apply:os.system ['touch " + PWNED.encode() + b"']\n" + STEPS,
        2,
        r"tag !!python/object/apply:os.system is not allowed",
        cli=True,
    ),
    Case("python_name_tag", b"id: x\nowner: !!python/name:os.system ''\n" + STEPS, 2, r"tag !!python/name:os.system"),
    Case("binary_tag", b"id: x\nowner: !!binary aGVsbG8=\n" + STEPS, 2, r"tag !!binary is not allowed"),
    Case("set_tag", b"id: x\nparams: !!set {a, b}\n" + STEPS, 2, r"tag !!set is not allowed"),
    Case("local_tag", b"id: x\nowner: !vault secret/owner\n" + STEPS, 2, r"tag !vault is not allowed"),
    Case("top_level_list", b"- id: x\n- steps: []\n", 1, r"a spec must be a mapping with id and steps"),
    Case("top_level_scalar", b"just some text\n", 1, r"a spec must be a mapping with id and steps, got 'just"),
    Case("empty_file", b"", 1, r"got nothing \(the file is empty\)"),
    Case("only_comments", b"# nothing here\n# at all\n", 1, r"the file is empty"),
    Case("unclosed_flow", b"id: x\nsteps: [\n  {id: a, type: python\n", 3, r"YAML syntax error"),
    Case("merge_of_a_scalar", b"id: x\nparams:\n  <<: 1\n" + STEPS, 3, r"a merge key \(<<\) takes a mapping"),
    Case("continuous_schedule", b"id: x\nschedule: '@continuous'\n" + STEPS, 2, r"does not support @continuous"),
    Case("cron_never_fires", b"id: x\nschedule: 0 0 30 2 *\n" + STEPS, 2, r"never fires"),
    Case("reserved_dag_id", b"id: hitl_monitor\n" + STEPS, 1, r"id: workflow id 'hitl_monitor' is reserved"),
    Case("tag_too_long", b"id: x\ntags: [" + b"t" * 101 + b"]\n" + STEPS, 2, r"tags\[0\]: .*at most 100"),
    Case(
        "gate_task_id_taken",
        b"id: x\nsteps:\n  - id: a\n    type: python\n    config: {callable: os.getcwd}\n"
        b"    next: {step: a__approval, conditions: {approvalRequired: true}}\n"
        b"  - id: a__approval\n    type: python\n    config: {callable: os.getcwd}\n",
        7,
        r"steps\[1\]\.id: step id 'a__approval' is taken by the approval gate of step 'a'",
    ),
    Case(
        "too_many_steps",
        b"id: x\nsteps:\n"
        + b"".join(b"  - {id: s%d, type: python, config: {callable: os.getcwd}}\n" % i for i in range(4000)),
        2,
        r"steps: has 4,000 items; at most 100 are allowed",
        cli=True,
    ),
    Case(
        "too_many_params",
        b"id: x\nparams: {" + b", ".join(b"p%d: 1" % i for i in range(51)) + b"}\n" + STEPS,
        2,
        r"params: has 51 items; at most 50",
    ),
    Case(
        "params_times_steps",
        b"id: x\nparams: {"
        + b", ".join(b"p%d: 1" % i for i in range(30))
        + b"}\nsteps:\n"
        + b"".join(b"  - {id: s%d, type: python, config: {callable: os.getcwd}}\n" % i for i in range(40)),
        2,
        r"params: 30 params x 40 steps is more than 1,000",
    ),
    Case("key_too_long_for_libyaml", b"id: x\n" + b"k" * 5000 + b": 1\n" + STEPS, None, r"YAML syntax error"),
]
CLI_CASES = [c for c in CASES if c.cli]
TIMES: dict[str, float] = {}


def _write(folder: Path, case: Case) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "good_neighbour.yaml").write_bytes(GOOD)
    path = folder / f"hostile_{case.name}{case.suffix}"
    path.write_bytes(case.body)
    return path


def test_there_are_at_least_20_cases() -> None:
    assert len(CASES) >= 20 and len(CLI_CASES) >= 10
    assert len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_hostile_spec_is_an_error_with_file_and_line(case: Case, tmp_path: Path) -> None:
    path = _write(tmp_path, case)
    started = time.perf_counter()
    loaded = load_spec(path)  # must not raise
    elapsed = time.perf_counter() - started
    assert not loaded.ok and loaded.spec is None and loaded.steps == []
    texts = [str(e) for e in loaded.errors]
    assert all(re.match(rf"{re.escape(str(path))}:\d+: ", t) for t in texts), texts
    matches = [e for e in loaded.errors if re.search(case.message, str(e))]
    assert matches, f"expected /{case.message}/ in {texts}"
    if case.line is not None:
        assert matches[0].line == case.line, str(matches[0])
    assert "internal error" not in " ".join(texts)
    assert elapsed < 5, f"load_spec took {elapsed:.1f}s"


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_hostile_spec_hides_no_neighbour(case: Case, tmp_path: Path) -> None:
    path = _write(tmp_path, case)
    loaded = {item.path.name: item for item in load_specs([tmp_path])}
    assert loaded["good_neighbour.yaml"].ok, [str(e) for e in loaded["good_neighbour.yaml"].errors]
    assert loaded[path.name].errors and loaded[path.name].spec is None


def test_python_tags_never_run(tmp_path: Path) -> None:
    Path(PWNED).unlink(missing_ok=True)
    for case in CASES:
        if "python" in case.name:
            load_spec(_write(tmp_path, case))
    assert not Path(PWNED).exists()


def test_a_fifo_named_like_a_spec_does_not_block(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)
    (tmp_path / "good_neighbour.yaml").write_bytes(GOOD)
    loaded = load_spec(fifo)  # would block forever if it were opened for reading
    assert [e.message for e in loaded.errors] == ["cannot read file: not a regular file"]
    assert [item.path.name for item in load_specs([tmp_path]) if item.ok] == ["good_neighbour.yaml"]


def test_a_utf8_bom_at_the_start_is_fine(tmp_path: Path) -> None:
    path = tmp_path / "bom.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + GOOD)
    loaded = load_spec(path)
    assert loaded.ok, [str(e) for e in loaded.errors]


def test_every_hostile_file_in_one_folder_still_builds_the_good_dag(tmp_path: Path) -> None:
    """The factory itself: one stand-in DAG per hostile file, and the good DAG, from one folder."""
    from hitl.factory import build_dags, invalid_dag_id

    for case in CASES:
        _write(tmp_path, case)
    dags = build_dags(tmp_path)
    assert "good_neighbour" in dags
    for case in CASES:
        stand_in = dags[invalid_dag_id(tmp_path / f"hostile_{case.name}{case.suffix}")]
        assert "invalid-spec" in stand_in.tags


def test_a_broken_spec_with_a_very_long_file_name_hides_nothing(tmp_path: Path) -> None:
    from hitl.factory import build_dags

    (tmp_path / "good_neighbour.yaml").write_bytes(GOOD)
    (tmp_path / ("n" * 240 + ".yaml")).write_bytes(b"id: [\n")
    dags = build_dags(tmp_path)
    assert "good_neighbour" in dags


def test_broken_specs_of_the_same_name_in_two_folders_both_show(tmp_path: Path) -> None:
    from hitl.factory import build_dags

    for folder in ("team_a", "team_b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "outreach.yaml").write_bytes(b"id: [\n")
    dags = build_dags(tmp_path)
    assert len([d for d in dags if d.startswith("hitl_invalid__")]) == 2


def _cli_env() -> dict[str, str]:
    env = os.environ.copy()
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO / "plugins"), env.get("PYTHONPATH", "")) if p)
    return env


@pytest.mark.parametrize("case", CLI_CASES, ids=lambda c: c.name)
def test_cli_validate_refuses_hostile_spec(case: Case, tmp_path: Path) -> None:
    path = _write(tmp_path, case)
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "hitl", "validate", str(path)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=_cli_env(),
        timeout=30,
    )
    TIMES[case.name] = time.perf_counter() - started
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "Traceback" not in output, output
    assert re.search(rf"^{re.escape(str(path))}:\d+: .*{case.message}", result.stdout, re.M), output
    assert "1 spec(s) checked, 1 invalid" in result.stderr


def test_cli_validate_folder_with_every_hostile_file(tmp_path: Path) -> None:
    for case in CASES:
        _write(tmp_path, case)
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "hitl", "validate", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=_cli_env(),
        timeout=30,
    )
    TIMES["<folder of all cases>"] = time.perf_counter() - started
    output = result.stdout + result.stderr
    assert result.returncode == 1 and "Traceback" not in output, output
    assert f"{tmp_path / 'good_neighbour.yaml'}: ok (good_neighbour, 1 steps)" in result.stdout
    assert f"{len(CASES) + 1} spec(s) checked, {len(CASES)} invalid" in result.stderr


def teardown_module() -> None:
    if TIMES:
        print("\nvalidate wall times: " + ", ".join(f"{k} {v:.2f}s" for k, v in sorted(TIMES.items())))
