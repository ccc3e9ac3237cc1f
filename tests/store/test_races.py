"""Two decisions at once: a quorum never sticks, a losing vote leaves no row (SQLite and PostgreSQL)."""

from __future__ import annotations

import threading

import pytest

from helpers import gate
from hitl.decisions import AlreadyDecided, decide
from hitl.identity import Reviewer
from hitl.store import APPROVED, PENDING, Store

ROUNDS = 50
ALICE, BOB, CAROL = Reviewer("alice"), Reviewer("bob"), Reviewer("carol")
QUORUM = {"approvers": [{"userId": "alice"}, {"userId": "bob"}, {"userId": "carol"}], "min_approvals": 2}


def _at_once(*calls):  # type: ignore[no-untyped-def]
    barrier = threading.Barrier(len(calls))
    results: list[object] = [None] * len(calls)

    def run(i: int) -> None:
        barrier.wait(timeout=30)
        try:
            results[i] = calls[i]()
        except Exception as exc:  # the loser's refusal
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return results


def test_two_approvals_at_once_close_a_quorum_of_two(store: Store) -> None:
    stuck = []
    for n in range(ROUNDS):
        req, _ = store.record_request(gate(run_id=f"race__{n}", **QUORUM))
        _at_once(lambda r=req: decide(store, r.id, ALICE, "approve"), lambda r=req: decide(store, r.id, BOB, "approve"))
        final = store.get(req.id)
        assert final is not None
        if final.status != APPROVED:
            stuck.append((req.id, final.status))
        assert sorted(v[0] for v in store.votes(req.id)) == ["alice", "bob"]
    assert stuck == [], f"{len(stuck)} of {ROUNDS} quorum requests stuck: {stuck[:5]}"


def test_a_vote_that_loses_the_race_leaves_no_row(store: Store) -> None:
    for n in range(ROUNDS // 2):
        req, _ = store.record_request(gate(run_id=f"late__{n}", **QUORUM))
        decide(store, req.id, ALICE, "approve")
        results = _at_once(
            lambda r=req: decide(store, r.id, BOB, "approve"), lambda r=req: decide(store, r.id, CAROL, "approve")
        )
        losers = [r for r in results if isinstance(r, Exception)]
        assert len(losers) == 1 and isinstance(losers[0], AlreadyDecided), results
        assert store.get(req.id).status == APPROVED  # type: ignore[union-attr]
        assert len(store.votes(req.id)) == 2  # alice and the winner; the loser's vote was never written


def test_reject_and_approve_at_once_have_one_winner(store: Store) -> None:
    for n in range(ROUNDS // 2):
        req, _ = store.record_request(gate(run_id=f"mixed__{n}"))
        results = _at_once(
            lambda r=req: decide(store, r.id, ALICE, "approve"),
            lambda r=req: decide(store, r.id, Reviewer("alice"), "reject", comment="no"),
        )
        assert sum(isinstance(r, AlreadyDecided) for r in results) == 1, results
        final = store.get(req.id)
        assert final is not None and final.status != PENDING
        assert len(store.votes(req.id)) == 1


@pytest.fixture(autouse=True)
def _no_airflow_db(monkeypatch: pytest.MonkeyPatch) -> None:
    # These tests are about the store: do not try to end gate tasks in Airflow's database.
    monkeypatch.setenv("AIRFLOW__HITL__END_GATE_FROM_DECIDER", "false")
