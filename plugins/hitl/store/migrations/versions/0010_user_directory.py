"""The user directory: the auth manager's users (email, roles, readable DAGs) for task code, which may not ask it.

A new table only (no batch copy), so it upgrades a populated store in place.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "hitl_user",
        sa.Column("username", sa.String(250), primary_key=True),
        sa.Column("email", sa.String(320)),
        sa.Column("roles", sa.Text, nullable=False, server_default="[]"),
        sa.Column("all_dags", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("dags", sa.Text, nullable=False, server_default="[]"),
        sa.Column("synced_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("hitl_user")
