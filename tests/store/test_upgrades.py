"""A populated store upgrades from every earlier schema, on SQLite and PostgreSQL, with every row intact.

Each store is made by the migrations themselves (up to the revision under test), then filled through SQL
shaped like that revision's tables (the columns it has, the statuses it allowed): requests in every status,
votes, approvers, audit events (one with no request), side effects, comments, later rounds. After the
upgrade every seeded row reads back the same, the head code reads them, and SQLite still enforces the
foreign keys the batch copies rebuilt. A migration made to fail halfway (a conflicting table the test
creates) leaves the store at its old revision with its old schema and rows, and it upgrades once the cause
is gone.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from helpers import gate
from hitl.store import RequestQuery, Store, approver_rows, content_hash
from hitl.store.migrate import MigrationFailed, UnknownRevision, script_directory

REPO = Path(__file__).resolve().parents[2]
HEAD = script_directory().get_current_head()
EARLIER = [s.revision for s in reversed(list(script_directory().iterate_revisions("head", "base")))][:-1]
T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
APPROVERS = [{"userId": "alice"}, {"role": "Reviewer"}, {"email": "Carol@Example.com"}]


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database: a SQLite file, or a fresh PostgreSQL database (dropped afterwards)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
    else:
        yield request.getfixturevalue("pg_url")


def _request(rid: int, status: str, **extra: Any) -> dict[str, Any]:
    output = {"subject": f"Hello {rid}", "body": f"Draft number {rid}"}
    row: dict[str, Any] = {
        "id": rid,
        "dag_id": "outreach" if rid % 2 else "invoices",
        "run_id": f"manual__{rid}",
        "step_id": "draft_email",
        "gate_task_id": "draft_email__approval",
        "map_index": -1,
        "try_number": 1,
        "output_kind": "email",
        "output": json.dumps(output),
        "output_hash": content_hash(output),
        "summary": f"draft {rid}",
        "approve_label": "Send email",
        "approvers": json.dumps(APPROVERS),
        "min_approvals": 1,
        "allow_self_approval": True,
        "triggered_by": "tom",
        "status": status,
        "created_at": T0 + timedelta(minutes=rid),
        "decided_at": None,
        "decided_by": None,
        "comment": None,
        "edited_output": None,
        "superseded_by": None,
        # 0003
        "owner": "ops@example.com",
        "notify": json.dumps({"email": True}),
        "remind_after": 3600,
        "escalate_after": 7200,
        "escalate_to": json.dumps(["boss@example.com"]),
        "expire_after": 86400,
        "reminders": 1,
        "reminded_at": T0 + timedelta(hours=1, minutes=rid),
        "escalated_at": None,
        # 0004
        "timeout": 172800,
        # 0006
        "revision": 1,
        "previous_request_id": None,
        "max_revisions": 3,
    }
    if status != "pending" and status != "superseded":
        row |= {"decided_at": T0 + timedelta(hours=2, minutes=rid)}
    row.update(extra)
    return row


def _rows(tables: set[str]) -> dict[str, list[dict[str, Any]]]:
    """Every kind of row the store held while it had ``tables``."""
    changes = "hitl_comment" in tables  # 0006: request changes (a 17-character status) and comments
    requests = [
        _request(1, "pending"),
        _request(2, "approved", decided_by="alice", comment="ok", min_approvals=2, edited_output='{"subject": "Hi"}'),
        _request(3, "rejected", decided_by="bob", comment="not this one"),
        _request(4, "superseded", superseded_by=5, run_id="manual__4"),
        _request(5, "pending", run_id="manual__4"),
        _request(6, "timed_out", decided_by="hitl:timeout", comment="timed out"),
    ]
    if changes:
        requests += [
            _request(7, "changes_requested", decided_by="alice", comment="shorter, please"),
            _request(8, "pending", revision=2, previous_request_id=7, run_id="manual__7"),
        ]
    at = T0 + timedelta(hours=3)
    audit = [
        {"id": i, "request_id": r["id"], "event": "requested", "actor": None, "at": r["created_at"], "detail": "{}"}
        for i, r in enumerate(requests, start=1)
    ]
    decided = [r for r in requests if r["decided_by"]]
    audit += [
        {
            "id": len(audit) + i,
            "request_id": r["id"],
            "event": r["status"],
            "actor": r["decided_by"],
            "at": r["decided_at"],
            "detail": json.dumps({"channel": "ui"}),
        }
        for i, r in enumerate(decided, start=1)
    ]
    audit.append({"id": len(audit) + 1, "request_id": None, "event": "sweep", "actor": None, "at": at, "detail": "{}"})
    rows: dict[str, list[dict[str, Any]]] = {
        "hitl_approval_request": requests,
        "hitl_approval_vote": [
            {"id": 1, "request_id": 2, "user": "alice", "decision": "approved", "at": at},
            {"id": 2, "request_id": 2, "user": "bob", "decision": "approved", "at": at},
            {"id": 3, "request_id": 3, "user": "bob", "decision": "rejected", "at": at},
        ],
        "hitl_audit_event": audit,
        "hitl_side_effect": [
            {"key": "email:2", "kind": "email", "status": "done", "created_at": at, "detail": '{"id": "m1"}'},
            {"key": "notify:1:requested", "kind": "notify", "status": "pending", "created_at": at, "detail": "{}"},
        ],
    }
    if "hitl_request_approver" in tables:  # 0002: as the code of the time wrote them
        rows["hitl_request_approver"] = [
            {"request_id": r["id"], "kind": k, "value": v} for r in requests for k, v in approver_rows(APPROVERS)
        ]
    if changes:
        rows["hitl_comment"] = [
            {
                "id": 1,
                "request_id": 1,
                "author": "bob",
                "body": "@alice fine?",
                "mentions": '["alice"]',
                "created_at": at,
            },
            {"id": 2, "request_id": 7, "author": "alice", "body": "shorter", "mentions": "[]", "created_at": at},
        ]
    return rows


def _reflect(conn: sa.Connection) -> sa.MetaData:
    meta = sa.MetaData()
    meta.reflect(conn, only=lambda name, _: name.startswith("hitl_") and name != "hitl_alembic_version")
    return meta


Snapshot = dict[str, tuple[list[str], list[tuple[Any, ...]]]]  # table -> (its columns, its rows in key order)


def seed(store: Store) -> Snapshot:
    """Fill the store as its revision allows; returns every seeded table's rows as read back."""
    with store.write_engine.begin() as conn:
        meta = _reflect(conn)
        for name, rows in _rows(set(meta.tables)).items():
            table = meta.tables[name]
            conn.execute(sa.insert(table), [{k: v for k, v in r.items() if k in table.c} for r in rows])
            if store.dialect == "postgresql" and "id" in table.c:  # explicit ids: move the sequence past them
                conn.execute(
                    sa.text(f"SELECT setval(pg_get_serial_sequence('{name}', 'id'), (SELECT max(id) FROM {name}))")
                )
    return snapshot(store)


