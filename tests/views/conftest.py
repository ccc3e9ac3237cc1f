"""The review UI inside the FAB provider's real Flask app, with SimpleAuthManager users and CSRF on."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

USERS = {"admin": "admin", "alice": "user", "bob": "user", "vic": "viewer", "carol": "op"}
os.environ.setdefault("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", ",".join(f"{u}:{r}" for u, r in USERS.items()))
os.environ.setdefault(
    "AIRFLOW__CORE__AUTH_MANAGER", "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
)
os.environ.setdefault("AIRFLOW__API_AUTH__JWT_SECRET", "test-jwt-secret-not-for-production-0123456789")
os.environ.setdefault("AIRFLOW__API__SECRET_KEY", "test-flask-secret")


@pytest.fixture(scope="session")
def flask_app(airflow_db: Path) -> Any:
    from airflow.api_fastapi.app import create_auth_manager
    from airflow.providers.fab.www.app import create_app

    create_auth_manager().init()
    app = create_app(enable_plugins=True)
    app.config["TESTING"] = True
    return app


@pytest.fixture
def ui_store(monkeypatch: pytest.MonkeyPatch, sqlite_store: Any) -> Iterator[Any]:
    from hitl.store import _store_for

    monkeypatch.setenv("AIRFLOW__HITL__STORE_URL", sqlite_store.url)
    _store_for.cache_clear()
    yield sqlite_store
    _store_for.cache_clear()


class Browser:
    """A test client logged in as one user, with Airflow's ``_token`` cookie."""

    def __init__(self, app: Any, user: str | None) -> None:
        self.client = app.test_client()
        if user is not None:
            from airflow.api_fastapi.app import get_auth_manager
            from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

            token = get_auth_manager().generate_jwt(SimpleAuthManagerUser(username=user, role=USERS[user]))
            self.client.set_cookie("_token", token)

    def get(self, path: str, **kw: Any) -> Any:
        return self.client.get(f"/hitl{path}", **kw)

    def csrf(self, path: str) -> str:
        page = self.get(path).get_data(as_text=True)
        match = re.search(r'name="csrf_token" value="([^"]+)"', page)
        assert match, page[:500]
        return match.group(1)

    def post(self, path: str, data: dict[str, Any], csrf_from: str | None = None, **kw: Any) -> Any:
        if csrf_from is not None:
            data = {**data, "csrf_token": self.csrf(csrf_from)}
        return self.client.post(f"/hitl{path}", data=data, **kw)


@pytest.fixture
def as_user(flask_app: Any, ui_store: Any) -> Any:
    return lambda user: Browser(flask_app, user)
