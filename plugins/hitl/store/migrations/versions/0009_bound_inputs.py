"""Bound inputs: the outputs of ungated steps that the steps after a gate read, as the reviewer saw them.

A new table only (no batch copy of the request table), so it upgrades a populated store in place.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "hitl_bound_input",
        sa.Column("request_id", sa.Integer, sa.ForeignKey("hitl_approval_request.id"), primary_key=True),
        sa.Column("inputs", sa.Text, nullable=False),
        sa.Column("inputs_hash", sa.String(64), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("hitl_bound_input")
