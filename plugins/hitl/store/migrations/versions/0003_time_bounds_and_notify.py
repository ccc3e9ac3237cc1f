"""Per-request time bounds (remind, escalate, expire) and notification settings.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from hitl.store.migration_ops import add_missing_columns

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def columns() -> list[sa.Column]:  # type: ignore[type-arg]
    """Fresh Column objects each time (a Column belongs to one table)."""
    return [
        sa.Column("owner", sa.String(250)),
        sa.Column("notify", sa.Text, nullable=False, server_default="{}"),
        sa.Column("remind_after", sa.Integer),
        sa.Column("escalate_after", sa.Integer),
        sa.Column("escalate_to", sa.Text, nullable=False, server_default="[]"),
        sa.Column("expire_after", sa.Integer),
        sa.Column("reminders", sa.Integer, nullable=False, server_default="0"),
        sa.Column("reminded_at", sa.DateTime(timezone=True)),
        sa.Column("escalated_at", sa.DateTime(timezone=True)),
    ]


def upgrade() -> None:
    add_missing_columns("hitl_approval_request", columns)  # an earlier release's failed upgrade may have added some


def downgrade() -> None:
    with op.batch_alter_table("hitl_approval_request") as batch:
        for column in reversed(columns()):
            batch.drop_column(column.name)
