"""An index on decided_at: the triggerer's watcher asks only for requests decided since its last look.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

from alembic import op

from hitl.store.migration_ops import create_index_once

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_index_once("ix_hitl_request_decided", "hitl_approval_request", ["decided_at"])  # may be left by a failed run


def downgrade() -> None:
    op.drop_index("ix_hitl_request_decided", table_name="hitl_approval_request")
