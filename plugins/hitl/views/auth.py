"""Who is asking: the current user from Airflow's auth manager (any auth manager), as a Reviewer."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections.abc import Coroutine
from typing import Any

from flask import request

from hitl.airflow_users import RESOURCE, authorized, reviewer_of, uses_fab
from hitl.identity import Reviewer

log = logging.getLogger(__name__)
__all__ = ["RESOURCE", "as_reviewer", "authorized", "current_user", "is_fab_auth_manager"]


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
    return uses_fab()


def as_reviewer(user: Any) -> Reviewer:
    """The logged-in user as a reviewer, asked of Airflow's auth manager (``hitl.airflow_users``): which of the
    store's workflows they may read is asked once per call."""
    from hitl.views.limits import open_store

    return reviewer_of(user, open_store().dag_ids())
