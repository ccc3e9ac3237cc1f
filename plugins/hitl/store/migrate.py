"""Upgrading the decision store: all or nothing, a failure named by its migration; where a store stands.

Why one transaction for the whole upgrade: a store is either at the revision it had or at the target,
never between (the code that ran before the upgrade still reads it, and a retry starts from the same
place). PostgreSQL's DDL is transactional; on SQLite ``engine.migration_engine`` makes it so (the driver
would otherwise run DDL outside any transaction) and turns foreign keys off for Alembic's batch copies,
so each step is followed by ``PRAGMA foreign_key_check``: a migration may not leave a row pointing at
nothing that did not already before it.

Why the failure is ``MigrationFailed`` and not a database error: the store is reachable and unchanged;
what the operator needs is which migration failed and why ("migration 0006 (request changes and
comments) failed: table hitl_comment already exists"), not "the decision store is unavailable".
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, inspect
from sqlalchemy.engine import make_url

if TYPE_CHECKING:
    from alembic.script import Script, ScriptDirectory

    from hitl.store.repository import Store

SCRIPT_LOCATION = Path(__file__).parent / "migrations"
VERSION_TABLE = "hitl_alembic_version"
PG_UPGRADE_LOCK = 0x6869746C  # "hitl": one upgrade at a time per database (a transaction-scoped advisory lock)


class UpgradeError(Exception):
    """The store was not upgraded, and is as it was before the attempt."""

    def __init__(self, message: str, *, unchanged_at: str | None) -> None:
        super().__init__(message)
        self.unchanged_at = unchanged_at  # the revision the store is still at (None: no schema yet)


class MigrationFailed(UpgradeError):
    """One migration raised (or would have orphaned rows); the whole upgrade was rolled back."""

    def __init__(self, *, revision: str, description: str, cause: str, unchanged_at: str | None) -> None:
        super().__init__(f"migration {revision} ({description}) failed: {cause}", unchanged_at=unchanged_at)
        self.revision = revision
        self.description = description
        self.cause = cause


class UnknownRevision(UpgradeError):
    """The store is at a revision this release does not have (a newer release migrated it)."""


@dataclass(frozen=True, kw_only=True)
class SchemaState:
    """Where a store stands against this release's migrations (``db current``, ``db check``)."""

    where: str  # the store's URL, password hidden
    exists: bool  # False: a SQLite file that is not there
    has_tables: bool
    current: str | None  # the recorded revision; None without a version table
    head: str
    known: bool  # the current revision is one of this release's
    pending: tuple[str, ...]  # what ``upgrade`` would apply, oldest first

    def problem(self) -> str | None:
        """One line saying why the store is not at head, or None when it is."""
        upgrade = "python -m hitl db upgrade"
        if not self.exists:
            return f"no decision store at {self.where} ({upgrade} creates it)"
        if self.current is None and not self.has_tables:
            return f"{self.where} is empty: no decision store yet ({upgrade} creates it)"
        if self.current is None:
            return f"not a decision store: {self.where} has tables but no {VERSION_TABLE}"
        if not self.known:
            return (
                f"decision store at revision {self.current}, which this release does not know (its head is "
                f"{self.head}): a newer release migrated it"
            )
        if self.pending:
            n = len(self.pending)
            return (
                f"decision store at revision {self.current}, {n} migration{'s' * (n != 1)} behind head "
                f"{self.head}: run {upgrade}"
            )
        return None


def script_directory() -> ScriptDirectory:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_config())


def describe(script: Script) -> str:
    """A migration's short name, from its file name: ``0006_request_changes_and_comments.py`` -> its words."""
    stem = Path(script.path).stem
    _, _, words = stem.partition("_")
    return words.replace("_", " ") or stem


