"""Engines for the decision store: SQLite (WAL, busy timeout, write transactions taken up front) or PostgreSQL."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url

SQLITE_BUSY_TIMEOUT_MS = 30_000


def _sqlite_pragmas(dbapi_connection: Any, _record: Any, *, foreign_keys: bool = True) -> None:
    cur = dbapi_connection.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cur.execute(f"PRAGMA foreign_keys={'ON' if foreign_keys else 'OFF'}")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def make_engines(url: str) -> tuple[Engine, Engine]:
    """Return (read engine, write engine).

    On SQLite a deferred transaction that later writes can fail with "database is locked"
    without waiting (the busy handler cannot resolve a read->write upgrade), so writes
    take the write lock first with BEGIN IMMEDIATE; reads stay concurrent under WAL.
    On PostgreSQL one engine serves both.
    """
    parsed = sync_url(url)
    if parsed.get_backend_name() != "sqlite":
        engine = create_engine(parsed, pool_pre_ping=True, pool_size=5, max_overflow=10)
        return engine, engine
    if parsed.database and parsed.database != ":memory:":
        from pathlib import Path

        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    read = create_engine(parsed, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
    event.listen(read, "connect", _sqlite_pragmas)
    write = create_engine(parsed, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})

    @event.listens_for(write, "connect")
    def _connect(dbapi_connection: Any, record: Any) -> None:
        _sqlite_pragmas(dbapi_connection, record)
        dbapi_connection.isolation_level = None  # let the "begin" hook below own BEGIN

    @event.listens_for(write, "begin")
    def _begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return read, write


def migration_engine(url: str) -> Engine:
    """The SQLite engine migrations run on: foreign keys off, every statement (DDL too) inside one real transaction.

    Alembic's batch mode rebuilds a table by copy, drop and rename; with foreign keys on, dropping a table
    that votes or approvers reference fails (Alembic's documented recipe turns them off). The pragma is a
    no-op inside a transaction, so it is set when the connection opens, before any BEGIN. pysqlite's own
    transaction handling would run DDL outside any transaction (a failed upgrade would leave half of it
    applied), so the driver is put in autocommit and the "begin" hook emits BEGIN IMMEDIATE itself (it also
    takes the write lock first, so two upgrades queue instead of interleaving). One connection, not pooled.
    """
    from sqlalchemy.pool import NullPool

    parsed = sync_url(url)
    engine = create_engine(parsed, poolclass=NullPool, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, record: Any) -> None:
        _sqlite_pragmas(dbapi_connection, record, foreign_keys=False)
        dbapi_connection.isolation_level = None

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def sync_url(url: str) -> URL:
    """A plain ``postgresql://`` URL means psycopg2 (the driver Airflow ships), not SQLAlchemy 2.1's psycopg 3."""
    parsed = make_url(url)
    if parsed.drivername == "postgresql":
        return parsed.set(drivername="postgresql+psycopg2")
    return parsed


def async_url(url: str) -> URL:
    """The same database through an async driver (aiosqlite / asyncpg), for the trigger."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return parsed.set(drivername="sqlite+aiosqlite")
    if backend == "postgresql":
        return parsed.set(drivername="postgresql+asyncpg")
    raise ValueError(f"[hitl] store_url: unsupported database {backend!r} (use sqlite or postgresql)")