def snapshot(store: Store, like: Snapshot | None = None) -> Snapshot:
    """Every row of the store's tables, or of ``like``'s tables in the columns they had then."""
    with store.engine.connect() as conn:
        meta = _reflect(conn)
        out: Snapshot = {}
        for name in list(like) if like is not None else sorted(meta.tables):
            table = meta.tables[name]
            columns = [table.c[c] for c in like[name][0]] if like is not None else list(table.c)
            rows = [tuple(r) for r in conn.execute(sa.select(*columns).order_by(*columns[:3]))]
            out[name] = ([c.name for c in columns], rows)
    return out


def schema_of(store: Store) -> dict[str, Any]:
    """Tables, their columns (name, type, nullable) and indexes, and the recorded revision."""
    with store.engine.connect() as conn:
        insp = sa.inspect(conn)
        tables = {
            name: (
                [(c["name"], str(c["type"]), c["nullable"]) for c in insp.get_columns(name)],
                sorted(ix["name"] or "" for ix in insp.get_indexes(name)),
            )
            for name in sorted(insp.get_table_names())
        }
        return {
            "tables": tables,
            "revision": conn.execute(sa.text("SELECT version_num FROM hitl_alembic_version")).scalar(),
        }


def _reads_like_seeded(store: Store, seeded: dict[str, list[dict[str, Any]]]) -> None:
    """The head code reads every seeded row: requests, lists, history, votes, comments, side effects, approvers."""
    requests = seeded["hitl_approval_request"]
    listed = store.list_requests(RequestQuery(status="all"), limit=100)
    assert sorted(r.id for r in listed) == [r["id"] for r in requests]
    for row in requests:
        req = store.get(row["id"])
        assert req is not None
        assert (req.status, req.summary, req.decided_by, req.run_id) == (
            row["status"],
            row["summary"],
            row["decided_by"],
            row["run_id"],
        )
        assert req.output == json.loads(row["output"]) and req.approvers == APPROVERS
        assert req.created_at == row["created_at"]
        assert req.revision == (row["revision"] if "hitl_comment" in seeded else 1)  # 0006's default: round 1
        expected_events = [(e["event"], e["actor"]) for e in seeded["hitl_audit_event"] if e["request_id"] == row["id"]]
        assert [(e.event, e.actor) for e in store.history(row["id"])] == expected_events
        expected_votes = [
            (v["user"], v["decision"]) for v in seeded["hitl_approval_vote"] if v["request_id"] == row["id"]
        ]
        assert [(u, d) for u, d, _ in store.votes(row["id"])] == expected_votes
        expected_comments = [c["body"] for c in seeded.get("hitl_comment", []) if c["request_id"] == row["id"]]
        assert [c.body for c in store.comments(row["id"])] == expected_comments
    assert store.side_effect("email:2") == ("done", {"id": "m1"})
    with store.engine.connect() as conn:
        approvers = conn.execute(sa.text("SELECT request_id, kind, value FROM hitl_request_approver")).all()
    # Seeded from 0002 on; a 0001 store gets them from 0002's backfill of the JSON column.
    assert sorted(approvers) == sorted((r["id"], k, v) for r in requests for k, v in approver_rows(APPROVERS))


