"""What a reviewer may do with a request (``hitl.access``), and that ``decide`` and the store's lists apply it."""

from __future__ import annotations

import threading
from dataclasses import replace
from typing import Any

import pytest

from helpers import gate
from hitl.access import Action, Refusal, access
from hitl.comments import add_comment
from hitl.decisions import AlreadyDecided, NoRevisionsLeft, NotAllowed, NotFound, decide
from hitl.identity import Reviewer
from hitl.store import PENDING, RequestQuery, Store

ALICE = Reviewer("alice", email="alice@example.com", roles=frozenset({"user"}))
DECISIONS = (Action.APPROVE, Action.EDIT, Action.REJECT, Action.REQUEST_CHANGES)


def only(reviewer: Reviewer, *dags: str) -> Reviewer:
    return replace(reviewer, dags=frozenset(dags))


def test_a_listed_approver_may_do_everything_on_a_pending_request(sqlite_store: Store) -> None:
    req, _ = sqlite_store.record_request(gate())
    rights = access(req, ALICE)
    assert all(rights.may(a) for a in Action) and rights.may_decide


def test_a_request_of_a_dag_the_reviewer_may_not_read_does_not_exist_for_them(sqlite_store: Store) -> None:
    req, _ = sqlite_store.record_request(gate())  # DAG "outreach"
    other, _ = sqlite_store.record_request(gate(dag_id="payroll", run_id="r2"))
    reader = only(ALICE, "outreach")
    rights = access(other, reader)
    assert {rights.why_not(a).reason for a in Action} == {Refusal.NOT_FOUND}  # type: ignore[union-attr]
    assert rights.why_not(Action.READ).message == f"no approval request {other.id}"  # type: ignore[union-attr]
    with pytest.raises(NotFound, match=rf"^no approval request {other.id}$"):
        decide(sqlite_store, other.id, reader, "approve")
    with pytest.raises(NotFound, match=rf"^no approval request {other.id}$"):  # not even its length is checked
        decide(sqlite_store, other.id, reader, "reject", comment="x" * 5000)
    with pytest.raises(NotFound):
        add_comment(sqlite_store, other.id, reader, "hello")
    assert sqlite_store.get(other.id).status == PENDING  # type: ignore[union-attr]
    assert sqlite_store.comments(other.id) == []
    assert [e.event for e in sqlite_store.history(other.id)][-1] == "refused"  # the attempt is audited
    # Lists and counts: the same query narrowed to what the reader may read
    assert [r.id for r in sqlite_store.list_requests(RequestQuery.for_reader(reader))] == [req.id]
    assert sqlite_store.count(RequestQuery.for_reader(reader, decidable_by=reader)) == 1
    assert sqlite_store.count(RequestQuery.for_reader(only(ALICE))) == 0  # no readable DAG: nothing at all
    assert sqlite_store.count(RequestQuery.for_reader(ALICE)) == 2  # not narrowed (dags=None)


def test_closed_not_listed_and_no_permission_each_say_why(sqlite_store: Store) -> None:
    req, _ = sqlite_store.record_request(gate())
    bob = Reviewer("bob", roles=frozenset({"user"}))
    denied = access(req, bob).why_not(Action.APPROVE)
    assert denied is not None and denied.reason is Refusal.NOT_ALLOWED and "bob is not an approver" in denied.message
    assert access(req, bob).may(Action.READ) and access(req, bob).may(Action.COMMENT)
    no_edit_right = replace(ALICE, decide_permission=False)  # FAB: no "can edit on Approvals"
    said = access(req, no_edit_right).why_not(Action.REJECT)
    assert said is not None and "may not decide approvals (Airflow permission 'can edit on Approvals')" in said.message
    with pytest.raises(NotAllowed, match="can edit on Approvals"):
        decide(sqlite_store, req.id, no_edit_right, "reject", comment="no")
    decide(sqlite_store, req.id, ALICE, "approve")
    closed = access(sqlite_store.get(req.id), ALICE)  # type: ignore[arg-type]
    assert {closed.why_not(a).reason for a in DECISIONS} == {Refusal.ALREADY_DECIDED}  # type: ignore[union-attr]
    assert closed.may(Action.READ) and closed.may(Action.COMMENT)


def test_self_approval_quorum_and_revisions_narrow_single_actions(sqlite_store: Store) -> None:
    own, _ = sqlite_store.record_request(gate(triggered_by="alice", allow_self_approval=False))
    rights = access(own, ALICE)
    assert rights.may(Action.REJECT) and not rights.may(Action.APPROVE) and not rights.may(Action.REQUEST_CHANGES)
    quorum, _ = sqlite_store.record_request(gate(run_id="q", min_approvals=2, approvers=[{"role": "user"}]))
    assert access(quorum, ALICE).may(Action.APPROVE) and not access(quorum, ALICE).may(Action.EDIT)
    spent, _ = sqlite_store.record_request(gate(run_id="s", max_revisions=0))
    why = access(spent, ALICE).why_not(Action.REQUEST_CHANGES)
    assert why is not None and why.reason is Refusal.NO_REVISIONS_LEFT
    with pytest.raises(NoRevisionsLeft):
        decide(sqlite_store, spent.id, ALICE, "request_changes", comment="again")


def test_each_quorum_vote_is_told_its_own_count(sqlite_store: Store) -> None:
    """Four approvers vote at once on a gate needing five: each is told its own place, counted under the row lock."""
    voters = [Reviewer(f"u{i}", roles=frozenset({"user"})) for i in range(4)]
    req, _ = sqlite_store.record_request(gate(min_approvals=5, approvers=[{"role": "user"}]))
    said: list[str] = []
    errors: list[BaseException] = []
    start = threading.Barrier(len(voters))

    def vote(who: Reviewer) -> None:
        try:
            start.wait()
            said.append(decide(sqlite_store, req.id, who, "approve").message)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=vote, args=(v,)) for v in voters]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert sorted(said) == [f"approval {n} of 5 recorded for request {req.id}" for n in (1, 2, 3, 4)]
    with pytest.raises(AlreadyDecided, match="already approved"):
        decide(sqlite_store, req.id, voters[0], "approve")


def test_a_mention_of_a_user_who_may_not_read_the_dag_tells_them_nothing(
    configured: Store, smtp_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hitl.comments

    readers = {"bob": frozenset({"outreach"}), "carl": frozenset()}
    monkeypatch.setattr(
        hitl.comments,
        "known_user",
        lambda name, dag: Reviewer(name, f"{name}@example.com", dags=readers[name]) if name in readers else None,
    )
    req, _ = configured.record_request(gate())
    posted = add_comment(configured, req.id, ALICE, "@bob @carl please look")
    assert posted.mentions == ["bob"] and "carl" in posted.unknown_mentions
    assert [m["To"] for m in smtp_server.messages] == ["bob@example.com"]
