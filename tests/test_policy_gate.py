"""Gate policies at the gate: dag.test() runs the sensor for real; the store is the project's configured one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from test_sensor import reviewer, states

import sensor_dags
from hitl.decisions import decide
from hitl.identity import Reviewer
from hitl.store import RequestQuery, get_store

ALICE = Reviewer("alice")


@pytest.fixture(autouse=True)
def _db(airflow_db: Path) -> None:
    sensor_dags.RECEIVED.clear()


def only_request(dag_id: str, run: Any) -> Any:
    """The one request of this run (the store is the session's: other tests' runs are in it too)."""
    (req,) = [r for r in get_store().list_requests(RequestQuery(dag_id=dag_id, status="all")) if r.run_id == run.run_id]
    return req


def test_an_enforced_policy_approves_a_matching_draft_without_a_human(smtp_server: Any) -> None:
    run = sensor_dags.policy_enforce.test(run_conf={"confidence": 0.95})
    assert run.state == "success", states(run)
    assert sensor_dags.RECEIVED["policy_enforce"] == sensor_dags.draft()  # the step after the gate acted
    req = only_request("policy_enforce", run)
    assert (req.status, req.decided_by) == ("approved", "policy:draft__approval")
    history = [(e.event, e.actor) for e in get_store().history(req.id)]
    assert ("policy_verdict", "policy:draft__approval") in history and ("approved", "policy:draft__approval") in history
    approved = next(e for e in get_store().history(req.id) if e.event == "approved")
    assert approved.detail["channel"] == "policy" and approved.detail["policy"]["rule"] == "approveWhen"
    assert not smtp_server.messages  # a policy decision notifies nobody unless the spec asks


def test_an_enforced_policy_leaves_a_draft_it_does_not_match_to_a_human(smtp_server: Any) -> None:
    reviewer("policy_enforce", lambda r: decide(get_store(), r.id, ALICE, "reject", comment="not this one"))
    run = sensor_dags.policy_enforce.test(run_conf={"confidence": 0.4})
    assert states(run)["draft__approval"] == "skipped"
    req = only_request("policy_enforce", run)
    assert (req.status, req.decided_by) == ("rejected", "alice")
    verdict = get_store().verdict(req.id)
    assert verdict is not None and verdict.decision == "none" and verdict.reason == "no rule matched"


def test_a_shadow_policy_only_records_and_the_human_decision_is_kept_beside_it() -> None:
    reviewer("policy_shadow", lambda r: decide(get_store(), r.id, ALICE, "reject", comment="too pushy"))
    run = sensor_dags.policy_shadow.test(run_conf={"confidence": 0.99})
    assert states(run)["draft__approval"] == "skipped" and "policy_shadow" not in sensor_dags.RECEIVED
    req = only_request("policy_shadow", run)
    assert (req.status, req.decided_by) == ("rejected", "alice")
    rejected = next(e for e in get_store().history(req.id) if e.event == "rejected")
    assert rejected.detail["policy"]["decision"] == "approve" and rejected.detail["policy"]["mode"] == "shadow"


def test_an_enforced_reject_rule_skips_the_gate_and_nothing_is_sent() -> None:
    run = sensor_dags.policy_reject.test()
    assert states(run) == {"score": "success", "draft": "success", "draft__approval": "skipped", "send": "skipped"}
    req = only_request("policy_reject", run)
    assert (req.status, req.decided_by) == ("rejected", "policy:draft__approval")
    assert req.comment.startswith("rejectWhen matched (rule ")


def test_a_sampled_match_goes_to_a_human() -> None:
    reviewer("policy_sampled", lambda r: decide(get_store(), r.id, ALICE, "approve"))
    run = sensor_dags.policy_sampled.test(run_conf={"confidence": 0.99})
    assert run.state == "success", states(run)
    req = only_request("policy_sampled", run)
    assert req.decided_by == "alice"
    verdict = get_store().verdict(req.id)
    assert verdict is not None and verdict.decision == "approve" and verdict.sampled
