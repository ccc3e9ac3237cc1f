"""``python -m hitl`` as a user runs it: exit codes and one-line reasons."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import gate, run_hitl
from hitl.cli import build_parser
from hitl.store import Store

REPO = Path(__file__).resolve().parents[1]


USERS = "alice:user,bob:user,root:admin"


@pytest.fixture
def cli(sqlite_store: Store):  # type: ignore[no-untyped-def]
    env = {"AIRFLOW__HITL__STORE_URL": sqlite_store.url, "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": USERS}

    def run(*args: str) -> tuple[int, str, str]:
        out = run_hitl(*args, env=env)
        last = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else ""
        if args[:2] == ("approvals", "list"):
            last = out.stdout
        return out.returncode, last, out.stderr.strip().splitlines()[-1] if out.stderr.strip() else ""

    return run


def test_db_upgrade_is_idempotent(cli) -> None:  # type: ignore[no-untyped-def]
    code, out, _ = cli("db", "upgrade")
    versions = REPO / "plugins" / "hitl" / "store" / "migrations" / "versions"
    head = max(p.name[:4] for p in versions.glob("[0-9][0-9][0-9][0-9]_*.py"))
    assert code == 0 and f"decision store at revision {head}" in out


def test_list_json_and_decide(cli, sqlite_store: Store) -> None:  # type: ignore[no-untyped-def]
    req, _ = sqlite_store.record_request(gate())
    code, out, _ = cli("approvals", "list", "--json")
    [row] = json.loads(out)
    assert code == 0
    assert {k: row[k] for k in ("id", "dag_id", "run_id", "step_id", "status", "approvers")} == {
        "id": req.id,
        "dag_id": "outreach",
        "run_id": "manual__1",
        "step_id": "draft_email",
        "status": "pending",
        "approvers": [{"userId": "alice"}],
    }
    assert (
        row["output"]["subject"] == "Hello"
        and row["created_at"]
        and row["url"].endswith(f"/pluginsv2/hitl/request/{req.id}")
    )

    assert cli("approvals", "approve", "999", "--user", "alice")[1:] == ("", "no approval request 999")
    code, _, err = cli("approvals", "approve", str(req.id), "--user", "bob")
    assert code == 1 and err.startswith(f"bob is not an approver of request {req.id}")
    bad = json.dumps({**req.output, "body": ""})
    code, _, err = cli("approvals", "approve", str(req.id), "--user", "alice", "--output-json", bad)
    assert code == 1 and err == "invalid edit: body is required"
    code, out, _ = cli(
        "approvals",
        "approve",
        str(req.id),
        "--user",
        "alice",
        "--output-json",
        json.dumps({**req.output, "subject": "New"}),
    )
    assert code == 0 and out.startswith(f"request {req.id} approved by alice; ")
    code, _, err = cli("approvals", "reject", str(req.id), "--user", "alice", "--reason", "late")
    assert code == 1 and err.startswith("already decided by alice at ")
    assert sqlite_store.get(req.id).edited_output["subject"] == "New"  # type: ignore[index, union-attr]


def test_admin_from_simple_auth_manager_roles(cli, sqlite_store: Store) -> None:  # type: ignore[no-untyped-def]
    req, _ = sqlite_store.record_request(gate(approvers=[]))
    assert cli("approvals", "reject", str(req.id), "--user", "bob", "--reason", "no")[0] == 1
    code, out, _ = cli("approvals", "reject", str(req.id), "--user", "root", "--reason", "wrong prospect")
    assert code == 0 and out.startswith(f"request {req.id} rejected by root; ")


def run_cli(store_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI on ``store_url``, in this process (``helpers.run_hitl``)."""
    return run_hitl(
        *args, env={"AIRFLOW__HITL__STORE_URL": store_url, "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": USERS}
    )


