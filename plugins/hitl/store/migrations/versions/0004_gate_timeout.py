"""The gate task's timeout on its request, so a decision after it is refused when it is written.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("hitl_approval_request") as batch:
        batch.add_column(sa.Column("timeout", sa.Integer))


def downgrade() -> None:
    with op.batch_alter_table("hitl_approval_request") as batch:
        batch.drop_column("timeout")
