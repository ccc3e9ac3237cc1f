"""A store at an earlier revision, filled with every kind of row that revision could hold (the upgrade tests').

Rows go in through SQL shaped like the revision's tables (the columns it has, the statuses it allowed), so
they are what the code of the time could have written: requests in every status, votes, approvers, audit
events (one with no request), side effects, comments and a later round of "request changes".
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from hitl.store import Store, approver_rows, content_hash

T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
APPROVERS = [{"userId": "alice"}, {"role": "Reviewer"}, {"email": "Carol@Example.com"}]


def request_row(rid: int, status: str, **extra: Any) -> dict[str, Any]:
    output = {"subject": f"Hello {rid}", "body": f"Draft number {rid}"}
    row: dict[str, Any] = {
        "id": rid,
        "dag_id": "outreach" if rid % 2 else "invoices",
        "run_id": f"manual__{rid}",
        "step_id": "draft_email",
        "gate_task_id": "draft_email__approval",
        "map_index": -1,
        "try_number": 1,
        "output_kind": "email",
        "output": json.dumps(output),
        "output_hash": content_hash(output),
        "summary": f"draft {rid}",
        "approve_label": "Send email",
        "approvers": json.dumps(APPROVERS),
        "min_approvals": 1,
        "allow_self_approval": True,
        "triggered_by": "tom",
        "status": status,
        "created_at": T0 + timedelta(minutes=rid),
        "decided_at": None,
        "decided_by": None,
        "comment": None,
        "edited_output": None,
        "superseded_by": None,
        # 0003
        "owner": "ops@example.com",
        "notify": json.dumps({"email": True}),
        "remind_after": 3600,
        "escalate_after": 7200,
        "escalate_to": json.dumps(["boss@example.com"]),
        "expire_after": 86400,
        "reminders": 1,
        "reminded_at": T0 + timedelta(hours=1, minutes=rid),
        "escalated_at": None,
        # 0004
        "timeout": 172800,
        # 0006
        "revision": 1,
        "previous_request_id": None,
        "max_revisions": 3,
    }
    if status != "pending" and status != "superseded":
        row |= {"decided_at": T0 + timedelta(hours=2, minutes=rid)}
    row.update(extra)
    return row


def rows_for(tables: set[str]) -> dict[str, list[dict[str, Any]]]:
    """Every kind of row the store held while it had ``tables``."""
    changes = "hitl_comment" in tables  # 0006: request changes (a 17-character status) and comments
    requests = [
        request_row(1, "pending"),
        request_row(
            2, "approved", decided_by="alice", comment="ok", min_approvals=2, edited_output='{"subject": "Hi"}'
        ),
        request_row(3, "rejected", decided_by="bob", comment="not this one"),
        request_row(4, "superseded", superseded_by=5, run_id="manual__4"),
        request_row(5, "pending", run_id="manual__4"),
        request_row(6, "timed_out", decided_by="hitl:timeout", comment="timed out"),
    ]
    if changes:
        requests += [
            request_row(7, "changes_requested", decided_by="alice", comment="shorter, please"),
            request_row(8, "pending", revision=2, previous_request_id=7, run_id="manual__7"),
        ]
    at = T0 + timedelta(hours=3)
    audit = [
        {"id": i, "request_id": r["id"], "event": "requested", "actor": None, "at": r["created_at"], "detail": "{}"}
        for i, r in enumerate(requests, start=1)
    ]
    decided = [r for r in requests if r["decided_by"]]
    audit += [
        {
            "id": len(audit) + i,
            "request_id": r["id"],
            "event": r["status"],
            "actor": r["decided_by"],
            "at": r["decided_at"],
            "detail": json.dumps({"channel": "ui"}),
        }
        for i, r in enumerate(decided, start=1)
    ]
    audit.append({"id": len(audit) + 1, "request_id": None, "event": "sweep", "actor": None, "at": at, "detail": "{}"})
    rows: dict[str, list[dict[str, Any]]] = {
        "hitl_approval_request": requests,
        "hitl_approval_vote": [
            {"id": 1, "request_id": 2, "user": "alice", "decision": "approved", "at": at},
            {"id": 2, "request_id": 2, "user": "bob", "decision": "approved", "at": at},
            {"id": 3, "request_id": 3, "user": "bob", "decision": "rejected", "at": at},
        ],
        "hitl_audit_event": audit,
        "hitl_side_effect": [
            {"key": "email:2", "kind": "email", "status": "done", "created_at": at, "detail": '{"id": "m1"}'},
            {"key": "notify:1:requested", "kind": "notify", "status": "pending", "created_at": at, "detail": "{}"},
        ],
    }
    if "hitl_request_approver" in tables:  # 0002: as the code of the time wrote them
        rows["hitl_request_approver"] = [
            {"request_id": r["id"], "kind": k, "value": v} for r in requests for k, v in approver_rows(APPROVERS)
        ]
    if changes:
        rows["hitl_comment"] = [
            {
                "id": 1,
                "request_id": 1,
                "author": "bob",
                "body": "@alice fine?",
                "mentions": '["alice"]',
                "created_at": at,
            },
            {"id": 2, "request_id": 7, "author": "alice", "body": "shorter", "mentions": "[]", "created_at": at},
        ]
    if "hitl_policy_verdict" in tables:  # 0008: what a gate's policy said about a draft (shadow and enforced)
        rows["hitl_policy_verdict"] = [
            {
                "request_id": 1,
                "dag_id": "outreach",
                "mode": "shadow",
                "decision": "approve",
                "rule": "approveWhen",
                "rule_hash": "a" * 64,
                "sampled": False,
                "held": None,
                "reason": "short and polite",
                "at": at,
            },
            {
                "request_id": 3,
                "dag_id": "outreach",
                "mode": "enforce",
                "decision": "none",
                "rule": None,
                "rule_hash": "b" * 64,
                "sampled": True,
                "held": "quorum of 2",
                "reason": "",
                "at": at,
            },
        ]
    return rows


def reflect(conn: sa.Connection) -> sa.MetaData:
    meta = sa.MetaData()
    meta.reflect(conn, only=lambda name, _: name.startswith("hitl_") and name != "hitl_alembic_version")
    return meta


Snapshot = dict[str, tuple[list[str], list[tuple[Any, ...]]]]  # table -> (its columns, its rows in key order)


def seed(store: Store) -> Snapshot:
    """Fill the store as its revision allows; returns every seeded table's rows as read back."""
    with store.write_engine.begin() as conn:
        meta = reflect(conn)
        for name, rows in rows_for(set(meta.tables)).items():
            table = meta.tables[name]
            conn.execute(sa.insert(table), [{k: v for k, v in r.items() if k in table.c} for r in rows])
            if store.dialect == "postgresql" and "id" in table.c:  # explicit ids: move the sequence past them
                conn.execute(
                    sa.text(f"SELECT setval(pg_get_serial_sequence('{name}', 'id'), (SELECT max(id) FROM {name}))")
                )
    return snapshot(store)


def snapshot(store: Store, like: Snapshot | None = None) -> Snapshot:
    """Every row of the store's tables, or of ``like``'s tables in the columns they had then."""
    with store.engine.connect() as conn:
        meta = reflect(conn)
        out: Snapshot = {}
        for name in list(like) if like is not None else sorted(meta.tables):
            table = meta.tables[name]
            columns = [table.c[c] for c in like[name][0]] if like is not None else list(table.c)
            rows = [tuple(r) for r in conn.execute(sa.select(*columns).order_by(*columns[:3]))]
            out[name] = ([c.name for c in columns], rows)
    return out


def schema_of(store: Store) -> dict[str, Any]:
    """Tables, their columns (name, type, nullable) and indexes, and the recorded revision."""
    with store.engine.connect() as conn:
        insp = sa.inspect(conn)
        tables = {
            name: (
                [(c["name"], str(c["type"]), c["nullable"]) for c in insp.get_columns(name)],
                sorted(ix["name"] or "" for ix in insp.get_indexes(name)),
            )
            for name in sorted(insp.get_table_names())
        }
        return {
            "tables": tables,
            "revision": conn.execute(sa.text("SELECT version_num FROM hitl_alembic_version")).scalar(),
        }
