"""Who is asking: the current user from Airflow's auth manager (any auth manager), as a Reviewer."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections.abc import Coroutine
from typing import Any, Literal

from flask import request

from hitl.identity import Reviewer, reviewer_from_user

log = logging.getLogger(__name__)
RESOURCE = "Approvals"  # FAB permission resource: "can read on Approvals", "can edit on Approvals"


def _run(coro: Coroutine[Any, Any, Any]) -> Any:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:  # a loop runs here already: use a fresh thread
        return pool.submit(asyncio.run, coro).result()


def current_user(*, bearer_only: bool = False) -> Any | None:
    """The user of the ``_token`` cookie (set by Airflow's login) or an ``Authorization: Bearer`` header.

    ``bearer_only`` is for the JSON API, which is exempt from CSRF: there a browser's cookie must not count.
    """
    from airflow.api_fastapi.app import get_auth_manager

    header = request.headers.get("Authorization", "")
    bearer = header[7:] if header.lower().startswith("bearer ") else None
    token = bearer if bearer_only else (request.cookies.get("_token") or bearer)
    if not token:
        return None
    try:
        return _run(get_auth_manager().get_user_from_token(token))
    except Exception as exc:
        log.info("hitl: rejected token: %s", type(exc).__name__)
        return None


def is_fab_auth_manager() -> bool:
    from airflow.api_fastapi.app import get_auth_manager

    return type(get_auth_manager()).__name__ == "FabAuthManager"


def authorized(user: Any, method: Literal["GET", "PUT"]) -> bool:
    """FAB roles: read needs "can read on Approvals", deciding "can edit on Approvals".

    SimpleAuthManager ignores the method for custom views, so there any logged-in user
    reads, and who decides is left to the approver rules alone.
    """
    from airflow.api_fastapi.app import get_auth_manager

    if not is_fab_auth_manager():
        return True
    try:
        return bool(get_auth_manager().is_authorized_custom_view(method=method, resource_name=RESOURCE, user=user))
    except Exception:  # pragma: no cover - an auth manager without custom views
        return False


def as_reviewer(user: Any) -> Reviewer:
    reviewer = reviewer_from_user(user)
    if is_fab_auth_manager() and not authorized(user, "PUT"):
        return Reviewer(reviewer.name, reviewer.email, frozenset({"viewer"}))  # read-only by FAB permission
    return reviewer
