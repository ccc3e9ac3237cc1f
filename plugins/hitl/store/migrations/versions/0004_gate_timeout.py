"""The gate task's timeout on its request, so a decision after it is refused when it is written.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from hitl.store.migration_ops import add_missing_columns

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # An earlier release's failed upgrade from 0003 (make demo's store) left this column behind at revision 0003.
    add_missing_columns("hitl_approval_request", lambda: [sa.Column("timeout", sa.Integer)])


def downgrade() -> None:
    with op.batch_alter_table("hitl_approval_request") as batch:
        batch.drop_column("timeout")
