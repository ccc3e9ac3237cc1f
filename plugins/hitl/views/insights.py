"""The insights page: how a workflow's reviews go (``/insights``, ``?workflow=``, ``?days=``, ``?format=csv``).

The figures come from ``hitl.insights`` (grouped queries over the window); this module only reads the page's
arguments and renders. The charts are inline SVG drawn on the server (``hitl.views.charts``): nothing to fetch.
"""

from __future__ import annotations

from typing import Any

from flask import Response, request
from flask_appbuilder import expose

from hitl.identity import Reviewer
from hitl.insights import OUTCOME_WORDS, OUTCOMES, WINDOWS, compute
from hitl.store import utcnow
from hitl.views import charts
from hitl.views.common import signed_in
from hitl.views.html import readable_workflows
from hitl.views.limits import BadInput, open_store, shown


class InsightsRoutes:
    """Mixed into ``ApprovalsView`` beside ``PageRoutes`` (whose ``_page`` renders it)."""

    @expose("/insights")
    @signed_in("page")
    def insights(self, reviewer: Reviewer) -> Any:
        raw_days = request.args.get("days") or "30"
        if raw_days not in {str(d) for d in WINDOWS}:
            raise BadInput(f"days must be one of {', '.join(map(str, WINDOWS))}, not {shown(raw_days)!r}")
        days = int(raw_days)
        workflow = request.args.get("workflow") or None
        store = open_store()
        found = compute(store, now=utcnow(), days=days, dag_id=workflow, dag_ids=reviewer.dags)
        if request.args.get("format") == "csv":
            name = f"hitl-insights-{workflow or 'all'}-{days}d.csv".replace('"', "")
            return Response(
                found.csv(),
                mimetype="text/csv",
                headers={"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"},
            )
        series = [(name, OUTCOME_WORDS[name]) for name in OUTCOMES]
        from hitl.policy_report import DEFAULT_LAST, report

        policies = report(store, last=DEFAULT_LAST, dag_id=workflow, dag_ids=reviewer.dags)
        return self._page(  # type: ignore[attr-defined]
            "insights.html",
            reviewer=reviewer,
            found=found,
            days=days,
            windows=WINDOWS,
            workflow=workflow or "",
            dag_ids=readable_workflows(store, reviewer),
            outcomes=series,
            decisions_chart=charts.stacked_bars("Decisions per day by outcome", found.days, found.by_day, series),
            time_chart=charts.lines(
                "Time to decision per day (median and p90)",
                found.days,
                [
                    ("median", "median", [m for _, m, _ in found.trend]),
                    ("p90", "p90", [p for _, _, p in found.trend]),
                ],
                charts.duration,
            ),
            duration=charts.duration,
            policies=policies,
            policy_last=DEFAULT_LAST,
        )
