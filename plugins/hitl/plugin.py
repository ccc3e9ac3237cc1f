"""The Airflow plugin: the review UI (FAB view at /pluginsv2/hitl/), its entry in Airflow's navigation, and the
gate task's "Review" extra link (``hitl.native.ReviewLink``; Airflow stores its URL in XCom when the gate runs)."""

from __future__ import annotations

from typing import Any

from airflow.plugins_manager import AirflowPlugin

from hitl.compat import check_airflow_version
from hitl.native import ReviewLink
from hitl.notify.links import SHELL_ROUTE, UI_PATH

# Refuse to load on an Airflow this plugin is not built for: Airflow lists the ImportError's message
# as the plugin's import error instead of failing later somewhere far from the cause.
check_airflow_version()


class _LazyViews:
    """Builds the FAB view on first use: only the api-server asks, and Flask-AppBuilder is slow to import."""

    def __get__(self, obj: Any, owner: Any) -> list[dict[str, Any]]:
        from hitl.views.approvals import ApprovalsView

        return [{"view": ApprovalsView()}]  # no FAB menu: the external_views entry is the nav


class HitlPlugin(AirflowPlugin):
    name = "hitl"
    appbuilder_views = _LazyViews()  # type: ignore[assignment]
    operator_extra_links = [ReviewLink()]
    external_views = [
        {
            "name": "Approvals",
            "href": f"{UI_PATH}/",
            "destination": "nav",
            "url_route": SHELL_ROUTE,
            "nav_top_level": True,
        }
    ]
