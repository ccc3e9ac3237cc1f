"""Backups of a SQLite decision store (``db upgrade`` takes one first) and the way back (``db restore``).

Why SQLite's online backup API and not a file copy: under WAL the newest committed rows may still be in
``hitl.db-wal``; a copy of ``hitl.db`` alone misses them, and a copy taken while a component writes can be
torn. The backup API copies a consistent snapshot, and restoring through it writes the store's pages
through SQLite itself, so the store's own WAL and shared-memory files stay consistent with it.
"""

from __future__ import annotations

import os
import sqlite3
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from hitl.store.migrate import VERSION_TABLE, current_revision, sqlite_file

if TYPE_CHECKING:
    from hitl.store.repository import Store


def backup_sqlite(store: Store, *, revision: str, now: datetime | None = None) -> Path:
    """Copy a SQLite store beside itself with SQLite's online backup API (consistent under WAL and writers).

    Named ``<file>.backup-<revision>-<UTC time>``; created exclusively (never over another file), with the
    store's own file mode (the store holds reviewed outputs).
    """
    path = sqlite_file(store.url)
    if path is None or not path.is_file():
        raise ValueError(f"not a SQLite store file: {store.engine.url.render_as_string(hide_password=True)}")
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    dest = path.with_name(f"{path.name}.backup-{revision}-{stamp}")
    n = 1
    while True:
        try:
            fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, path.stat().st_mode & 0o777)
            break
        except FileExistsError:
            n += 1
            dest = path.with_name(f"{path.name}.backup-{revision}-{stamp}-{n}")
    os.close(fd)
    _copy(path, dest)
    return dest


def restore_sqlite(store: Store, backup: Path) -> tuple[str, Path | None]:
    """Put a backup's content back into the SQLite store (online backup API, so WAL and its files agree).

    Returns the backup's revision and where the store's current content was saved first (nothing is lost:
    decisions made since the backup are in that file).
    """
    path = sqlite_file(store.url)
    if path is None:
        raise ValueError("restore works on a SQLite store; on PostgreSQL use pg_restore (see the README)")
    if not backup.is_file():
        raise ValueError(f"no backup file at {backup}")
    revision = _file_revision(backup)
    saved = None
    if path.is_file():
        with store.engine.connect() as conn:
            saved = backup_sqlite(store, revision=current_revision(conn) or "none")
    store.engine.dispose()
    store.write_engine.dispose()
    _copy(backup, path)
    return revision, saved


def _file_revision(path: Path) -> str:
    try:
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
            row = conn.execute(f"SELECT version_num FROM {VERSION_TABLE}").fetchone()
    except sqlite3.DatabaseError as exc:
        raise ValueError(f"{path} is not a decision store backup: {exc}") from exc
    if row is None:
        raise ValueError(f"{path} is not a decision store backup: {VERSION_TABLE} is empty")
    return str(row[0])


def _copy(source: Path, dest: Path) -> None:
    with closing(sqlite3.connect(source, timeout=30)) as src, closing(sqlite3.connect(dest, timeout=30)) as dst:
        src.backup(dst)
