"""Gate policies: what a policy decided, or would have decided in shadow mode, about each draft.

A new table only (no batch copy of the request table), so it upgrades a populated store in place.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "hitl_policy_verdict",
        sa.Column("request_id", sa.Integer, sa.ForeignKey("hitl_approval_request.id"), primary_key=True),
        sa.Column("dag_id", sa.String(250), nullable=False),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("rule", sa.String(32)),
        sa.Column("rule_hash", sa.String(64), nullable=False),
        sa.Column("sampled", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("held", sa.String(250)),
        sa.Column("reason", sa.String(500), nullable=False, server_default=""),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_hitl_policy_verdict_dag", "hitl_policy_verdict", ["dag_id", "request_id"])


def downgrade() -> None:
    op.drop_index("ix_hitl_policy_verdict_dag", table_name="hitl_policy_verdict")
    op.drop_table("hitl_policy_verdict")
