"""Policy verdicts in the store, the policy's own decisions, and shadow agreement (SQLite and PostgreSQL)."""

from __future__ import annotations

from typing import Any

import pytest

from helpers import gate
from hitl.decisions import InvalidEdit, decide, decide_by_policy
from hitl.identity import Reviewer
from hitl.policy import GatePolicy
from hitl.policy_report import agreement, report
from hitl.store import Store
from hitl.store.policy_reads import judged

ALICE = Reviewer("alice")
CONFIDENT = {"path": "steps.score.output.confidence", "gte": 0.9}


def verdict(confidence: float, *, mode: str = "shadow", sample: float = 0.0, run: str = "r") -> Any:
    policy = GatePolicy.parse({"mode": mode, "approveWhen": CONFIDENT, "sample": sample})
    values = {"output": {}, "steps": {"score": {"output": {"confidence": confidence}}}, "params": {}}
    return policy.verdict(values, sample_key=run)


def recorded(store: Store, run: str, confidence: float, **kw: Any) -> Any:
    options = {k: kw.pop(k) for k in list(kw) if k in ("min_approvals", "approvers")}
    req, created = store.record_request(gate(run_id=run, verdict=verdict(confidence, run=run, **kw), **options))
    assert created
    return req


def test_the_verdict_is_stored_with_its_request_and_held_where_a_policy_may_not_act(store: Store) -> None:
    plain = recorded(store, "r1", 0.95, mode="enforce")
    stored = store.verdict(plain.id)
    assert stored is not None and stored.acts and stored.rule == "approveWhen"
    assert [e.event for e in store.history(plain.id)] == ["requested", "policy_verdict"]

    quorum = recorded(store, "r2", 0.95, mode="enforce", min_approvals=2, approvers=[{"role": "ops"}])
    held = store.verdict(quorum.id)
    assert held is not None and not held.acts and held.held == "the gate needs 2 approvals"

    assert store.verdict(store.record_request(gate(run_id="r3"))[0].id) is None  # no policy: no verdict


def test_a_policy_never_approves_what_a_human_could_not(store: Store) -> None:
    bad = {"from": "sam@acme.example", "to": "not an address", "subject": "Hi", "body": "x"}
    req, _ = store.record_request(gate(output=bad, verdict=verdict(0.99, mode="enforce")))
    stored = store.verdict(req.id)
    assert stored is not None and stored.acts
    with pytest.raises(InvalidEdit, match="cannot be acted on as it is"):
        decide_by_policy(store, req, stored)
    assert store.get(req.id).status == "pending"  # type: ignore[union-attr]


def test_a_policy_decision_is_a_decision_like_any_other(store: Store) -> None:
    req = recorded(store, "r1", 0.95, mode="enforce")
    stored = store.verdict(req.id)
    assert stored is not None
    outcome = decide_by_policy(store, req, stored)
    assert (outcome.request.status, outcome.request.decided_by) == ("approved", "policy:draft_email__approval")
    with pytest.raises(Exception, match="already decided by policy:draft_email__approval"):
        decide(store, req.id, ALICE, "reject", comment="too late")
    with pytest.raises(Exception, match="already decided"):
        decide_by_policy(store, req, stored)


def test_after_a_change_request_the_policy_holds_off(store: Store) -> None:
    first = recorded(store, "r1", 0.2, mode="enforce")
    with store.writing() as conn:  # what "request changes" leaves (the re-run itself is tested in test_changes.py)
        store.close_request(
            conn, first.id, status="changes_requested", user="alice", comment="warmer", edited_output=None
        )
    second, created = store.record_request(
        gate(run_id="r1", output={**first.output, "body": "Warmer"}, verdict=verdict(0.99, mode="enforce"))
    )
    assert created and second.revision == 2
    held = store.verdict(second.id)
    assert held is not None and held.decision == "approve" and not held.acts
    assert held.held == "draft 2: a reviewer asked for changes in this run"


def test_shadow_agreement_over_twenty_human_decisions(store: Store) -> None:
    """20 drafts: the policy would approve 12 (confidence >= 0.9); humans approve 10 of them, reject 2, and decide
    the 8 others themselves (5 approved, 2 rejected, 1 with an edit)."""
    expected_pairs = []
    for i in range(20):
        confidence = 0.95 if i < 12 else 0.3
        req = recorded(store, f"r{i}", confidence)
        if i in (3, 7):
            decide(store, req.id, ALICE, "reject", comment="off-tone")
            expected_pairs.append(req.id)
        elif i == 15:
            decide(store, req.id, ALICE, "approve", edited_output={**req.output, "subject": "Better"})
        elif i in (13, 18):
            decide(store, req.id, ALICE, "reject", comment="no")
        else:
            decide(store, req.id, ALICE, "approve")
    recorded(store, "pending", 0.95)  # not decided yet: not counted
    (found,) = report(store, last=200, dag_id="outreach")
    figures = found.as_dict()
    assert figures["decisions"] == 20 and figures["would_decide"] == 12 and figures["left_to_human"] == 8
    assert figures["agreed"] == 10 and figures["disagreed"] == 2 and figures["agreement"] == round(10 / 12, 4)
    assert figures["approve_reject"] == 2 and figures["reject_approve"] == 0 and figures["saved"] == 12
    assert sorted(d["request_id"] for d in figures["disagreements"]) == sorted(expected_pairs)
    assert all(d["policy"] == "approve" and d["human"] == "reject" for d in figures["disagreements"])
    # The window is the last N decisions, newest first.
    assert report(store, last=5, dag_id="outreach")[0].decisions == 5
    assert report(store, last=200, dag_id="billing") == []
    assert report(store, last=200, dag_ids=[]) == []


def test_policy_decisions_and_a_new_rule_are_counted_apart(store: Store) -> None:
    req = recorded(store, "auto", 0.99, mode="enforce")
    stored = store.verdict(req.id)
    assert stored is not None
    decide_by_policy(store, req, stored)
    other_rule = GatePolicy.parse({"approveWhen": {"path": "steps.score.output.confidence", "gte": 0.5}})
    values = {"output": {}, "steps": {"score": {"output": {"confidence": 0.7}}}, "params": {}}
    second, _ = store.record_request(gate(run_id="new", verdict=other_rule.verdict(values, sample_key="k")))
    decide(store, second.id, ALICE, "approve")
    rows = judged(store.engine, last=100)
    assert [r.request_id for r in rows] == [second.id]  # the policy's own decision is not a human's
    (only,) = agreement(rows)
    assert only.rule_hash == other_rule.rule_hash and only.agreed == 1


def test_sampled_drafts_are_not_counted_as_saved(store: Store) -> None:
    req = recorded(store, "s", 0.99, mode="enforce", sample=1)
    decide(store, req.id, ALICE, "approve")
    (found,) = report(store, last=10)
    assert found.would_decide == 1 and found.agreed == 1 and found.saved == 0
