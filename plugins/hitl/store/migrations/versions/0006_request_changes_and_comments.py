"""Rounds of "request changes" (a request's revision, the request it answers, the gate's bound) and comments.

The status column grows to 32 characters for ``changes_requested``.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from hitl.store.migration_ops import drop_empty_batch_copy

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    drop_empty_batch_copy("hitl_approval_request")  # the copy an earlier release's failed run of this one left
    with op.batch_alter_table("hitl_approval_request") as batch:
        batch.alter_column("status", existing_type=sa.String(16), type_=sa.String(32), existing_nullable=False)
        batch.add_column(sa.Column("revision", sa.Integer, nullable=False, server_default="1"))
        batch.add_column(sa.Column("previous_request_id", sa.Integer))
        batch.add_column(sa.Column("max_revisions", sa.Integer, nullable=False, server_default="3"))
    op.create_table(
        "hitl_comment",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("request_id", sa.Integer, sa.ForeignKey("hitl_approval_request.id"), nullable=False),
        sa.Column("author", sa.String(250), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("mentions", sa.Text, nullable=False, server_default="[]"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_hitl_comment_request", "hitl_comment", ["request_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_hitl_comment_request", table_name="hitl_comment")
    op.drop_table("hitl_comment")
    with op.batch_alter_table("hitl_approval_request") as batch:
        batch.drop_column("max_revisions")
        batch.drop_column("previous_request_id")
        batch.drop_column("revision")
        batch.alter_column("status", existing_type=sa.String(32), type_=sa.String(16), existing_nullable=False)
