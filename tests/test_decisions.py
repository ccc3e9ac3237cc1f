"""The decision service: who may decide, what an edit must be, and that a decision is final."""

from __future__ import annotations

import pytest

from helpers import gate
from hitl.decisions import AlreadyDecided, DecisionError, InvalidEdit, NotAllowed, StaleOutput, decide
from hitl.identity import Reviewer
from hitl.store import APPROVED, PENDING, REJECTED, Store

ALICE = Reviewer("alice", email="alice@example.com", roles=frozenset({"user"}))
BOB = Reviewer("bob", roles=frozenset({"user"}))
ADMIN = Reviewer("admin", roles=frozenset({"admin"}))


def test_listed_approver_approves_and_history_records_it(sqlite_store: Store) -> None:
    req, _ = sqlite_store.record_request(gate())
    outcome = decide(sqlite_store, req.id, ALICE, "approve", comment="looks good", channel="test")
    assert outcome.final and outcome.request.status == APPROVED
    assert outcome.request.decided_by == "alice" and outcome.request.comment == "looks good"
    assert outcome.request.final_output == req.output
    history = sqlite_store.history(req.id)
    assert [e.event for e in history] == ["requested", "approved"]
    assert history[-1].actor == "alice" and history[-1].detail["channel"] == "test"


def test_non_approver_is_refused_and_audited(sqlite_store: Store) -> None:
    req, _ = sqlite_store.record_request(gate())
    with pytest.raises(
        NotAllowed, match=r"bob is not an approver of request \d+ \(outreach.draft_email; approvers: alice\)"
    ):
        decide(sqlite_store, req.id, BOB, "approve")
    after = sqlite_store.get(req.id)
    assert after is not None and after.status == PENDING
    assert sqlite_store.history(req.id)[-1].event == "refused"


def test_admin_decides_only_when_no_approvers_are_listed(sqlite_store: Store) -> None:
    listed, _ = sqlite_store.record_request(gate())
    with pytest.raises(NotAllowed):
        decide(sqlite_store, listed.id, ADMIN, "approve")
    open_gate, _ = sqlite_store.record_request(gate(run_id="r2", approvers=[]))
    with pytest.raises(NotAllowed):
        decide(sqlite_store, open_gate.id, BOB, "approve")
    assert decide(sqlite_store, open_gate.id, ADMIN, "approve").request.status == APPROVED


@pytest.mark.parametrize(
    ("approvers", "allowed"),
    [
        ([{"role": "Op"}], Reviewer("carol", roles=frozenset({"op"}))),
        ([{"email": "Alice@Example.com"}], ALICE),
        ([{"userId": "alice"}], ALICE),
    ],
)
def test_approver_by_role_email_or_user(
    sqlite_store: Store, approvers: list[dict[str, str]], allowed: Reviewer
) -> None:
    req, _ = sqlite_store.record_request(gate(approvers=approvers))
    with pytest.raises(NotAllowed):
        decide(sqlite_store, req.id, BOB, "approve")
    assert decide(sqlite_store, req.id, allowed, "approve").final


def test_second_decision_is_refused_with_who_and_when(sqlite_store: Store) -> None:
    req, _ = sqlite_store.record_request(gate())
    decide(sqlite_store, req.id, ALICE, "reject", comment="wrong prospect")
    with pytest.raises(
        AlreadyDecided, match=r"already decided by alice at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC \(rejected\)"
    ):
        decide(sqlite_store, req.id, ALICE, "approve")
    final = sqlite_store.get(req.id)
    assert final is not None and final.status == REJECTED and final.comment == "wrong prospect"


def test_reject_needs_a_reason(sqlite_store: Store) -> None:
    req, _ = sqlite_store.record_request(gate())
    with pytest.raises(DecisionError, match="a reason is required"):
        decide(sqlite_store, req.id, ALICE, "reject", comment="  ")


def test_edit_and_approve_keeps_original_and_edit(sqlite_store: Store) -> None:
    req, _ = sqlite_store.record_request(gate())
    edited = dict(req.output, subject="Better subject")
    outcome = decide(sqlite_store, req.id, ALICE, "approve", edited_output=edited)
    assert outcome.request.output["subject"] == "Hello"
    assert outcome.request.edited_output["subject"] == "Better subject"  # type: ignore[index]
    assert outcome.request.final_output == edited
    assert sqlite_store.history(req.id)[-1].event == "edited"


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"body": ""}, "body", "body is required"),
        ({"to": "not an address"}, "to", "to: 'not an address' is not an email address"),
        ({"from": None}, "from", "from is required"),
        ({"subject": "two\nlines"}, "subject", "subject must be one line"),
    ],
)
def test_invalid_edit_names_the_field(sqlite_store: Store, change: dict[str, object], field: str, message: str) -> None:
    req, _ = sqlite_store.record_request(gate())
    with pytest.raises(InvalidEdit) as info:
        decide(sqlite_store, req.id, ALICE, "approve", edited_output={**req.output, **change})
    assert info.value.errors[field] == message
    assert str(info.value).startswith("invalid edit: ")
    assert sqlite_store.get(req.id).status == PENDING  # type: ignore[union-attr]


