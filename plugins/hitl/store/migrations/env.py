"""Alembic environment for the decision store; run through ``python -m hitl db upgrade``."""

from __future__ import annotations

from alembic import context

from hitl.store.schema import metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    version_table="hitl_alembic_version",  # never collide with Airflow's own alembic_version
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
