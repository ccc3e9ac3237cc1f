"""Who may decide each request, one row per approver, so the inbox can ask "what needs my attention?" in SQL.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

from hitl.store import approver_rows
from hitl.store.migration_ops import create_index_once, has_table

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if not has_table("hitl_request_approver"):  # an earlier release's failed upgrade may have created it (empty)
        op.create_table(
            "hitl_request_approver",
            sa.Column("request_id", sa.Integer, sa.ForeignKey("hitl_approval_request.id"), primary_key=True),
            sa.Column("kind", sa.String(16), primary_key=True),
            sa.Column("value", sa.String(250), primary_key=True),
        )
    create_index_once("ix_hitl_request_approver_lookup", "hitl_request_approver", ["kind", "value", "request_id"])
    # Backfill from the JSON column (requests without rows yet); no approvers listed means admins decide.
    conn = op.get_bind()
    rows = conn.execute(
        sa.text(
            "SELECT id, approvers FROM hitl_approval_request"
            " WHERE id NOT IN (SELECT request_id FROM hitl_request_approver)"
        )
    ).all()
    for request_id, approvers in rows:
        for kind, value in approver_rows(json.loads(approvers or "[]")):
            conn.execute(
                sa.text("INSERT INTO hitl_request_approver (request_id, kind, value) VALUES (:r, :k, :v)"),
                {"r": request_id, "k": kind, "v": value},
            )


def downgrade() -> None:
    op.drop_index("ix_hitl_request_approver_lookup", "hitl_request_approver")
    op.drop_table("hitl_request_approver")
