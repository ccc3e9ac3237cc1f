"""The decision store's tables. Changes go through a migration in ``migrations/versions``."""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

approval_request = Table(
    "hitl_approval_request",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("dag_id", String(250), nullable=False),
    Column("run_id", String(250), nullable=False),
    Column("step_id", String(250), nullable=False),  # the gated step (its task id)
    Column("gate_task_id", String(250), nullable=False),  # the ApprovalSensor's task id
    Column("map_index", Integer, nullable=False, default=-1),
    Column("try_number", Integer, nullable=False, default=1),
    Column("output_kind", String(16), nullable=False),
    Column("output", Text, nullable=False),  # JSON, exactly as shown to the reviewer
    Column("output_hash", String(64), nullable=False),
    Column("summary", String(500), nullable=False, default=""),
    Column("approve_label", String(200), nullable=False, default="Approve"),
    Column("approvers", Text, nullable=False, default="[]"),  # JSON list of {userId|email|role}
    Column("min_approvals", Integer, nullable=False, default=1),
    Column("allow_self_approval", Boolean, nullable=False, default=True),
    Column("triggered_by", String(250)),
    Column("status", String(32), nullable=False, default="pending"),  # 0006: 32 ("changes_requested")
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("decided_at", DateTime(timezone=True)),
    Column("decided_by", String(250)),
    Column("comment", Text),
    Column("edited_output", Text),  # JSON, when edited & approved
    Column("superseded_by", Integer),
    # 0003: who owns the workflow, how to notify, and the gate's time bounds (seconds; NULL = never)
    Column("owner", String(250)),
    Column("notify", Text, nullable=False, default="{}"),
    Column("remind_after", Integer),
    Column("escalate_after", Integer),
    Column("escalate_to", Text, nullable=False, default="[]"),
    Column("expire_after", Integer),
    Column("reminders", Integer, nullable=False, default=0),
    Column("reminded_at", DateTime(timezone=True)),
    Column("escalated_at", DateTime(timezone=True)),
    # 0004: the gate task's timeout (seconds; NULL = none): a decision after it is refused
    Column("timeout", Integer),
    Index("ix_hitl_request_status_created", "status", "created_at"),
    Index("ix_hitl_request_dag_status_created", "dag_id", "status", "created_at"),
    Index("ix_hitl_request_gate", "dag_id", "run_id", "gate_task_id", "map_index"),
    # 0006: rounds of "request changes": the draft's number (1 = the first), the request it answers, the bound
    Column("revision", Integer, nullable=False, default=1),
    Column("previous_request_id", Integer),
    Column("max_revisions", Integer, nullable=False, default=3),
    # 0005: the watcher's cursor
    Index("ix_hitl_request_decided", "decided_at"),
    # 0007: the inbox at scale: a page's ids from the index alone (history, deep pages, workflow filter, search)
    Index("ix_hitl_request_created", "created_at", "id", "status", "dag_id", "run_id", "step_id"),
    Index("ix_hitl_request_dag_created", "dag_id", "created_at", "id", "status"),
)

approval_vote = Table(
    "hitl_approval_vote",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("request_id", Integer, ForeignKey("hitl_approval_request.id"), nullable=False),
    Column("user", String(250), nullable=False),
    Column("decision", String(16), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("request_id", "user", name="uq_hitl_vote_request_user"),
)

audit_event = Table(
    "hitl_audit_event",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("request_id", Integer, ForeignKey("hitl_approval_request.id")),
    Column("event", String(32), nullable=False),
    Column("actor", String(250)),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("detail", Text, nullable=False, default="{}"),
    Index("ix_hitl_audit_request", "request_id", "id"),
)

# Who may decide a request, one row per approver (kind: userId | email | role; emails and roles
# lower-cased). No approvers listed is stored as role "admin". Lets the inbox filter in SQL.
request_approver = Table(
    "hitl_request_approver",
    metadata,
    Column("request_id", Integer, ForeignKey("hitl_approval_request.id"), primary_key=True),
    Column("kind", String(16), primary_key=True),
    Column("value", String(250), primary_key=True),
    Index("ix_hitl_request_approver_lookup", "kind", "value", "request_id"),
)

# 0006: the discussion of a request. Comments never decide; ``mentions`` is the JSON list of users notified.
comment = Table(
    "hitl_comment",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("request_id", Integer, ForeignKey("hitl_approval_request.id"), nullable=False),
    Column("author", String(250), nullable=False),
    Column("body", Text, nullable=False),
    Column("mentions", Text, nullable=False, default="[]"),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Index("ix_hitl_comment_request", "request_id", "id"),
)

# Side effects that must happen at most once (an email sent by a retried task).
side_effect = Table(
    "hitl_side_effect",
    metadata,
    Column("key", String(500), primary_key=True),
    Column("kind", String(32), nullable=False),
    Column("status", String(16), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("detail", Text, nullable=False, default="{}"),
)

# 0008: what a gate's policy decided, or would have decided (shadow mode), about one draft: one row per request,
# written with the request. Beside every human decision, so shadow agreement is one join (hitl.policy_report).
policy_verdict = Table(
    "hitl_policy_verdict",
    metadata,
    Column("request_id", Integer, ForeignKey("hitl_approval_request.id"), primary_key=True),
    Column("dag_id", String(250), nullable=False),
    Column("mode", String(16), nullable=False),  # shadow | enforce
    Column("decision", String(16), nullable=False),  # approve | reject | none
    Column("rule", String(32)),  # approveWhen | rejectWhen: the rule that matched
    Column("rule_hash", String(64), nullable=False),
    Column("sampled", Boolean, nullable=False, default=False),
    Column("held", String(250)),  # why an enforced policy may not act on this draft (quorum, a change request)
    Column("reason", String(500), nullable=False, default=""),
    Column("at", DateTime(timezone=True), nullable=False),
    Index("ix_hitl_policy_verdict_dag", "dag_id", "request_id"),
)

# 0009: what the steps after a gate read besides the approved output (ungated steps' outputs), as recorded
# with the request the reviewer saw; checked before those steps act (hitl.guard)
bound_input = Table(
    "hitl_bound_input",
    metadata,
    Column("request_id", Integer, ForeignKey("hitl_approval_request.id"), primary_key=True),
    Column("inputs", Text, nullable=False),  # JSON: step id -> output
    Column("inputs_hash", String(64), nullable=False),
)

# 0010: the auth manager's users as task code may read them (it may not ask the auth manager): each user's email,
# roles, and which DAGs they may read. Written by processes that may ask (the api-server, `python -m hitl users
# sync`); read for approver emails, role members and "may this approver read the DAG?" (hitl.store.directory).
user_directory = Table(
    "hitl_user",
    metadata,
    Column("username", String(250), primary_key=True),
    Column("email", String(320)),
    Column("roles", Text, nullable=False, default="[]"),  # lowercased role names
    Column("all_dags", Boolean, nullable=False, default=False),  # may read every DAG, also ones made later
    Column("dags", Text, nullable=False, default="[]"),  # else: the DAGs they may read, as of synced_at
    Column("synced_at", DateTime(timezone=True), nullable=False),
)

# 0011: what a step that runs after an approval returned (its hash), recorded as it finishes, so a later step that
# reads it checks the value was not changed in between (an XCom edit): the chain from the approval to the action.
step_output = Table(
    "hitl_step_output",
    metadata,
    Column("dag_id", String(250), primary_key=True),
    Column("run_id", String(250), primary_key=True),
    Column("task_id", String(250), primary_key=True),
    Column("map_index", Integer, primary_key=True),
    Column("output_hash", String(64), nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
)
