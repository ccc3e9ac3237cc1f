"""The decision store on SQLite and PostgreSQL: requests, idempotence, supersession, audit, side effects."""

from __future__ import annotations

import threading

from sqlalchemy import inspect

from helpers import gate
from hitl.store import APPROVED, PENDING, SUPERSEDED, RequestQuery, Store, content_hash


def test_migrations_create_the_schema_with_indexes(store: Store) -> None:
    from pathlib import Path

    from alembic.config import Config
    from alembic.script import ScriptDirectory

    import hitl.store

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(hitl.store.__file__).parent / "migrations"))
    head = ScriptDirectory.from_config(cfg).get_current_head()
    assert store.upgrade() == head  # idempotent: a second upgrade is a no-op
    insp = inspect(store.engine)
    assert {
        "hitl_approval_request",
        "hitl_audit_event",
        "hitl_approval_vote",
        "hitl_side_effect",
        "hitl_request_approver",
    } <= set(insp.get_table_names())
    indexed = {tuple(ix["column_names"]) for ix in insp.get_indexes("hitl_approval_request")}
    assert ("status", "created_at") in indexed
    assert ("dag_id", "run_id", "gate_task_id", "map_index") in indexed
    assert ("decided_at",) in indexed  # 0005: the triggerer's watcher reads decisions since its last look


def test_record_request_snapshots_output_and_audits(store: Store) -> None:
    req, created = store.record_request(gate())
    assert created and req.status == PENDING
    assert req.output["subject"] == "Hello"
    assert req.output_hash == content_hash(req.output)
    assert req.approvers == [{"userId": "alice"}]
    assert req.approve_label == "Send email"
    assert [e.event for e in store.history(req.id)] == ["requested"]


def test_same_output_again_reuses_the_request(store: Store) -> None:
    first, _ = store.record_request(gate(try_number=1))
    again, created = store.record_request(gate(try_number=2))
    assert not created and again.id == first.id
    assert store.count(RequestQuery(status=PENDING)) == 1


def test_changed_output_supersedes_the_pending_request(store: Store) -> None:
    first, _ = store.record_request(gate())
    changed = dict(first.output, subject="New subject")
    second, created = store.record_request(gate(output=changed, try_number=2))
    assert created and second.id != first.id
    old = store.get(first.id)
    assert old is not None and old.status == SUPERSEDED and old.superseded_by == second.id
    assert store.current_for_gate("outreach", "manual__1", "draft_email__approval").id == second.id  # type: ignore[union-attr]
    assert [e.event for e in store.history(first.id)] == ["requested", "superseded"]


def test_list_filters_and_orders_newest_first(store: Store) -> None:
    for i in range(5):
        store.record_request(gate(run_id=f"run_{i}", dag_id="a" if i % 2 else "b"))
    assert [r.run_id for r in store.list_requests(limit=2)] == ["run_4", "run_3"]
    assert {r.dag_id for r in store.list_requests(RequestQuery(dag_id="a"))} == {"a"}
    assert store.count(RequestQuery(dag_id="a")) == 2
    assert [r.run_id for r in store.list_requests(RequestQuery(search="run_2"))] == ["run_2"]
    assert store.dag_ids() == ["a", "b"]


def test_side_effect_is_claimed_once(store: Store) -> None:
    assert store.claim_side_effect("email:x", "email")
    assert not store.claim_side_effect("email:x", "email")
    store.finish_side_effect("email:x", {"message_id": "<1@x>"})
    assert store.side_effect("email:x") == ("done", {"message_id": "<1@x>"})
    assert store.claim_side_effect("email:y", "email")
    store.release_side_effect("email:y")
    assert store.claim_side_effect("email:y", "email")


def test_twenty_concurrent_decisions_have_exactly_one_winner(store: Store) -> None:
    from hitl.decisions import AlreadyDecided, decide
    from hitl.identity import Reviewer

    req, _ = store.record_request(gate(approvers=[{"role": "user"}]))
    barrier = threading.Barrier(20)
    wins: list[str] = []
    refusals: list[str] = []
    errors: list[BaseException] = []

    def attempt(i: int) -> None:
        barrier.wait()
        try:
            action = "approve" if i % 2 else "reject"
            decide(store, req.id, Reviewer(f"user{i}", roles=frozenset({"user"})), action, comment=f"by {i}")  # type: ignore[arg-type]
            wins.append(f"user{i}")
        except AlreadyDecided as exc:
            refusals.append(str(exc))
        except BaseException as exc:  # any other error fails the test
            errors.append(exc)

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert len(wins) == 1, wins
    assert len(refusals) == 19
    final = store.get(req.id)
    assert final is not None and final.decided_by == wins[0]
    assert all(r.startswith(f"already decided by {wins[0]} at ") for r in refusals)
    events = [e.event for e in store.history(req.id)]
    assert events.count("refused") == 19 and (events.count("approved") + events.count("rejected")) == 1
    assert final.status in (APPROVED, "rejected")


def test_needs_my_attention_filters_by_user_email_and_role_in_sql(store: Store) -> None:
    from hitl.identity import Reviewer

    store.record_request(gate(run_id="by_user", approvers=[{"userId": "alice"}]))
    store.record_request(gate(run_id="by_email", approvers=[{"email": "Alice@Example.com"}]))
    store.record_request(gate(run_id="by_role", approvers=[{"role": "Op"}]))
    store.record_request(gate(run_id="admins_only", approvers=[]))
    alice = Reviewer("alice", email="alice@example.com", roles=frozenset({"user"}))
    carol = Reviewer("carol", roles=frozenset({"op"}))
    admin = Reviewer("root", roles=frozenset({"admin"}))
    viewer = Reviewer("alice", email="alice@example.com", roles=frozenset({"viewer"}))
    assert {r.run_id for r in store.list_requests(RequestQuery(decidable_by=alice))} == {"by_user", "by_email"}
    assert {r.run_id for r in store.list_requests(RequestQuery(decidable_by=carol))} == {"by_role"}
    assert {r.run_id for r in store.list_requests(RequestQuery(decidable_by=admin))} == {"admins_only"}
    assert store.count(RequestQuery(decidable_by=viewer)) == 0
    assert store.count(RequestQuery(decidable_by=alice)) == 2