def sqlite_file(url: str) -> Path | None:
    """The file of a SQLite store (None for PostgreSQL or an in-memory database)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    return Path(parsed.database)


def state(store: Store) -> SchemaState:
    """Read where ``store`` stands; never creates anything (a missing SQLite file stays missing)."""
    scripts = script_directory()
    head = scripts.get_current_head() or ""
    where = store.engine.url.render_as_string(hide_password=True)
    path = sqlite_file(store.url)
    if path is not None and not path.is_file():
        return SchemaState(where=where, exists=False, has_tables=False, current=None, head=head, known=True, pending=())
    with store.engine.connect() as conn:
        current = current_revision(conn)
        has_tables = bool(inspect(conn).get_table_names())
    known = current is None or _known(scripts, current)
    pending = _pending(scripts, current, "head") if known else []
    return SchemaState(
        where=where,
        exists=True,
        has_tables=has_tables,
        current=current,
        head=head,
        known=known,
        pending=tuple(s.revision for s in pending),
    )


MISSING_SCHEMA_PGCODES = frozenset({"42703", "42P01"})  # undefined_column, undefined_table
MISSING_SCHEMA_SQLITE = ("no such column", "no such table", "has no column named")


def schema_problem(exc: BaseException, store: Store) -> str | None:
    """Why a query failed, when it failed on a missing table or column of a store not at this release's head.

    Such a store is reachable; it needs ``db upgrade`` (or is newer than this release), which is what the
    error should say rather than "the decision store is unavailable". One line, without the store's URL
    (pages show it). None for any other failure, or when the store cannot be read either.
    """
    orig = getattr(exc, "orig", None)
    if orig is None:
        return None
    if getattr(orig, "pgcode", None) not in MISSING_SCHEMA_PGCODES and not (
        isinstance(orig, sqlite3.OperationalError) and any(m in str(orig) for m in MISSING_SCHEMA_SQLITE)
    ):
        return None
    try:
        st = state(store)
    except Exception:
        return None
    if st.current is None:
        return "the decision store has no schema yet: run python -m hitl db upgrade"
    return st.problem() if st.exists else None


def current_revision(conn: Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE}).get_current_revision()


def upgrade(store: Store, target: str = "head") -> str:
    """Apply every migration up to ``target`` in one transaction; returns the revision the store is now at.

    Raises ``MigrationFailed`` (naming the migration and its cause) or ``UnknownRevision``; either way
    nothing was changed. Errors reaching the database before any migration runs propagate as they are
    (the store is unavailable, which is the caller's usual report).
    """
    from hitl.store.engine import migration_engine

    scripts = script_directory()
    sqlite = store.dialect == "sqlite"
    engine = migration_engine(store.url) if sqlite else store.engine
    try:
        with engine.connect() as conn, conn.begin():
            if not sqlite:
                conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({PG_UPGRADE_LOCK})")
            current = current_revision(conn)  # read under the lock: a concurrent upgrade has finished
            if current is not None and not _known(scripts, current):
                head = scripts.get_current_head()
                raise UnknownRevision(
                    f"the decision store is at revision {current}, which this release does not know (its head is "
                    f"{head}): a newer release migrated it; install that release or restore a backup",
                    unchanged_at=current,
                )
            steps = _pending(scripts, current, target)
            before = foreign_key_violations(conn) if sqlite else Counter()
            for step in steps:
                try:
                    _apply(conn, step.revision)
                    if sqlite:
                        refuse_new_violations(conn, before)
                except Exception as exc:
                    raise MigrationFailed(
                        revision=step.revision, description=describe(step), cause=cause_of(exc), unchanged_at=current
                    ) from exc
            return steps[-1].revision if steps else str(current)
    finally:
        if sqlite:
            engine.dispose()


def cause_of(exc: BaseException) -> str:
    """The first line of what the database (or the migration) said, without SQLAlchemy's wrapping."""
    inner = getattr(exc, "orig", None) or exc
    text = str(inner).strip()
    line = text.splitlines()[0][:300] if text else ""
    return line or type(inner).__name__


def _config() -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(SCRIPT_LOCATION))
    return cfg


def _known(scripts: ScriptDirectory, revision: str) -> bool:
    from alembic.util.exc import CommandError

    try:
        return scripts.get_revision(revision) is not None
    except CommandError:
        return False


def _pending(scripts: ScriptDirectory, current: str | None, target: str) -> list[Script]:
    """The migrations from ``current`` (exclusive) to ``target``, oldest first."""
    return list(reversed(list(scripts.iterate_revisions(target, current or "base"))))


def _apply(conn: Connection, revision: str) -> None:
    """One migration, inside the caller's transaction (env.py sees it and neither begins nor commits)."""
    from alembic import command

    cfg = _config()
    cfg.attributes["connection"] = conn
    command.upgrade(cfg, revision)


def foreign_key_violations(conn: Connection) -> Counter[tuple[str, str]]:
    """Rows whose foreign key points at no row, by (table, referenced table)."""
    rows = conn.exec_driver_sql("PRAGMA foreign_key_check").all()
    return Counter((str(r[0]), str(r[2])) for r in rows)


def refuse_new_violations(conn: Connection, before: Counter[tuple[str, str]]) -> None:
    """Foreign keys are off while migrating SQLite: fail the step that left rows pointing at nothing."""
    new = foreign_key_violations(conn) - before
    if new:
        (table, parent), count = next(iter(sorted(new.items())))
        raise IntegrityGuard(f"it would leave {count} row(s) of {table} pointing at no row of {parent}")


class IntegrityGuard(Exception):
    """A migration step broke referential integrity (reported as that migration's failure)."""
