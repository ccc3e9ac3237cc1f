"""What every route of the plugin shares: the login guard, the store, error answers, headers, the body limit.

Errors are answered in the caller's language: JSON ``{"detail", "code"}`` under ``/api/`` and
for the badge, Slack's ephemeral message under ``/slack/``, a small page elsewhere. Bad input is
a 4xx; a decision store that cannot be reached is a 503 ("the decision store is unavailable");
anything else is logged and answered 500 in the same form, never as Airflow's HTML error page.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, Literal
from urllib.parse import urlencode

from flask import Blueprint, Response, jsonify, redirect, render_template, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound, RequestEntityTooLarge, default_exceptions

from hitl.decisions import (
    AlreadyDecided,
    DecisionError,
    GateGone,
    InvalidEdit,
    NotAllowed,
    RerunRefused,
    StaleOutput,
)
from hitl.decisions import NotFound as RequestNotFound
from hitl.identity import Reviewer
from hitl.views.auth import as_reviewer, authorized, current_user
from hitl.views.limits import MAX_BODY_BYTES, BadInput, store_unavailable

log = logging.getLogger(__name__)

STORE_DOWN = "the decision store is unavailable"
STATUS_CODES: dict[type[Exception], int] = {
    RequestNotFound: 404,
    NotAllowed: 403,
    AlreadyDecided: 409,
    StaleOutput: 409,
    GateGone: 409,  # the gate is not deferred on this request any more: nothing to send back
    InvalidEdit: 400,
    RerunRefused: 503,  # Airflow's database cannot be used from here now: nothing was written, try again
}
RETRY_AFTER = {"Retry-After": "30"}
SECURITY_HEADERS = {
    # Airflow's own UI embeds the pages (same origin); nobody else may frame them.
    "X-Frame-Options": "SAMEORIGIN",
    "Content-Security-Policy": "frame-ancestors 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}
Kind = Literal["page", "api", "badge"]


def decision_status(exc: DecisionError) -> int:
    return next((STATUS_CODES[c] for c in type(exc).__mro__ if c in STATUS_CODES), 400)


def decision_headers(exc: DecisionError) -> dict[str, str]:
    """The headers of a refused decision's answer: ``Retry-After`` when it is a 503 (worth trying again)."""
    return dict(RETRY_AFTER) if decision_status(exc) == 503 else {}


# -- answers ----------------------------------------------------------------------------
def _channel() -> str:
    path = request.path
    prefix = _PREFIX[0]
    rest = path[len(prefix) :] if path.startswith(prefix) else path
    if rest == "/api" or rest.startswith("/api/"):
        return "api"
    if rest.startswith("/slack/"):
        return "slack"
    if rest == "/badge":
        return "badge"
    return "page"


def error_response(status: int, message: str, code: str | None = None, headers: dict[str, str] | None = None) -> Any:
    """An error in the caller's form (see the module doc)."""
    code = code or {404: "not_found", 405: "method_not_allowed", 413: "too_large", 503: "store_unavailable"}.get(
        status, "bad_request" if status < 500 else "internal"
    )
    channel = _channel()
    if channel in ("api", "badge"):
        resp = jsonify({"detail": message, "code": code})
    elif channel == "slack":
        from hitl.notify.slack import escape

        resp = jsonify({"response_type": "ephemeral", "text": escape(message)})
    else:
        try:
            body = render_template("hitl/error.html", status=status, message=message, reviewer=None)
        except Exception:  # the page itself failed: still say what happened
            log.exception("hitl: could not render the error page")
            body = f"{status}: {message}"
        resp = Response(body, mimetype="text/html")
    resp.status_code = status
    for name, value in (headers or {}).items():
        resp.headers[name] = value
    return resp


def _http_error(exc: HTTPException) -> Any:
    if exc.response is not None:  # abort(Response(...)): already an answer
        return exc.response
    status = exc.code or 500
    if isinstance(exc, RequestEntityTooLarge):
        return error_response(413, f"the request is too large (at most {MAX_BODY_BYTES} bytes)", "too_large")
    if isinstance(exc, MethodNotAllowed):
        allowed = ", ".join(exc.valid_methods or [])
        return error_response(405, f"{request.method} is not allowed here", headers={"Allow": allowed})
    if isinstance(exc, NotFound):
        return error_response(404, "no such page" if _channel() == "page" else "no such resource")
    return error_response(status, exc.description or exc.name)


