"""Indexes for the inbox at 100,000+ requests: history pages, deep pages, the workflow filter, search.

Both hold, after the order the inbox lists in (created_at, id), the columns its filters test, so a
page's ids come from the index alone: a deep page skips index entries, not rows, and the search's
LIKE runs over the small index instead of every stored output (benchmarks/inbox.py).

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_hitl_request_created",
        "hitl_approval_request",
        ["created_at", "id", "status", "dag_id", "run_id", "step_id"],
    )
    op.create_index("ix_hitl_request_dag_created", "hitl_approval_request", ["dag_id", "created_at", "id", "status"])


def downgrade() -> None:
    op.drop_index("ix_hitl_request_dag_created", table_name="hitl_approval_request")
    op.drop_index("ix_hitl_request_created", table_name="hitl_approval_request")
