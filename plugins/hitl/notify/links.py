"""Signed one-click links: bound to a request and an action, with an expiry (itsdangerous).

A link opens the review page with that action ready; the decision itself still needs the
reviewer to be logged in, so a forwarded email cannot decide for someone else.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from urllib.parse import urlencode

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from hitl.config import airflow_home, load_settings

# Where the review UI lives: the FAB view's path, and the route of its entry in Airflow's navigation
# (``HitlPlugin.external_views``). Airflow 3.3's shell opens ``/plugin/<route>/<path>`` with ``<path>`` in its
# frame, so a printed or mailed link opens inside Airflow's UI (its navigation, theme and login), not bare.
UI_PATH = "/pluginsv2/hitl"
SHELL_ROUTE = "approvals"
SALT = "hitl-review-link"
ACTIONS = ("review", "approve", "reject", "edit")
DEFAULT_MAX_AGE = 7 * 86400


class LinkError(Exception):
    """A tampered, expired or mismatched link; ``str()`` says which, for the page."""


def _secret() -> str:
    configured = load_settings().secret_key
    if configured:
        return configured
    path = Path(os.environ.get("HITL_LINK_SECRET_FILE") or airflow_home() / "hitl-link-secret")
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(32))
    return path.read_text().strip()


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(_secret(), salt=SALT)


def make_token(request_id: int, action: str) -> str:
    if action not in ACTIONS:
        raise ValueError(f"unknown link action {action!r}")
    return str(_serializer().dumps({"r": request_id, "a": action}))


def page_url(request_id: int) -> str:
    """The review page of a request, unsigned (the CLI, the gate's log and Review link, Required Actions)."""
    return f"{load_settings().base_url}/plugin/{SHELL_ROUTE}{UI_PATH}/request/{request_id}"


def review_url(request_id: int, action: str = "review") -> str:
    """The review page with a signed one-click action (notifications)."""
    query = urlencode({"action": action, "t": make_token(request_id, action)})
    return f"{page_url(request_id)}?{query}"


def check_token(token: str, request_id: int, action: str, max_age: int = DEFAULT_MAX_AGE) -> None:
    try:
        data = _serializer().loads(token, max_age=max_age)
    except SignatureExpired as exc:
        raise LinkError("This link has expired. Open the request from the Approvals inbox instead.") from exc
    except BadSignature as exc:
        raise LinkError("This link is not valid (it was changed or is not one of ours).") from exc
    if data.get("r") != request_id or data.get("a") != action:
        raise LinkError("This link belongs to another request or action.")