def run_cli_process(store_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI as a real process: for what only a whole interpreter shows (no traceback reaches the terminal)."""
    env = {**os.environ, "AIRFLOW__HITL__STORE_URL": store_url, "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": USERS}
    env.pop("HITL_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "hitl", *args], capture_output=True, text=True, env=env, cwd=REPO)


def one_line_error(out: subprocess.CompletedProcess[str]) -> str:
    """The whole of stderr: one line, no traceback."""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr[-2000:]
    return lines[0]


@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        (("approvals", "show", "abc"), 2, "not a request id: 'abc'"),
        (("approvals", "show", "9" * 30), 2, "not a request id"),
        (("approvals", "approve", "\u0661", "--user", "alice"), 2, "not a request id: '\u0661'"),
        (("approvals", "show", "999"), 1, "no approval request 999"),
        (("approvals", "approve", "1", "--user", "alice", "--output-json", "{nope"), 2, "invalid edit: --output-json"),
        (("approvals", "approve", "1", "--user", "alice", "--output-json", "[" * 100_000), 2, "nested too deeply"),
        (("approvals", "approve", "1", "--user", "alice", "--output-json", "[1]"), 2, "must be a JSON object"),
        (("approvals", "reject", "1", "--user", "alice", "--reason", "x" * 2001), 2, "too long"),
        (("approvals", "list", "--limit", "9" * 30), 2, "not a limit"),
        (("approvals",), 2, "required"),
    ],
    ids=[
        "letters",
        "huge-id",
        "arabic-digit",
        "missing",
        "bad-json",
        "deep-json",
        "json-list",
        "long-reason",
        "huge-limit",
        "no-command",
    ],
)
def test_bad_input_is_one_line_and_a_non_zero_exit(
    sqlite_store: Store, args: tuple[str, ...], code: int, needle: str
) -> None:
    req, _ = sqlite_store.record_request(gate())
    out = run_cli(sqlite_store.url, *args)
    assert out.returncode == code and needle in one_line_error(out)
    assert sqlite_store.get(req.id).status == "pending" and sqlite_store.votes(req.id) == []  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("url", "args"),
    [
        ("postgresql://hitl:secret@127.0.0.1:9/hitl", ("approvals", "list")),
        (f"sqlite:///{__file__}/store.db", ("approvals", "show", "1")),
        ("sqlite:////", ("approvals", "approve", "1", "--user", "alice")),
    ],
    ids=["postgres-closed-port", "sqlite-under-a-file", "sqlite-a-directory"],
)
def test_store_down_is_one_line_and_exit_3(url: str, args: tuple[str, ...]) -> None:
    out = run_cli_process(url, *args)  # a real interpreter: nothing but the line reaches the terminal
    line = one_line_error(out)
    assert out.returncode == 3 and line.startswith("the decision store is unavailable")
    assert "secret" not in line


def test_validate_without_a_path_checks_the_configured_specs_folder(tmp_path: Path) -> None:
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "open_quote.yaml").write_text('id: x\nowner: "me\nsteps:\n  - id: a\n    type: python\n')
    env = {**os.environ, "AIRFLOW__HITL__SPECS_FOLDER": str(specs)}
    out = subprocess.run([sys.executable, "-m", "hitl", "validate"], capture_output=True, text=True, env=env, cwd=REPO)
    assert out.returncode == 1
    assert out.stdout.startswith(f"{specs / 'open_quote.yaml'}:2: YAML syntax error"), out.stdout
    assert "1 spec(s) checked, 1 invalid" in out.stderr


def test_output_json_changes_only_the_fields_given(cli, sqlite_store: Store) -> None:  # type: ignore[no-untyped-def]
    req, _ = sqlite_store.record_request(gate())
    code, _, err = cli("approvals", "approve", str(req.id), "--user", "alice", "--output-json", '{"body": null}')
    assert code == 1 and err == "invalid edit: body is required"  # null removes a field: the edit check sees it
    code, out, _ = cli("approvals", "approve", str(req.id), "--user", "alice", "--output-json", '{"subject": "New"}')
    assert code == 0 and out.startswith(f"request {req.id} approved by alice; "), out
    edited = sqlite_store.get(req.id).edited_output  # type: ignore[union-attr]
    assert edited == {**req.output, "subject": "New"}  # from, to and body as drafted


def _leaf_commands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> list[str]:
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        return [" ".join(prefix)]
    return [c for name, p in subs[0].choices.items() for c in _leaf_commands(p, (*prefix, name))]


def test_help_lists_every_command_and_each_subcommand_has_a_line() -> None:
    parser = build_parser()
    leaves = _leaf_commands(parser)
    assert {"validate", "db upgrade", "approvals approve", "roles sync", "audit export"} <= set(leaves)
    top = parser.format_help()
    missing = [leaf for leaf in leaves if f"  {leaf} " not in top and not top.rstrip().endswith(leaf)]
    assert not missing, f"python -m hitl --help does not list {missing}"
    out = subprocess.run(
        [sys.executable, "-m", "hitl", "approvals", "--help"], capture_output=True, text=True, cwd=REPO, check=True
    )
    for leaf in (leaf for leaf in leaves if leaf.startswith("approvals ")):
        line = next((ln for ln in out.stdout.splitlines() if ln.split()[:1] == [leaf.split()[1]]), "")
        assert len(line.split()) > 1, f"approvals --help gives {leaf!r} no description: {out.stdout}"


def test_piping_into_head_ends_quietly(sqlite_store: Store) -> None:
    for i in range(300):  # far more than a pipe's buffer holds
        sqlite_store.record_request(gate(run_id=f"manual__{i}"))
    env = {**os.environ, "AIRFLOW__HITL__STORE_URL": sqlite_store.url}
    env.pop("HITL_DEBUG", None)
    out = subprocess.run(
        f"{sys.executable} -m hitl approvals list --json | head -n 3",
        shell=True,
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        executable="/bin/bash",
    )
    assert out.stdout.splitlines()[0] == "[" and len(out.stdout.splitlines()) == 3
    assert out.stderr == "", out.stderr  # no BrokenPipeError, no "Exception ignored"


IMPORTS_PROBE = """
import sys
from hitl.cli import main
code = main(sys.argv[1:])
print("AIRFLOW_LOADED" if "airflow" in sys.modules else "AIRFLOW_NOT_LOADED", code)
"""


@pytest.mark.parametrize(
    "args",
    [
        ("validate", "workflow_specs"),
        ("approvals", "list"),
        ("approvals", "list", "--json"),
        ("approvals", "show", "{id}"),
        ("approvals", "comment", "{id}", "--user", "alice", "--body", "looks good"),
        ("audit", "export", "--request", "{id}"),
    ],
    ids=lambda a: "-".join(a[:2]),
)
def test_commands_that_do_not_need_airflow_do_not_import_it(sqlite_store: Store, args: tuple[str, ...]) -> None:
    # Importing Airflow is about a second on an idle machine; reading a request or a spec needs none of it.
    req, _ = sqlite_store.record_request(gate())
    env = {
        **os.environ,
        "AIRFLOW__HITL__STORE_URL": sqlite_store.url,
        "AIRFLOW__HITL__SECRET_KEY": "a-test-signing-key-0123456789",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "alice:user",
        "PYTHONPATH": str(REPO / "plugins"),
    }
    argv = [a.format(id=req.id) for a in args]
    out = subprocess.run(
        [sys.executable, "-c", IMPORTS_PROBE, *argv], capture_output=True, text=True, env=env, cwd=REPO
    )
    assert out.stdout.splitlines()[-1] == "AIRFLOW_NOT_LOADED 0", out.stdout[-1000:] + out.stderr[-2000:]


def test_a_comment_naming_nobody_says_so(cli, sqlite_store: Store) -> None:  # type: ignore[no-untyped-def]
    req, _ = sqlite_store.record_request(gate())
    code, out, _ = cli("approvals", "comment", str(req.id), "--user", "alice", "--body", "@bobb can you check?")
    assert code == 0 and out == f"comment 1 added to request {req.id}; no user @bobb: not notified (left as text)"
