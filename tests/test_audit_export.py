"""The audit export: every event of a request, a workflow or a time range, as JSON Lines and CSV (CLI and API)."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta
from typing import Any

import pytest

from helpers import gate
from hitl.audit_export import AuditFilter, parse_time, render, rows
from hitl.cli import main
from hitl.decisions import NotAllowed, decide
from hitl.identity import Reviewer
from hitl.store import Store, utcnow

ALICE = Reviewer("alice", email="alice@example.com", roles=frozenset({"user"}))
BOB = Reviewer("bob", roles=frozenset({"user"}))


def _decided_trail(store: Store) -> tuple[int, int]:
    """Two workflows: an edit-and-approve after a refused vote, and a rejection."""
    edited, _ = store.record_request(gate(dag_id="outreach"))
    with pytest.raises(NotAllowed):
        decide(store, edited.id, BOB, "approve", channel="ui")
    decide(store, edited.id, ALICE, "approve", edited_output={**edited.output, "subject": "Edited"}, channel="ui")
    rejected, _ = store.record_request(gate(dag_id="billing", run_id="r2"))
    decide(store, rejected.id, ALICE, "reject", comment="=HYPERLINK(evil)", channel="api")
    return edited.id, rejected.id


def test_a_requests_trail_says_what_was_shown_decided_by_whom_with_which_edit(store: Store) -> None:
    edited, _ = _decided_trail(store)
    trail = list(rows(store, AuditFilter(request_id=edited)))
    assert [r["event"] for r in trail] == ["requested", "refused", "edited"]
    requested, refused, approved = trail
    assert requested["shown_output"]["subject"] == "Hello" and requested["output_hash"]
    assert refused["actor"] == "bob" and refused["channel"] == "ui"
    assert approved["actor"] == "alice" and approved["edited_output"]["subject"] == "Edited"
    assert {r["workflow"] for r in trail} == {"outreach"} and approved["shown_output"] is None


def test_filters_by_workflow_and_time_range_and_pages_through_everything(store: Store) -> None:
    _decided_trail(store)
    everything = list(rows(store, AuditFilter()))
    assert list(rows(store, AuditFilter(), page_size=2)) == everything  # pages of two give the same rows, in order
    assert [r["id"] for r in everything] == sorted(r["id"] for r in everything)
    assert {r["workflow"] for r in rows(store, AuditFilter(workflow="billing"))} == {"billing"}
    assert len(list(rows(store, AuditFilter(workflow="billing")))) == 2
    assert list(rows(store, AuditFilter(since=utcnow() + timedelta(minutes=1)))) == []
    assert list(rows(store, AuditFilter(until=utcnow() + timedelta(minutes=1)))) == everything


def test_csv_has_one_row_per_event_nested_values_as_json_and_no_formula(store: Store) -> None:
    _, rejected = _decided_trail(store)
    text = "".join(render(rows(store, AuditFilter(request_id=rejected)), "csv"))
    table = list(csv.DictReader(io.StringIO(text)))
    assert [r["event"] for r in table] == ["requested", "rejected"]
    assert table[1]["comment"] == "'=HYPERLINK(evil)"  # a spreadsheet shows it, never runs it
    assert json.loads(table[1]["detail"])["channel"] == "api"


def test_bad_filters_are_refused_with_the_reason() -> None:
    with pytest.raises(ValueError, match="must be before"):
        AuditFilter(since=utcnow(), until=utcnow() - timedelta(days=1))
    with pytest.raises(ValueError, match="since must carry a time zone"):
        parse_time("2026-12-01T00:00:00", "since")
    with pytest.raises(ValueError, match="until must be an ISO 8601 time"):
        parse_time("yesterday", "until")
    with pytest.raises(ValueError, match="unknown format"):
        list(render([], "xml"))


def test_cli_exports_jsonl_to_stdout_and_csv_to_a_file(configured: Store, capsys: Any, tmp_path: Any) -> None:
    edited, _ = _decided_trail(configured)
    assert main(["audit", "export", "--request", str(edited)]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["event"] for r in lines] == ["requested", "refused", "edited"]
    target = tmp_path / "audit.csv"
    assert main(["audit", "export", "--workflow", "billing", "--format", "csv", "--output", str(target)]) == 0
    assert [r["event"] for r in csv.DictReader(target.open())] == ["requested", "rejected"]
    with pytest.raises(SystemExit) as usage:
        main(["audit", "export", "--since", "2026-12-01"])
    assert usage.value.code == 2 and "--since must carry a time zone" in capsys.readouterr().err
