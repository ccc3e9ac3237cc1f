"""Alembic environment for the decision store; run only through ``hitl.store.migrate.upgrade``.

That function owns the transaction (one for the whole upgrade, with SQLite's foreign keys off for batch
copies), so a failed migration leaves the store as it was; Alembic sees a connection already in a
transaction and neither begins nor commits.
"""

from __future__ import annotations

from alembic import context

from hitl.store.migrate import VERSION_TABLE
from hitl.store.schema import metadata

connection = context.config.attributes["connection"]
if not connection.in_transaction():
    raise RuntimeError("decision store migrations run inside hitl.store.migrate.upgrade's transaction")
context.configure(
    connection=connection,
    target_metadata=metadata,
    version_table=VERSION_TABLE,  # never collide with Airflow's own alembic_version
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
