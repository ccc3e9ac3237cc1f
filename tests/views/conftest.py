"""The review UI inside the FAB provider's real Flask app, with SimpleAuthManager users and CSRF on."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from views.client import Browser, use_store
from views.client import flask_app as _app

__all__ = ["Browser"]


@pytest.fixture(scope="session")
def flask_app(airflow_db: Path) -> Any:
    return _app()


@pytest.fixture
def ui_store(monkeypatch: pytest.MonkeyPatch, sqlite_store: Any) -> Iterator[Any]:
    from hitl.store import _store_for

    use_store(monkeypatch, sqlite_store.url)
    yield sqlite_store
    _store_for.cache_clear()


@pytest.fixture
def as_user(flask_app: Any, ui_store: Any) -> Any:
    return lambda user: Browser(flask_app, user)
