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
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from helpers import gate
from hitl.store import RequestQuery, Store, approver_rows
from hitl.store.migrate import MigrationFailed, UnknownRevision, script_directory
from store_seeds import APPROVERS, T0, reflect, rows_for, schema_of, seed, snapshot

REPO = Path(__file__).resolve().parents[2]
HEAD = script_directory().get_current_head()
EARLIER = [s.revision for s in reversed(list(script_directory().iterate_revisions("head", "base")))][:-1]


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database: a SQLite file, or a fresh PostgreSQL database (dropped afterwards)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
    else:
        yield request.getfixturevalue("pg_url")


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
    for verdict in seeded.get("hitl_policy_verdict", []):
        got = store.verdict(verdict["request_id"])
        assert got is not None and (got.mode, got.decision, got.held) == (
            verdict["mode"],
            verdict["decision"],
            verdict["held"],
        )
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
            seeded = rows_for(set(reflect(conn).tables))
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
OLD_CODE_PROBE = """
import json, sys
from hitl.store import RequestQuery, Store
store = Store(sys.argv[1])
ids = sorted(r.id for r in store.list_requests(RequestQuery(status="all"), limit=100))
store.audit(1, "probe", "old-code", ok=True)  # a write through the old code
print(json.dumps({"ids": ids, "first": store.get(1).status, "history": [e.event for e in store.history(1)]}))
"""
OLD_UPGRADE = """
import sys
from hitl.store import Store
try:
    Store(sys.argv[1]).upgrade()
except Exception as exc:
    print("FAILED", str(exc).splitlines()[0])
else:
    print("UPGRADED")
"""


def plugins_before(added: str, into: Path) -> Path:
    """plugins/ as it was just before the commit that added ``added`` (an earlier release's code, from git)."""
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("the earlier release's code comes from git history, which this checkout lacks")
    log = subprocess.run(
        ["git", "log", "--format=%H", "--diff-filter=A", "--", added], cwd=REPO, capture_output=True, text=True
    )
    commits = log.stdout.split()
    if log.returncode != 0 or not commits:
        pytest.skip(f"no commit in this checkout's history adds {added}")
    archive = subprocess.run(["git", "archive", f"{commits[-1]}^", "plugins/hitl"], cwd=REPO, capture_output=True)
    if archive.returncode != 0:
        pytest.skip(f"git archive {commits[-1]}^ failed: {archive.stderr[-300:]!r}")
    into.mkdir(parents=True, exist_ok=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into / "plugins"


def run_old_code(plugins: Path, script: str, store_url: str) -> str:
    """Run ``script`` with the earlier release's ``hitl`` (not this checkout's); its last line of output."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"PYTHONPATH": str(plugins)}
    out = subprocess.run(
        [sys.executable, "-c", script, store_url], capture_output=True, text=True, env=env, cwd=plugins.parent
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip().splitlines()[-1]


def old_code_reads(store_url: str, *, expect_ids: list[int]) -> None:
    """The release whose head was 0003 (its own store code, from git) reads and writes the store."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="hitl-old-release-") as tmp:
        plugins = plugins_before("plugins/hitl/store/migrations/versions/0004_gate_timeout.py", Path(tmp))
        result = json.loads(run_old_code(plugins, OLD_CODE_PROBE, store_url))
        assert result == {"ids": expect_ids, "first": "pending", "history": ["requested", "probe"]}


@pytest.fixture(scope="module")
def release_before_the_fix(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """plugins/ of the release before this fix: its upgrades ran SQLite DDL outside any transaction."""
    return plugins_before("plugins/hitl/store/migrate.py", tmp_path_factory.mktemp("release-before-the-fix"))


@pytest.mark.parametrize("revision", ["0001", "0002", "0003", "0004", "0005"])
def test_a_store_an_earlier_release_left_half_migrated_upgrades_now(
    tmp_path: Path, revision: str, release_before_the_fix: Path
) -> None:
    """The defect itself: the earlier release's failed upgrade committed the next migration's first DDL (a table,
    columns, an index, Alembic's copy of the request table) while the revision stayed; every retry failed."""
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    store.upgrade(revision)
    before = seed(store)
    pristine = schema_of(store)
    store.engine.dispose()
    store.write_engine.dispose()
    assert (
        run_old_code(release_before_the_fix, OLD_UPGRADE, store.url)
        == "FAILED (sqlite3.IntegrityError) FOREIGN KEY constraint failed"
    )
    left = schema_of(store)
    assert left["revision"] == revision and left != pristine  # half-migrated: something of the next one is there
    assert run_old_code(release_before_the_fix, OLD_UPGRADE, store.url).startswith("FAILED")  # and stuck
    assert store.upgrade() == HEAD
    assert snapshot(store, like=before) == before
    _reads_like_seeded(store, rows_for(set(pristine["tables"])))


# What the earlier release's failed SQLite upgrade left behind, from each revision (its next migration's first
# DDL, committed at once): built by hand here, so this holds without git history too.
RESIDUE = {
    "0001": [
        "CREATE TABLE hitl_request_approver (request_id INTEGER NOT NULL REFERENCES hitl_approval_request (id), "
        "kind VARCHAR(16) NOT NULL, value VARCHAR(250) NOT NULL, PRIMARY KEY (request_id, kind, value))",
        "CREATE INDEX ix_hitl_request_approver_lookup ON hitl_request_approver (kind, value, request_id)",
    ],
    "0002": [  # some of 0003's columns
        "ALTER TABLE hitl_approval_request ADD COLUMN owner VARCHAR(250)",
        "ALTER TABLE hitl_approval_request ADD COLUMN notify TEXT DEFAULT '{}' NOT NULL",
    ],
    "0003": ["ALTER TABLE hitl_approval_request ADD COLUMN timeout INTEGER"],
    "0004": ["CREATE INDEX ix_hitl_request_decided ON hitl_approval_request (decided_at)"],
    "0005": ["CREATE TABLE _alembic_tmp_hitl_approval_request (id INTEGER NOT NULL PRIMARY KEY, dag_id VARCHAR(250))"],
}


@pytest.mark.parametrize("revision", sorted(RESIDUE))
def test_what_a_failed_upgrade_left_behind_is_resumed(tmp_path: Path, revision: str) -> None:
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    store.upgrade(revision)
    before = seed(store)
    seeded = rows_for(set(schema_of(store)["tables"]))
    with store.write_engine.begin() as conn:
        for statement in RESIDUE[revision]:
            conn.exec_driver_sql(statement)
    assert store.upgrade() == HEAD
    assert snapshot(store, like=before) == before
    _reads_like_seeded(store, seeded)


def test_a_leftover_copy_of_the_request_table_holding_rows_is_not_dropped(tmp_path: Path) -> None:
    """Alembic's copy should be empty; one with rows may be someone's data: 0006 refuses, naming it, and keeps it."""
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    store.upgrade("0005")
    seed(store)
    with store.write_engine.begin() as conn:
        conn.exec_driver_sql(RESIDUE["0005"][0])
        conn.exec_driver_sql("INSERT INTO _alembic_tmp_hitl_approval_request VALUES (1, 'outreach')")
    with pytest.raises(MigrationFailed, match="_alembic_tmp_hitl_approval_request holds 1 row") as failed:
        store.upgrade()
    assert failed.value.revision == "0006" and schema_of(store)["revision"] == "0005"
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT dag_id FROM _alembic_tmp_hitl_approval_request").all() == [("outreach",)]
