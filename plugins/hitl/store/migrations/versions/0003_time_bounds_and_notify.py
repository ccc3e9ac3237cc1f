"""Per-request time bounds (remind, escalate, expire) and notification settings.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

COLUMNS: list[sa.Column] = [  # type: ignore[type-arg]
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
    with op.batch_alter_table("hitl_approval_request") as batch:
        for column in COLUMNS:
            batch.add_column(column.copy())


def downgrade() -> None:
    with op.batch_alter_table("hitl_approval_request") as batch:
        for column in reversed(COLUMNS):
            batch.drop_column(column.name)
