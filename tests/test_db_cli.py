"""``python -m hitl db ...`` as an operator runs it: a backup before the upgrade, the way back, where a store stands."""

from __future__ import annotations

import re
import shutil
import sqlite3
import subprocess
from contextlib import closing
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from test_cli import one_line_error, run_cli

from hitl.store import Store
from hitl.store.engine import sync_url
from hitl.store.migrate import script_directory
from store_seeds import schema_of, seed, snapshot

HEAD = script_directory().get_current_head()


def _file_revision(path: Path) -> str:
    with closing(sqlite3.connect(path)) as conn:
        return str(conn.execute("SELECT version_num FROM hitl_alembic_version").fetchone()[0])


def _old_store(tmp_path: Path) -> tuple[Store, dict]:  # type: ignore[type-arg]
    store = Store(f"sqlite:///{tmp_path / 'hitl.db'}")
    store.upgrade("0003")
    return store, seed(store)


def test_upgrade_backs_up_first_and_the_backup_restores_the_old_store(tmp_path: Path) -> None:
    store, before = _old_store(tmp_path)
    (tmp_path / "hitl.db").chmod(0o600)  # as the dev stack creates it: it holds reviewed outputs
    old_schema = schema_of(store)
    wal = tmp_path / "hitl.db-wal"
    # The seeded rows are still in the write-ahead log (this process holds the store open): a file copy of
    # hitl.db alone would miss them, the online backup API does not.
    assert wal.is_file() and wal.stat().st_size > 0
    out = run_cli(store.url, "db", "upgrade")
    assert out.returncode == 0, out.stderr
    first, last = out.stdout.strip().splitlines()
    found = re.fullmatch(r"backed up the decision store \(revision 0003\) to (\S+)", first)
    assert found, first
    backup = Path(found.group(1))
    assert backup.parent == tmp_path and re.fullmatch(r"hitl\.db\.backup-0003-\d{8}T\d{6}Z", backup.name)
    assert backup.stat().st_mode & 0o777 == 0o600
    assert last.startswith(f"decision store at revision {HEAD} ")
    assert _file_revision(backup) == "0003" and _file_revision(tmp_path / "hitl.db") == HEAD
    assert snapshot(Store(f"sqlite:///{backup}"), like=before) == before

    out = run_cli(store.url, "db", "upgrade")  # at head: nothing to back up, nothing changes
    assert out.returncode == 0 and out.stdout.strip() == last

    # The way back: the backup's content goes back into the store; what the store held is saved first.
    store.engine.dispose()
    store.write_engine.dispose()
    out = run_cli(store.url, "db", "restore", str(backup))
    assert out.returncode == 0, out.stderr
    saved_line, restored_line = out.stdout.strip().splitlines()
    saved = Path(saved_line.removeprefix("saved the store as it was to "))
    assert _file_revision(saved) == HEAD
    assert restored_line.startswith(f"restored {backup} (revision 0003) into sqlite:///")
    restored = Store(store.url)
    assert schema_of(restored) == old_schema
    assert snapshot(restored, like=before) == before
    restored.engine.dispose()
    out = run_cli(store.url, "db", "upgrade")  # and it upgrades again
    assert out.returncode == 0 and out.stdout.strip().splitlines()[-1] == last


def test_a_failed_upgrade_names_the_migration_and_leaves_the_store_unchanged(tmp_path: Path) -> None:
    store, before = _old_store(tmp_path)
    with store.write_engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE hitl_comment (id INTEGER PRIMARY KEY)"))  # 0006 creates this table
    out = run_cli(store.url, "db", "upgrade")
    line = one_line_error(out)
    assert out.returncode == 1
    assert line.startswith(
        "migration 0006 (request changes and comments) failed: table hitl_comment already exists; "
        "the decision store is unchanged (revision 0003; backup: "
    ), line
    assert "unavailable" not in line
    assert schema_of(store)["revision"] == "0003" and snapshot(store, like=before) == before
    check = run_cli(store.url, "db", "check")
    behind = f"at revision 0003, {int(HEAD or 0) - 3} migrations behind head {HEAD}"
    assert check.returncode == 1 and behind in one_line_error(check)