@pytest.mark.parametrize("revision", EARLIER)
def test_a_populated_store_upgrades_to_head_with_every_row_intact(store_url: str, revision: str) -> None:
    store = Store(store_url)
    try:
        assert store.upgrade(revision) == revision
        before = seed(store)
        with store.engine.connect() as conn:
            seeded = _rows(set(_reflect(conn).tables))
        assert store.upgrade() == HEAD
        assert snapshot(store, like=before) == before
        _reads_like_seeded(store, seeded)
        # The head code writes to it: a new request (ids continue), a comment, an audit event.
        new, created = store.record_request(gate(run_id="manual__new"))
        assert created and new.id == max(r["id"] for r in seeded["hitl_approval_request"]) + 1
        store.add_comment(1, "bob", "after the upgrade", [], max_per_request=50, max_per_author=20, channel="cli")
        assert [c.body for c in store.comments(1)][-1] == "after the upgrade"
        # The tables the batch copies rebuilt are still referenced, and the references still enforced.
        with pytest.raises(IntegrityError), store.writing() as conn:
            conn.execute(
                sa.text(
                    'INSERT INTO hitl_approval_vote (request_id, "user", decision, at) '
                    "VALUES (999, 'x', 'approved', :at)"
                ),
                {"at": T0},
            )
        if store.dialect == "sqlite":
            with store.engine.connect() as conn:
                assert conn.exec_driver_sql("PRAGMA foreign_key_check").all() == []
    finally:
        store.engine.dispose()


def test_an_orphan_the_store_already_had_is_kept_not_blocking(tmp_path: Path) -> None:
    """A row pointing at nothing before the upgrade (foreign keys were off when it was written) survives it."""
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    store.upgrade("0003")
    seed(store)
    raw = sa.create_engine(f"sqlite:///{tmp_path / 'store.db'}")  # pysqlite's default: foreign keys off
    with raw.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO hitl_approval_vote (request_id, user, decision, at) "
                "VALUES (77, 'eve', 'approved', '2026-11-01 00:00:00')"
            )
        )
    raw.dispose()
    assert store.upgrade() == HEAD
    assert [(u, d) for u, d, _ in store.votes(77)] == [("eve", "approved")]


def test_a_migration_that_would_orphan_rows_fails(tmp_path: Path) -> None:
    """Foreign keys are off while SQLite migrates; the check after each step catches a row left pointing at nothing."""
    from hitl.store.engine import migration_engine
    from hitl.store.migrate import IntegrityGuard, foreign_key_violations, refuse_new_violations

    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    store.upgrade("0005")
    seed(store)
    engine = migration_engine(store.url)
    try:
        with engine.connect() as conn, conn.begin():
            before = foreign_key_violations(conn)
            conn.execute(sa.text("DELETE FROM hitl_approval_request WHERE id = 2"))  # 2 votes point at it
            with pytest.raises(
                IntegrityGuard, match=r"2 row\(s\) of hitl_approval_vote pointing at no row of hitl_approval_request"
            ):
                refuse_new_violations(conn, before)
            conn.rollback()
    finally:
        engine.dispose()


