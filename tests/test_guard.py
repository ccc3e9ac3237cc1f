"""The approval is the only key: a step after a gate acts on the stored approval, nothing else."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import update

from helpers import gate
from hitl.decisions import decide
from hitl.guard import GateNotApproved, check_approval
from hitl.identity import Reviewer
from hitl.store import Store
from hitl.store.schema import approval_request

ALICE = Reviewer("alice")
WHERE: dict[str, Any] = {"dag_id": "outreach", "run_id": "manual__1", "gate_task_id": "draft_email__approval"}


def _refusals(store: Store, request_id: int | None = None) -> list[dict]:
    from sqlalchemy import select

    from hitl.store.schema import audit_event

    with store.engine.connect() as conn:
        rows = conn.execute(select(audit_event).where(audit_event.c.event == "gate_bypass_refused")).all()
    import json

    return [json.loads(r.detail) | {"request_id": r.request_id} for r in rows]


def test_no_request_at_all_is_refused_and_audited(store: Store) -> None:
    # The gate was marked success before it ever ran: no request, so nothing may act.
    with pytest.raises(GateNotApproved, match=r"^no recorded approval for gate draft_email__approval in run manual__1"):
        check_approval(**WHERE, store=store, acting_task="send_email")
    [refusal] = _refusals(store)
    assert refusal["request_id"] is None and refusal["acting_task"] == "send_email"


@pytest.mark.parametrize("action", ["pending", "reject"])
def test_pending_or_rejected_request_is_refused(store: Store, action: str) -> None:
    req, _ = store.record_request(gate())
    if action == "reject":
        decide(store, req.id, ALICE, "reject", comment="no")
    with pytest.raises(
        GateNotApproved, match=rf"request {req.id} is {'pending' if action == 'pending' else 'rejected'}"
    ):
        check_approval(**WHERE, store=store)
    assert [r["request_id"] for r in _refusals(store)] == [req.id]


def test_approved_output_comes_from_the_store_with_the_edit(store: Store) -> None:
    req, _ = store.record_request(gate())
    edited = {**req.output, "subject": "Edited"}
    decide(store, req.id, ALICE, "approve", edited_output=edited)
    assert check_approval(**WHERE, store=store, step_output=req.output) == edited
    assert _refusals(store) == []


def test_an_approval_does_not_count_for_another_output(store: Store) -> None:
    # The gated step's output was replaced (a forged XCom, or a re-run) after the reviewer approved.
    req, _ = store.record_request(gate())
    decide(store, req.id, ALICE, "approve")
    with pytest.raises(GateNotApproved, match=r"output of step draft_email changed after request \d+ was approved"):
        check_approval(**WHERE, store=store, step_output={**req.output, "body": "forged"})
    assert len(_refusals(store)) == 1


def test_approval_of_another_run_or_gate_does_not_count(store: Store) -> None:
    req, _ = store.record_request(gate())
    decide(store, req.id, ALICE, "approve")
    with pytest.raises(GateNotApproved, match="in run manual__2"):
        check_approval(**{**WHERE, "run_id": "manual__2"}, store=store)
    with pytest.raises(GateNotApproved, match="gate other__approval"):
        check_approval(**{**WHERE, "gate_task_id": "other__approval"}, store=store)


def test_a_superseded_approval_does_not_count(store: Store) -> None:
    req, _ = store.record_request(gate())
    decide(store, req.id, ALICE, "approve")
    # Someone rewrites the stored status by hand: the guard reads the live request only.
    with store.writing() as conn:
        conn.execute(update(approval_request).where(approval_request.c.id == req.id).values(status="superseded"))
    with pytest.raises(GateNotApproved, match="no approval request was made"):
        check_approval(**WHERE, store=store)


def _bound_refusals(store: Store) -> list[dict]:
    import json

    from sqlalchemy import select

    from hitl.store.schema import audit_event

    with store.engine.connect() as conn:
        rows = conn.execute(select(audit_event).where(audit_event.c.event == "bound_input_refused")).all()
    return [json.loads(r.detail) | {"request_id": r.request_id} for r in rows]


def test_a_bound_input_must_be_what_the_reviewer_saw(store: Store) -> None:
    seen = {"contact": {"to": "pat@example.com"}}
    req, _ = store.record_request(gate(bound=seen))
    assert store.bound_inputs(req.id) == seen
    decide(store, req.id, ALICE, "approve")
    now = {"contact": {"to": "pat@example.com"}}
    ok = check_approval(**WHERE, binds=["contact"], output_now=now.__getitem__, acting_task="send_email", store=store)
    assert ok == req.output and _bound_refusals(store) == []

    now["contact"] = {"to": "bob@evil.example"}  # changed after the review (an XCom edit)
    with pytest.raises(GateNotApproved, match=r"the output of step contact changed after request \d+"):
        check_approval(**WHERE, binds=["contact"], output_now=now.__getitem__, acting_task="send_email", store=store)
    (refusal,) = _bound_refusals(store)
    assert refusal["request_id"] == req.id and refusal["acting_task"] == "send_email"
    assert "bob@evil.example" not in refusal["reason"]

    with pytest.raises(GateNotApproved, match="did not bind: the approval does not cover it"):
        check_approval(**WHERE, binds=["other"], output_now=lambda step: 1, acting_task="send_email", store=store)
    assert len(_bound_refusals(store)) == 2


def test_a_changed_bound_input_makes_a_new_request(store: Store) -> None:
    first, created = store.record_request(gate(bound={"contact": {"to": "pat@example.com"}}))
    again, created_again = store.record_request(gate(bound={"contact": {"to": "pat@example.com"}}))
    assert created and not created_again and again.id == first.id  # a retry: the same request
    changed, created = store.record_request(gate(bound={"contact": {"to": "bob@evil.example"}}))
    assert created and changed.id != first.id  # the reviewer must see the new value
    old = store.get(first.id)
    assert old is not None and old.status == "superseded"
    assert store.bound_inputs(changed.id) == {"contact": {"to": "bob@evil.example"}}


def test_a_chained_output_must_be_what_its_step_returned(store: Store) -> None:
    """A step after a gate reads another post-gate step's output: the value it reads must be the one recorded."""
    from hitl.guard import check_recorded_output, record_output

    req, _ = store.record_request(gate())
    decide(store, req.id, Reviewer("alice", roles=frozenset({"user"})), "approve")
    where: dict[str, Any] = {"dag_id": "outreach", "run_id": "manual__1"}
    final = {"to": "pat@example.com", "text": "Hello"}
    with pytest.raises(GateNotApproved, match="never recorded after its approval"):
        check_recorded_output(**where, step_task_id="finalize", value=final, acting_task="send", store=store)
    record_output(**where, task_id="finalize", value=final, store=store)
    check_recorded_output(**where, step_task_id="finalize", value=final, acting_task="send", store=store)  # the same
    tampered = {**final, "to": "bob@evil.example"}
    with pytest.raises(GateNotApproved, match="changed after the step returned it") as refused:
        check_recorded_output(
            **where, step_task_id="finalize", value=tampered, acting_task="send",
            gate_task_id="draft_email__approval", store=store,
        )  # fmt: skip
    assert "bob@evil.example" not in str(refused.value)
    [audited] = [e for e in store.history(req.id) if e.event == "step_output_refused"]
    assert audited.detail["source"] == "finalize" and audited.detail["acting_task"] == "send"
    record_output(**where, task_id="finalize", value=tampered, store=store)  # a retry of the step records anew
    check_recorded_output(**where, step_task_id="finalize", value=tampered, acting_task="send", store=store)
