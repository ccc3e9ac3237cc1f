"""The store's read for shadow agreement: each human decision beside the policy verdict on the same draft.

One query, newest decisions first, bounded by ``last`` per call (the report is over the last N decisions); the
join is on the verdict's primary key, narrowed by its ``dag_id`` index when one workflow is asked for.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, func, literal, not_, select

from hitl.store.model import DECIDED, TIMED_OUT, _aware
from hitl.store.schema import approval_request, policy_verdict

MAX_LAST = 5000  # decisions one report reads at most


@dataclass(frozen=True)
class JudgedRow:
    """A human's decision on a draft the gate's policy had a verdict on."""

    request_id: int
    dag_id: str
    step_id: str
    status: str
    edited: bool
    decided_by: str | None
    decided_at: datetime | None
    mode: str
    verdict: str  # approve | reject | none
    rule_hash: str
    sampled: bool
    held: str | None


def judged(
    engine: Engine,
    *,
    last: int,
    dag_id: str | None = None,
    step_id: str | None = None,
    dag_ids: Collection[str] | None = None,
) -> list[JudgedRow]:
    """The last ``last`` human decisions (newest first) on drafts with a verdict; ``dag_ids``: what a reader may see."""
    r, v = approval_request.c, policy_verdict.c
    actor = func.coalesce(r.decided_by, "")
    query = (
        select(
            r.id,
            r.dag_id,
            r.step_id,
            r.status,
            r.edited_output.is_not(None),
            r.decided_by,
            r.decided_at,
            v.mode,
            v.decision,
            v.rule_hash,
            v.sampled,
            v.held,
        )
        .select_from(policy_verdict.join(approval_request, r.id == v.request_id))
        .where(
            r.status.in_([s for s in DECIDED if s != TIMED_OUT]),
            not_(actor.like("hitl:%")),
            not_(actor.like("policy:%")),
        )
        .order_by(r.decided_at.desc(), r.id.desc())
        .limit(max(1, min(last, MAX_LAST)))
    )
    if dag_id is not None:
        query = query.where(v.dag_id == dag_id)
    if step_id is not None:
        query = query.where(r.step_id == step_id)
    if dag_ids is not None:
        query = query.where(v.dag_id.in_(list(dag_ids)) if dag_ids else literal(False))
    with engine.connect() as conn:
        return [_row(row) for row in conn.execute(query)]


def _row(row: Any) -> JudgedRow:
    return JudgedRow(
        request_id=int(row[0]),
        dag_id=row[1],
        step_id=row[2],
        status=row[3],
        edited=bool(row[4]),
        decided_by=row[5],
        decided_at=_aware(row[6]),
        mode=row[7],
        verdict=row[8],
        rule_hash=row[9],
        sampled=bool(row[10]),
        held=row[11],
    )