def test_current_and_check_say_where_a_store_stands(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'hitl.db'}"
    out = run_cli(url, "db", "check")
    assert out.returncode == 1 and one_line_error(out).startswith(f"no decision store at {url}")
    assert not (tmp_path / "hitl.db").exists()  # asking created nothing
    assert run_cli(url, "db", "current").stdout.strip() == f"no decision store at {url}; head {HEAD}"

    store = Store(url)
    store.upgrade("0005")
    out = run_cli(url, "db", "current")
    behind = int(HEAD or 0) - 5
    assert out.returncode == 0 and out.stdout.strip() == f"revision 0005, {behind} behind; head {HEAD} ({url})"
    out = run_cli(url, "db", "check")
    assert out.returncode == 1
    assert one_line_error(out) == (
        f"decision store at revision 0005, {behind} migrations behind head {HEAD}: run python -m hitl db upgrade"
    )

    store.upgrade()
    out = run_cli(url, "db", "check")
    assert out.returncode == 0 and out.stdout.strip() == f"decision store at head {HEAD} ({url})"

    with store.write_engine.begin() as conn:
        conn.execute(sa.text("UPDATE hitl_alembic_version SET version_num = '0099'"))
    out = run_cli(url, "db", "check")
    assert out.returncode == 1 and "revision 0099, which this release does not know" in one_line_error(out)
    out = run_cli(url, "db", "upgrade")
    assert out.returncode == 1 and "a newer release migrated it" in one_line_error(out)

    other = tmp_path / "other.db"
    with closing(sqlite3.connect(other)) as conn:
        conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY)")
    out = run_cli(f"sqlite:///{other}", "db", "check")
    assert out.returncode == 1
    assert one_line_error(out) == f"not a decision store: sqlite:///{other} has tables but no hitl_alembic_version"


def test_restore_refuses_what_is_not_a_backup(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'hitl.db'}"
    Store(url).upgrade()
    junk = tmp_path / "junk"
    junk.write_text("not a database")
    out = run_cli(url, "db", "restore", str(junk))
    assert out.returncode == 2 and one_line_error(out).startswith(f"{junk} is not a decision store backup")
    out = run_cli(url, "db", "restore", str(tmp_path / "missing"))
    assert out.returncode == 2 and one_line_error(out) == f"no backup file at {tmp_path / 'missing'}"
    assert _file_revision(tmp_path / "hitl.db") == HEAD


def test_the_way_back_on_postgresql_is_a_dump_restored_into_an_emptied_database(pg_url: str, tmp_path: Path) -> None:
    """README's steps: pg_dump before the upgrade; to go back, empty the database and pg_restore the dump."""
    if shutil.which("pg_dump") is None or shutil.which("pg_restore") is None:
        pytest.skip("needs PostgreSQL's client tools (pg_dump, pg_restore)")
    store = Store(pg_url)
    store.upgrade("0003")
    before = seed(store)
    old_schema = schema_of(store)
    dump = tmp_path / "hitl-before-upgrade.dump"
    subprocess.run(["pg_dump", "--format=custom", f"--file={dump}", pg_url], check=True)
    out = run_cli(pg_url, "db", "upgrade")
    assert out.returncode == 0 and out.stdout.strip().startswith(f"decision store at revision {HEAD} ")
    assert "backed up" not in out.stdout  # PostgreSQL: the dump is the operator's
    store.engine.dispose()
    name = make_url(pg_url).database
    admin = sa.create_engine(sync_url(pg_url).set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    subprocess.run(["pg_restore", "--no-owner", f"--dbname={pg_url}", str(dump)], check=True)
    restored = Store(pg_url)
    assert schema_of(restored) == old_schema and snapshot(restored, like=before) == before
    assert restored.upgrade() == HEAD  # and it upgrades again
    restored.engine.dispose()


def test_a_store_not_migrated_for_this_release_is_named_so_not_unavailable(tmp_path: Path) -> None:
    store, _ = _old_store(tmp_path)  # revision 0003, as an earlier release left it
    out = run_cli(store.url, "approvals", "show", "1")
    assert out.returncode == 1
    assert one_line_error(out) == (
        f"decision store at revision 0003, {int(HEAD or 0) - 3} migrations behind head {HEAD}: "
        "run python -m hitl db upgrade"
    )
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()
    out = run_cli(f"sqlite:///{empty}", "approvals", "list")
    assert out.returncode == 1
    assert one_line_error(out) == "the decision store has no schema yet: run python -m hitl db upgrade"
