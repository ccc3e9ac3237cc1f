"""Migration operations that skip what is already there, so a store half-migrated by an earlier release resumes.

Before ``hitl.store.migrate`` ran an upgrade in one real transaction, SQLite committed a migration's
leading DDL at once (pysqlite runs DDL outside any transaction until a DML statement opens one): an
upgrade that then failed (0006's batch copy, with foreign keys on) left the first pending migration's new
column, index or table behind, or Alembic's empty copy of the request table, while the recorded revision
stayed where it was, and every retry failed on "duplicate column" or "already exists". The migrations
those stores stopped in use these helpers; on a healthy store each does exactly the plain operation.
Call them from inside a migration only (they use Alembic's ``op``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import sqlalchemy as sa
from alembic import op

BATCH_COPY_PREFIX = "_alembic_tmp_"  # the name Alembic's batch mode gives a table's copy while it rebuilds it


def has_table(name: str) -> bool:
    return sa.inspect(op.get_bind()).has_table(name)


def has_index(table: str, name: str) -> bool:
    return name in {ix["name"] for ix in sa.inspect(op.get_bind()).get_indexes(table)}


def add_missing_columns(table: str, columns: Callable[[], Sequence[sa.Column]]) -> None:  # type: ignore[type-arg]
    """Add those of ``columns()`` (fresh Column objects) that ``table`` lacks."""
    present = {c["name"] for c in sa.inspect(op.get_bind()).get_columns(table)}
    missing = [c for c in columns() if c.name not in present]
    if missing:
        with op.batch_alter_table(table) as batch:
            for column in missing:
                batch.add_column(column)


def create_index_once(name: str, table: str, columns: list[str]) -> None:
    if not has_index(table, name):
        op.create_index(name, table, columns)


def drop_empty_batch_copy(table: str) -> None:
    """Drop Alembic's copy of ``table`` left by a failed batch rebuild; refuse (naming it) if it holds rows."""
    copy = f"{BATCH_COPY_PREFIX}{table}"
    if not has_table(copy):
        return
    rows = op.get_bind().execute(sa.text(f'SELECT count(*) FROM "{copy}"')).scalar_one()
    if rows:
        raise RuntimeError(
            f"{copy} holds {rows} row(s): a copy of {table} left by an earlier failed upgrade; compare it with "
            f"{table} and drop it by hand before upgrading"
        )
    op.drop_table(copy)
