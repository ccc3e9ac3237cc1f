"""The insights figures, computed by the store's grouped queries on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest
from sqlalchemy import update

from helpers import gate
from hitl.decisions import decide
from hitl.identity import Reviewer
from hitl.insights import compute, percentile
from hitl.monitor import sweep
from hitl.store import Store, utcnow
from hitl.store.schema import approval_request

ALICE = Reviewer("alice", roles=frozenset({"user"}))
CAROL = Reviewer("carol", roles=frozenset({"op"}))


def _backdate(store: Store, request_id: int, *, created_ago: timedelta, decided_ago: timedelta | None) -> None:
    """Move a request's times into the past, as if it had waited (test data only: the code under test reads it)."""
    now = utcnow()
    values = {"created_at": now - created_ago}
    if decided_ago is not None:
        values["decided_at"] = now - decided_ago
    with store.writing() as conn:
        conn.execute(update(approval_request).where(approval_request.c.id == request_id).values(**values))


def _reviews(store: Store) -> dict[str, int]:
    ids: dict[str, int] = {}
    approvers = [{"userId": "alice"}, {"userId": "carol"}]
    for i, minutes in enumerate((10, 20, 30, 40)):  # four approvals by alice, 10-40 minutes after the request
        req, _ = store.record_request(gate(run_id=f"ok{i}", approvers=approvers))
        decide(store, req.id, ALICE, "approve")
        _backdate(
            store, req.id, created_ago=timedelta(hours=2), decided_ago=timedelta(hours=2) - timedelta(minutes=minutes)
        )
        ids[f"ok{i}"] = req.id
    edited, _ = store.record_request(gate(run_id="edit", approvers=approvers))
    decide(store, edited.id, CAROL, "approve", edited_output={**edited.output, "subject": "Better"})
    rejected, _ = store.record_request(gate(run_id="no", approvers=approvers))
    decide(store, rejected.id, CAROL, "reject", comment="wrong shop")
    quorum, _ = store.record_request(gate(run_id="q", approvers=approvers, min_approvals=2))
    decide(store, quorum.id, ALICE, "approve")
    decide(store, quorum.id, CAROL, "approve")
    store.record_request(gate(run_id="late", approvers=approvers, expire_after=60))
    sweep(store=store, now=utcnow() + timedelta(minutes=5))  # expires "late"
    waiting, _ = store.record_request(gate(run_id="wait", approvers=approvers))
    _backdate(store, waiting.id, created_ago=timedelta(days=3), decided_ago=None)
    store.record_request(gate(run_id="fresh", approvers=approvers))
    other, _ = store.record_request(gate(dag_id="billing", run_id="b1", approvers=approvers))
    decide(store, other.id, ALICE, "reject", comment="no")
    return ids


def test_outcomes_rates_reviewers_and_pending_ages(store: Store) -> None:
    _reviews(store)
    found = compute(store, now=utcnow(), days=7, dag_id="outreach")
    assert dict(found.totals) == {"approved": 5, "edited": 1, "rejected": 1, "expired": 1}
    assert found.decided == 8
    assert found.edit_rate == pytest.approx(1 / 6)
    assert found.rounds_per_approval == pytest.approx(1.0)
    assert dict(found.quorum) == {"approved": 1}
    assert dict(found.pending) == {"under 1 hour": 1, "1 to 24 hours": 0, "1 to 7 days": 1, "over 7 days": 0}
    reviewers = dict(found.reviewers)
    # A request counts for the reviewer whose decision closed it (carol's vote completed the quorum).
    assert dict(reviewers["alice"]) == {"approved": 4}
    assert dict(reviewers["carol"]) == {"approved": 1, "edited": 1, "rejected": 1}
    assert "hitl:expiry" not in reviewers  # the deadline is not a reviewer
    today = utcnow().date().isoformat()
    assert found.days[-1] == today and len(found.days) == 7
    assert sum(found.by_day[today].values()) + sum(found.by_day[found.days[-2]].values()) == 8


def test_time_to_decision_median_p90_and_the_all_workflows_view(store: Store) -> None:
    _reviews(store)
    found = compute(store, now=utcnow(), days=30, dag_id="outreach")
    # Seven human decisions: three within seconds, then 10, 20, 30, 40 minutes (the expiry is left out):
    # the nearest-rank median is the 4th (10 minutes), the p90 the 7th (40 minutes).
    assert found.median_seconds == pytest.approx(10 * 60, abs=5)
    assert found.p90_seconds == pytest.approx(40 * 60, abs=5)
    everything = compute(store, now=utcnow(), days=30)
    assert everything.totals["rejected"] == 2 and everything.decided == 9
    assert compute(store, now=utcnow(), days=30, dag_ids={"billing"}).decided == 1
    assert compute(store, now=utcnow(), days=30, dag_ids=set()).decided == 0  # a reader of no workflow sees nothing


def test_the_window_leaves_out_older_decisions(store: Store) -> None:
    req, _ = store.record_request(gate())
    decide(store, req.id, ALICE, "approve")
    _backdate(store, req.id, created_ago=timedelta(days=41), decided_ago=timedelta(days=40))
    assert compute(store, now=utcnow(), days=30).decided == 0
    assert compute(store, now=utcnow(), days=90).decided == 1


def test_csv_has_every_figure(store: Store) -> None:
    _reviews(store)
    rows = list(csv.DictReader(io.StringIO(compute(store, now=utcnow(), days=7, dag_id="outreach").csv())))
    totals = {r["outcome"]: int(r["value"]) for r in rows if r["section"] == "decisions_total"}
    assert totals["approved"] == 5 and totals["expired"] == 1 and totals["timed_out"] == 0
    assert {r["section"] for r in rows} >= {
        "decisions_by_day",
        "time_to_decision_seconds",
        "time_to_decision_by_day",
        "pending_by_age",
        "edit_rate",
        "rounds_per_approval",
        "reviewer",
        "quorum",
    }


def test_percentile_is_nearest_rank() -> None:
    assert percentile([], 50) is None
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.0
    assert percentile([float(i) for i in range(1, 11)], 90) == 9.0