def _conflict(store: Store) -> None:
    """A table named like the one 0006 creates: 0006 fails after its batch copy of the request table."""
    with store.write_engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE hitl_comment (id INTEGER PRIMARY KEY, note TEXT)"))


def test_a_migration_failing_halfway_leaves_the_store_as_it_was_and_upgradable_after(store_url: str) -> None:
    store = Store(store_url)
    try:
        store.upgrade("0003")  # as `make demo` left it before 0004
        before = seed(store)
        _conflict(store)
        schema = schema_of(store)
        with pytest.raises(MigrationFailed) as failed:
            store.upgrade()
        assert failed.value.revision == "0006" and failed.value.unchanged_at == "0003"
        message = str(failed.value)
        assert message.startswith("migration 0006 (request changes and comments) failed: ")
        assert "hitl_comment" in failed.value.cause and "already exists" in failed.value.cause, message
        # Exactly as it was: revision 0003, no column of 0004 or 0006 (the batch copy rolled back), every row.
        assert schema_of(store) == schema
        assert "timeout" not in [c for c, _, _ in schema["tables"]["hitl_approval_request"][0]]
        assert snapshot(store, like=before) == before
        old_code_reads(store_url, expect_ids=[r[0] for r in before["hitl_approval_request"][1]])
        before = snapshot(store, like=before)  # with the old code's write
        with store.write_engine.begin() as conn:  # the cause removed
            conn.execute(sa.text("DROP TABLE hitl_comment"))
        assert store.upgrade() == HEAD
        assert snapshot(store, like=before) == before
    finally:
        store.engine.dispose()


def test_a_store_at_an_unknown_revision_is_refused_unchanged(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    store.upgrade()
    with store.write_engine.begin() as conn:
        conn.execute(sa.text("UPDATE hitl_alembic_version SET version_num = '0099'"))
    with pytest.raises(UnknownRevision, match="revision 0099, which this release does not know"):
        store.upgrade()
    assert schema_of(store)["revision"] == "0099"


# -- the code that ran before the upgrade -------------------------------------------------------------------------
OLD_RELEASE_REVISION = "0003"
OLD_CODE_PROBE = """
import json, sys
from hitl.store import RequestQuery, Store
store = Store(sys.argv[1])
ids = sorted(r.id for r in store.list_requests(RequestQuery(status="all"), limit=100))
store.audit(1, "probe", "old-code", ok=True)  # a write through the old code
print(json.dumps({"ids": ids, "first": store.get(1).status, "history": [e.event for e in store.history(1)]}))
"""


def _old_release(tmp: Path) -> Path | None:
    """plugins/ of the last commit whose head migration was 0003 (from git history), or None without history."""
    if shutil.which("git") is None or not (REPO / ".git").exists():
        return None
    log = subprocess.run(
        [
            "git",
            "log",
            "--format=%H",
            "--diff-filter=A",
            "--",
            "plugins/hitl/store/migrations/versions/0004_gate_timeout.py",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    commits = log.stdout.split()
    if log.returncode != 0 or not commits:
        return None
    archive = subprocess.run(["git", "archive", f"{commits[-1]}^", "plugins/hitl"], cwd=REPO, capture_output=True)
    if archive.returncode != 0:
        return None
    subprocess.run(["tar", "-x", "-C", str(tmp)], input=archive.stdout, check=True)
    return tmp / "plugins"


def old_code_reads(store_url: str, *, expect_ids: list[int]) -> None:
    """The previous release's own store code (revision 0003's, from git) reads and writes the store."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="hitl-old-release-") as tmp:
        plugins = _old_release(Path(tmp))
        if plugins is None:
            pytest.skip("the old release's code comes from git history, which this checkout lacks")
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"PYTHONPATH": str(plugins)}
        out = subprocess.run(
            [sys.executable, "-c", OLD_CODE_PROBE, store_url], capture_output=True, text=True, env=env, cwd=tmp
        )
        assert out.returncode == 0, out.stderr[-2000:]
        result = json.loads(out.stdout.strip().splitlines()[-1])
        assert result == {"ids": expect_ids, "first": "pending", "history": ["requested", "probe"]}