def test_json_output_cannot_be_edited(sqlite_store: Store) -> None:
    req, _ = sqlite_store.record_request(gate(output={"rows": 3}, output_kind="json"))
    with pytest.raises(InvalidEdit, match="cannot be edited"):
        decide(sqlite_store, req.id, ALICE, "approve", edited_output={"rows": 4})


def test_decision_on_stale_content_is_refused(sqlite_store: Store) -> None:
    req, _ = sqlite_store.record_request(gate())
    with pytest.raises(StaleOutput):
        decide(sqlite_store, req.id, ALICE, "approve", seen_hash="0" * 64)
    assert decide(sqlite_store, req.id, ALICE, "approve", seen_hash=req.output_hash).final


def test_superseded_request_cannot_be_decided(sqlite_store: Store) -> None:
    old, _ = sqlite_store.record_request(gate())
    new, _ = sqlite_store.record_request(gate(output={**old.output, "body": "changed"}))
    with pytest.raises(AlreadyDecided, match=f"superseded by request {new.id}"):
        decide(sqlite_store, old.id, ALICE, "approve")


def test_quorum_needs_distinct_approvers_and_one_reject_rejects(sqlite_store: Store) -> None:
    team = [{"userId": "alice"}, {"userId": "bob"}, {"userId": "carol"}]
    req, _ = sqlite_store.record_request(gate(approvers=team, min_approvals=2))
    with pytest.raises(DecisionError, match="edit & approve is not available when 2 approvals are needed"):
        decide(sqlite_store, req.id, ALICE, "approve", edited_output={**req.output, "subject": "x"})
    first = decide(sqlite_store, req.id, ALICE, "approve")
    assert not first.final and first.request.status == PENDING and "1 of 2" in first.message
    with pytest.raises(AlreadyDecided, match="alice already approved"):
        decide(sqlite_store, req.id, ALICE, "approve")
    second = decide(sqlite_store, req.id, BOB, "approve")
    assert second.final and second.request.status == APPROVED

    other, _ = sqlite_store.record_request(gate(run_id="r2", approvers=team, min_approvals=2))
    decide(sqlite_store, other.id, ALICE, "approve")
    assert decide(sqlite_store, other.id, BOB, "reject", comment="no").request.status == REJECTED


def test_self_approval_guard(sqlite_store: Store) -> None:
    req, _ = sqlite_store.record_request(
        gate(triggered_by="alice", allow_self_approval=False, approvers=[{"userId": "alice"}, {"userId": "bob"}])
    )
    with pytest.raises(NotAllowed, match="triggered this run and may not approve it"):
        decide(sqlite_store, req.id, ALICE, "approve")
    assert decide(sqlite_store, req.id, BOB, "approve").final


def test_a_plain_approval_of_an_output_that_cannot_be_sent_is_refused(sqlite_store: Store) -> None:
    # The draft itself carries a header injection: approving it as it is must not reach the email step.
    bad = {
        "from": "sam@acme.example",
        "to": "owner@shop.example\r\nBcc: all@victim.example",
        "subject": "Hi",
        "body": "x",
    }
    req, _ = sqlite_store.record_request(gate(output=bad))
    with pytest.raises(InvalidEdit, match="cannot be acted on as it is") as info:
        decide(sqlite_store, req.id, ALICE, "approve")
    assert "to" in info.value.errors
    assert sqlite_store.get(req.id).status == PENDING  # type: ignore[union-attr]
    # Editing it into a sendable email is the way through.
    fixed = {**bad, "to": "owner@shop.example"}
    assert decide(sqlite_store, req.id, ALICE, "approve", edited_output=fixed).request.status == APPROVED


@pytest.mark.parametrize("comment", [123, ["a"], {"x": 1}, "x" * 2001])
def test_a_reason_that_is_not_short_text_is_refused(sqlite_store: Store, comment: object) -> None:
    req, _ = sqlite_store.record_request(gate())
    with pytest.raises(DecisionError, match=r"the reason (must be text|is too long)"):
        decide(sqlite_store, req.id, ALICE, "reject", comment=comment)  # type: ignore[arg-type]
    assert sqlite_store.get(req.id).status == PENDING  # type: ignore[union-attr]
    assert sqlite_store.votes(req.id) == []
