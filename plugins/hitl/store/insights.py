"""The store's reads for the insights page: four grouped queries over a time window, whatever the number of requests.

Counting happens in the database (``GROUP BY`` day, outcome and flags); only the decision times of the window's
human decisions come back one by one, as numbers of seconds computed by the database, because a median and a p90 need
them. Each query is bounded by the window on ``decided_at`` (its index, ``ix_hitl_request_decided``) or by the pending
status (``ix_hitl_request_status_created``).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, and_, case, cast, func, literal, not_, select
from sqlalchemy.types import Date, Float

from hitl.store.model import DECIDED, EXPIRY_ACTOR, PENDING
from hitl.store.schema import approval_request

PENDING_AGES: tuple[tuple[str, timedelta], ...] = (
    ("under 1 hour", timedelta(hours=1)),
    ("1 to 24 hours", timedelta(days=1)),
    ("1 to 7 days", timedelta(days=7)),
)
OLDEST_AGE = "over 7 days"


@dataclass(frozen=True)
class InsightRows:
    """What the database answered; ``hitl.insights`` turns it into figures."""

    # (day "YYYY-MM-DD", status, edited, by (human | expiry | policy), quorum, escalated, count, sum of revisions)
    decided: list[tuple[str, str, bool, str, bool, bool, int, int]]
    # (day, seconds from request to decision) of every human decision in the window
    durations: list[tuple[str, float]]
    # (reviewer, status, edited, count)
    reviewers: list[tuple[str, str, bool, int]]
    # age bucket label -> pending requests
    pending: dict[str, int]


def _seconds(engine: Engine) -> Any:
    t = approval_request.c
    if engine.dialect.name == "sqlite":
        return (func.julianday(t.decided_at) - func.julianday(t.created_at)) * 86400.0
    return cast(func.extract("epoch", t.decided_at - t.created_at), Float)


def _day(engine: Engine) -> Any:
    t = approval_request.c
    if engine.dialect.name == "sqlite":
        return func.date(t.decided_at)
    return cast(func.timezone("UTC", t.decided_at), Date)


def read(
    engine: Engine,
    *,
    since: datetime,
    now: datetime,
    dag_id: str | None = None,
    dag_ids: Collection[str] | None = None,
) -> InsightRows:
    """The window's grouped rows; ``dag_id`` narrows to one workflow, ``dag_ids`` to those a reader may see."""
    t = approval_request.c
    scope: list[Any] = []
    if dag_id is not None:
        scope.append(t.dag_id == dag_id)
    if dag_ids is not None:
        scope.append(t.dag_id.in_(list(dag_ids)) if dag_ids else literal(False))
    decided = [t.decided_at >= since, t.status.in_(DECIDED), *scope]
    day = _day(engine).label("day")
    edited = (t.edited_output.is_not(None)).label("edited")
    by = case(
        (t.decided_by == EXPIRY_ACTOR, "expiry"),
        (func.coalesce(t.decided_by, "").like("policy:%"), "policy"),
        else_="human",
    ).label("by")
    quorum = (t.min_approvals > 1).label("quorum")
    escalated = (t.escalated_at.is_not(None)).label("escalated")
    by_day = (
        select(day, t.status, edited, by, quorum, escalated, func.count(), func.sum(t.revision))
        .where(*decided)
        .group_by(day, t.status, edited, by, quorum, escalated)
    )
    actor = func.coalesce(t.decided_by, "")
    human = and_(*decided, t.status != "timed_out", not_(actor.like("hitl:%")), not_(actor.like("policy:%")))
    durations = select(day, _seconds(engine)).where(human)
    reviewers = (
        select(t.decided_by, t.status, edited, func.count())
        .where(human)
        .group_by(t.decided_by, t.status, edited)
        .order_by(func.count().desc())
        .limit(200)
    )
    bucket = case(
        *((t.created_at > now - age, label) for label, age in PENDING_AGES),
        else_=OLDEST_AGE,
    ).label("bucket")
    pending = select(bucket, func.count()).where(t.status == PENDING, *scope).group_by(bucket)
    with engine.connect() as conn:
        return InsightRows(
            decided=[
                (str(r[0]), r[1], bool(r[2]), str(r[3]), bool(r[4]), bool(r[5]), int(r[6]), int(r[7] or 0))
                for r in conn.execute(by_day)
            ],
            durations=[(str(d), max(0.0, float(s or 0.0))) for d, s in conn.execute(durations)],
            reviewers=[(str(r[0]), r[1], bool(r[2]), int(r[3])) for r in conn.execute(reviewers)],
            pending={str(label): int(n) for label, n in conn.execute(pending)},
        )
