"""How a workflow's reviews go: the figures of the insights page, its CSV, and nothing else.

Built from ``hitl.store.insights.read`` (grouped rows from the database): decisions per day by outcome, time to
decision (median and p90, per day for the trend), pending requests by age, the edit rate, rounds per approval, each
reviewer's decisions, and how quorum and escalated requests ended. Days are UTC days.
"""

from __future__ import annotations

import csv
import io
import math
from collections import Counter, defaultdict
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from hitl.store.insights import OLDEST_AGE, PENDING_AGES, InsightRows, read

OUTCOMES = ("approved", "edited", "rejected", "changes_requested", "expired", "timed_out", "by_policy")
OUTCOME_WORDS = {
    "approved": "Approved",
    "edited": "Approved (edited)",
    "rejected": "Rejected",
    "changes_requested": "Changes requested",
    "expired": "Expired",
    "timed_out": "Timed out",
    "by_policy": "By policy",
}
WINDOWS = (7, 30, 90)


def outcome(status: str, edited: bool, by: str) -> str:
    """The outcome word of a closed request from its stored status, edit flag and who closed it."""
    if by == "policy":
        return "by_policy"
    if status == "approved":
        return "edited" if edited else "approved"
    if status == "rejected":
        return "expired" if by == "expiry" else "rejected"
    return status


def percentile(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile of sorted ``values`` (as the benchmarks compute theirs); None when empty."""
    if not values:
        return None
    return values[max(0, math.ceil(p / 100 * len(values)) - 1)]


@dataclass(frozen=True)
class Insights:
    """Every figure of the page for one window (and one workflow, or all the reader may see)."""

    days: list[str]
    by_day: dict[str, Counter[str]]
    totals: Counter[str]
    median_seconds: float | None
    p90_seconds: float | None
    trend: list[tuple[str, float | None, float | None]]  # (day, median, p90)
    pending: list[tuple[str, int]]
    reviewers: list[tuple[str, Counter[str]]]
    quorum: Counter[str] = field(default_factory=Counter)
    escalated: Counter[str] = field(default_factory=Counter)
    rounds_per_approval: float | None = None

    @property
    def decided(self) -> int:
        return sum(self.totals.values())

    @property
    def edit_rate(self) -> float | None:
        approvals = self.totals["approved"] + self.totals["edited"]
        return self.totals["edited"] / approvals if approvals else None

    def csv(self) -> str:
        """The page's numbers as CSV: ``section,key,outcome,value``, one figure a row."""
        buffer = io.StringIO()
        out = csv.writer(buffer, lineterminator="\n")
        out.writerow(["section", "key", "outcome", "value"])
        for row in self._rows():
            out.writerow(["'" + c if isinstance(c, str) and c[:1] in ("=", "+", "-", "@") else c for c in row])
        return buffer.getvalue()

    def _rows(self) -> Iterator[tuple[str, str, str, object]]:
        for day in self.days:
            for name in OUTCOMES:
                yield ("decisions_by_day", day, name, self.by_day[day][name])
        for name in OUTCOMES:
            yield ("decisions_total", "", name, self.totals[name])
        yield ("time_to_decision_seconds", "median", "", _round(self.median_seconds))
        yield ("time_to_decision_seconds", "p90", "", _round(self.p90_seconds))
        for day, median, p90 in self.trend:
            yield ("time_to_decision_by_day", day, "median", _round(median))
            yield ("time_to_decision_by_day", day, "p90", _round(p90))
        for label, n in self.pending:
            yield ("pending_by_age", label, "", n)
        yield ("edit_rate", "", "", _round(self.edit_rate, 4))
        yield ("rounds_per_approval", "", "", _round(self.rounds_per_approval, 3))
        for reviewer, counts in self.reviewers:
            for name in OUTCOMES:
                if counts[name]:
                    yield ("reviewer", reviewer, name, counts[name])
        for name in OUTCOMES:
            if self.quorum[name]:
                yield ("quorum", "", name, self.quorum[name])
            if self.escalated[name]:
                yield ("escalated", "", name, self.escalated[name])


def _round(value: float | None, digits: int = 1) -> float | str:
    return "" if value is None else round(value, digits)


def compute(
    store: object,
    *,
    now: datetime,
    days: int = 30,
    dag_id: str | None = None,
    dag_ids: Collection[str] | None = None,
) -> Insights:
    """The figures of the last ``days`` UTC days up to ``now``."""
    start = (now - timedelta(days=days - 1)).replace(hour=0, minute=0, second=0, microsecond=0)
    rows = read(store.engine, since=start, now=now, dag_id=dag_id, dag_ids=dag_ids)  # type: ignore[attr-defined]
    return figures(rows, start=start, days=days)


def figures(rows: InsightRows, *, start: datetime, days: int) -> Insights:
    """The page's figures from the database's grouped rows (pure: tested on its own)."""
    day_list = [(start + timedelta(days=i)).date().isoformat() for i in range(days)]
    by_day: dict[str, Counter[str]] = defaultdict(Counter)
    totals: Counter[str] = Counter()
    quorum: Counter[str] = Counter()
    escalated: Counter[str] = Counter()
    revisions = approvals = 0
    for day, status, edited, by, is_quorum, was_escalated, n, revision_sum in rows.decided:
        name = outcome(status, edited, by)
        by_day[day][name] += n
        totals[name] += n
        if is_quorum:
            quorum[name] += n
        if was_escalated:
            escalated[name] += n
        if status == "approved":
            approvals += n
            revisions += revision_sum
    per_day: dict[str, list[float]] = defaultdict(list)
    everything: list[float] = []
    for day, seconds in rows.durations:
        per_day[day].append(seconds)
        everything.append(seconds)
    everything.sort()
    trend = []
    for day in day_list:
        values = sorted(per_day.get(day, []))
        trend.append((day, percentile(values, 50), percentile(values, 90)))
    reviewers: dict[str, Counter[str]] = defaultdict(Counter)
    for name, status, edited, n in rows.reviewers:
        reviewers[name][outcome(status, edited, "human")] += n
    ranked = sorted(reviewers.items(), key=lambda item: (-sum(item[1].values()), item[0]))
    labels = [label for label, _ in PENDING_AGES] + [OLDEST_AGE]
    return Insights(
        days=day_list,
        by_day={day: by_day.get(day, Counter()) for day in day_list},
        totals=totals,
        median_seconds=percentile(everything, 50),
        p90_seconds=percentile(everything, 90),
        trend=trend,
        pending=[(label, rows.pending.get(label, 0)) for label in labels],
        reviewers=ranked,
        quorum=quorum,
        escalated=escalated,
        rounds_per_approval=revisions / approvals if approvals else None,
    )