def _schema_problem(exc: Exception) -> str | None:
    from hitl.store import get_store
    from hitl.store.migrate import schema_problem

    try:
        return schema_problem(exc, get_store())
    except Exception:  # the configured store cannot even be opened: it is unavailable
        return None


def handle_error(exc: Exception) -> Any:
    """The blueprint's error handler: every exception a route (or a hook before it) raises."""
    if isinstance(exc, HTTPException):
        return _http_error(exc)
    if isinstance(exc, BadInput):
        return error_response(exc.status, str(exc), exc.code)
    if store_unavailable(exc):
        behind = _schema_problem(exc)
        if behind is not None:  # reachable, but not migrated for this release: say so, not "unavailable"
            log.warning("hitl: %s", behind)
            return error_response(503, behind, "store_schema", headers=RETRY_AFTER)
        log.warning("hitl: %s: %s", STORE_DOWN, str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        return error_response(503, STORE_DOWN, "store_unavailable", headers=RETRY_AFTER)
    if isinstance(exc, DecisionError):
        return error_response(decision_status(exc), str(exc), exc.code, decision_headers(exc))
    log.exception("hitl: unexpected error on %s %s", request.method, request.path)
    return error_response(500, "internal error (logged on the server)", "internal")


# -- the login guard --------------------------------------------------------------------
def signed_in(kind: Kind) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Let only a logged-in user with read access in; the route gets their ``Reviewer`` first.

    ``page``: Airflow's ``_token`` cookie (or a Bearer token); not logged in -> the login page.
    ``api``: a Bearer token only (the API is exempt from CSRF: a browser's cookie must not count).
    ``badge``: like ``page``, but answers 401 JSON instead of redirecting.
    """

    def wrap(route: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(route)
        def guarded(self: Any, *args: Any, **kwargs: Any) -> Any:
            user = current_user(bearer_only=kind == "api")
            if user is None:
                if kind == "page":
                    from airflow.api_fastapi.app import get_auth_manager

                    login = get_auth_manager().get_url_login()
                    return redirect(f"{login}{'&' if '?' in login else '?'}{urlencode({'next': request.url})}")
                if kind == "api":
                    return error_response(401, "send Authorization: Bearer <token from /auth/token>", "unauthorized")
                return error_response(401, "not logged in", "unauthorized")
            if not authorized(user, "GET"):
                return error_response(403, "you may not read approvals (no read permission on Approvals)", "forbidden")
            reviewer: Reviewer = as_reviewer(user)
            _refresh_directory()
            return route(self, reviewer, *args, **kwargs)

        return guarded

    return wrap


def _refresh_directory() -> None:
    """Keep the store's user directory fresh from here (at most every ``[hitl] directory_refresh`` seconds)."""
    from hitl.airflow_users import refresh_directory_soon
    from hitl.views.limits import open_store

    refresh_directory_soon(open_store())


# -- hooks on the blueprint -------------------------------------------------------------
_PREFIX = ["/hitl"]


def _ours() -> bool:
    prefix = _PREFIX[0]
    return request.path == prefix or request.path.startswith(prefix + "/")


def install(blueprint: Blueprint) -> None:
    """Body limit, error handlers, answers for unknown routes and methods, and security headers."""
    _PREFIX[0] = (blueprint.url_prefix or "/hitl").rstrip("/")

    @blueprint.url_value_preprocessor  # runs before every before_request hook (CSRF reads the form there)
    def limit_body(endpoint: str | None, values: dict[str, Any] | None) -> None:
        request.max_content_length = MAX_BODY_BYTES
        length = request.content_length
        if length is not None and length > MAX_BODY_BYTES:
            raise BadInput(f"the request is too large ({length} bytes; at most {MAX_BODY_BYTES})", 413, "too_large")

    @blueprint.before_app_request
    def unrouted() -> Any:  # no route matched under our prefix: answer in our form, not Airflow's page
        exc = request.routing_exception
        if _ours() and isinstance(exc, NotFound | MethodNotAllowed):
            return _http_error(exc)
        return None

    @blueprint.after_app_request
    def security_headers(resp: Response) -> Response:
        if _ours():
            for name, value in SECURITY_HEADERS.items():
                resp.headers[name] = value
            resp.headers.setdefault("Cache-Control", "no-store")
        return resp

    # Code-specific handlers first: Flask prefers the app's own 404/500 pages over a class handler.
    for code in default_exceptions:
        if code >= 400:
            blueprint.register_error_handler(code, handle_error)
    blueprint.register_error_handler(Exception, handle_error)
