"""Approval requests, votes, the audit log and at-most-once side effects.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "hitl_approval_request",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("dag_id", sa.String(250), nullable=False),
        sa.Column("run_id", sa.String(250), nullable=False),
        sa.Column("step_id", sa.String(250), nullable=False),
        sa.Column("gate_task_id", sa.String(250), nullable=False),
        sa.Column("map_index", sa.Integer, nullable=False),
        sa.Column("try_number", sa.Integer, nullable=False),
        sa.Column("output_kind", sa.String(16), nullable=False),
        sa.Column("output", sa.Text, nullable=False),
        sa.Column("output_hash", sa.String(64), nullable=False),
        sa.Column("summary", sa.String(500), nullable=False),
        sa.Column("approve_label", sa.String(200), nullable=False),
        sa.Column("approvers", sa.Text, nullable=False),
        sa.Column("min_approvals", sa.Integer, nullable=False),
        sa.Column("allow_self_approval", sa.Boolean, nullable=False),
        sa.Column("triggered_by", sa.String(250)),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True)),
        sa.Column("decided_by", sa.String(250)),
        sa.Column("comment", sa.Text),
        sa.Column("edited_output", sa.Text),
        sa.Column("superseded_by", sa.Integer),
    )
    op.create_index("ix_hitl_request_status_created", "hitl_approval_request", ["status", "created_at"])
    op.create_index("ix_hitl_request_dag_status_created", "hitl_approval_request", ["dag_id", "status", "created_at"])
    op.create_index("ix_hitl_request_gate", "hitl_approval_request", ["dag_id", "run_id", "gate_task_id", "map_index"])
    op.create_table(
        "hitl_approval_vote",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("request_id", sa.Integer, sa.ForeignKey("hitl_approval_request.id"), nullable=False),
        sa.Column("user", sa.String(250), nullable=False),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("request_id", "user", name="uq_hitl_vote_request_user"),
    )
    op.create_table(
        "hitl_audit_event",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("request_id", sa.Integer, sa.ForeignKey("hitl_approval_request.id")),
        sa.Column("event", sa.String(32), nullable=False),
        sa.Column("actor", sa.String(250)),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
    )
    op.create_index("ix_hitl_audit_request", "hitl_audit_event", ["request_id", "id"])
    op.create_table(
        "hitl_side_effect",
        sa.Column("key", sa.String(500), primary_key=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("hitl_side_effect")
    op.drop_index("ix_hitl_audit_request", "hitl_audit_event")
    op.drop_table("hitl_audit_event")
    op.drop_table("hitl_approval_vote")
    op.drop_table("hitl_approval_request")
