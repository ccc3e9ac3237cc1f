"""The review UI, its JSON API and Slack's action endpoint: one Flask-AppBuilder view at ``/pluginsv2/hitl/``.

The routes live by channel in ``html`` (pages), ``api`` (JSON for scripts) and ``slack``;
``common`` holds what they share (login guard, error answers in each channel's form, the body
limit, security headers) and ``limits`` the bounds every channel checks. Every decision goes
through ``hitl.decisions.decide``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Blueprint
from flask_appbuilder import BaseView

from hitl.views import common
from hitl.views.api import ApiRoutes, AuditApiRoutes, CommentApiRoutes, PolicyApiRoutes
from hitl.views.auth import RESOURCE
from hitl.views.changes import ChangesRoutes
from hitl.views.common import STATUS_CODES
from hitl.views.html import AGES, PAGE_SIZE, TABS, PageRoutes
from hitl.views.insights import InsightsRoutes
from hitl.views.slack import SlackRoutes

__all__ = ["AGES", "PAGE_SIZE", "STATUS_CODES", "TABS", "ApprovalsView"]


class ApprovalsView(
    PageRoutes,
    InsightsRoutes,
    ChangesRoutes,
    ApiRoutes,
    CommentApiRoutes,
    AuditApiRoutes,
    PolicyApiRoutes,
    SlackRoutes,
    BaseView,
):
    route_base = "/hitl"
    default_view = "inbox"
    template_folder = str(Path(__file__).parent / "templates")
    class_permission_name = RESOURCE
    method_permission_name = {
        "inbox": "read",
        "review": "read",
        "badge": "read",
        "insights": "read",
        "decide_one": "edit",
        "bulk": "edit",
        "slack_actions": "edit",
        "api_list": "read",
        "api_get": "read",
        "api_decide": "edit",
        "request_changes_form": "edit",
        "comment_form": "read",  # anyone who may read a request may comment on it
        "api_comments": "read",
        "api_comment": "read",
        "api_audit": "read",  # admins only, checked by the route: the trail spans every workflow
        "api_policy": "read",
    }
    base_permissions = ["can_read", "can_edit"]

    def create_blueprint(
        self, appbuilder: Any, endpoint: str | None = None, static_folder: str | None = None
    ) -> Blueprint:
        blueprint = super().create_blueprint(appbuilder, endpoint=endpoint, static_folder=static_folder)
        common.install(blueprint)
        _sync_directory_soon()  # the api-server may ask the auth manager; task code reads what it writes
        return blueprint


def _sync_directory_soon() -> None:
    try:
        from hitl.airflow_users import refresh_directory_soon
        from hitl.store import get_store

        refresh_directory_soon(get_store())
    except Exception as exc:  # the store is not reachable yet: the pages will try again
        import logging

        logging.getLogger(__name__).info("hitl: user directory not synced at start: %s", type(exc).__name__)


def _exempt_from_csrf() -> None:
    try:
        from airflow.providers.fab.www.app import csrf

        csrf.exempt(f"{SlackRoutes.__module__}.slack_actions")  # authenticated by Slack's signature
        csrf.exempt(f"{ApiRoutes.__module__}.api_decide")  # Bearer token only; cookies do not count there
        csrf.exempt(f"{CommentApiRoutes.__module__}.api_comment")  # Bearer token only, like api_decide
    except Exception:  # pragma: no cover - no FAB www app in this process
        pass


_exempt_from_csrf()
