"""The FAB provider's real Flask app (once per process) and clients for it: a logged-in browser, a Bearer token, Slack.

Shared by ``tests/views`` and ``tests/hostile``; import it as ``views.client`` everywhere, so there is one app.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import os
import re
import time
from typing import Any
from urllib.parse import urlencode

USERS = {"admin": "admin", "alice": "user", "bob": "user", "vic": "viewer", "carol": "op"}
SLACK_SECRET = "slack-signing-secret"
os.environ.setdefault("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", ",".join(f"{u}:{r}" for u, r in USERS.items()))
os.environ.setdefault(
    "AIRFLOW__CORE__AUTH_MANAGER", "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
)
os.environ.setdefault("AIRFLOW__API_AUTH__JWT_SECRET", "test-jwt-secret-not-for-production-0123456789")
os.environ.setdefault("AIRFLOW__API__SECRET_KEY", "test-flask-secret")


@functools.cache
def flask_app() -> Any:
    """The app, with SimpleAuthManager users and CSRF on (call after Airflow's DB is migrated)."""
    from airflow.api_fastapi.app import create_auth_manager
    from airflow.providers.fab.www.app import create_app

    create_auth_manager().init()
    app = create_app(enable_plugins=True)
    app.config["TESTING"] = True
    return app


def use_store(monkeypatch: Any, url: str) -> None:
    """Point the process's decision store at ``url`` (undone by the monkeypatch)."""
    from hitl.store import _store_for

    monkeypatch.setenv("AIRFLOW__HITL__STORE_URL", url)
    _store_for.cache_clear()


def token(user: str) -> str:
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    return str(get_auth_manager().generate_jwt(SimpleAuthManagerUser(username=user, role=USERS[user])))


def bearer(user: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(user)}"}


class Browser:
    """A test client logged in as one user, with Airflow's ``_token`` cookie."""

    def __init__(self, app: Any, user: str | None) -> None:
        self.client = app.test_client()
        if user is not None:
            self.client.set_cookie("_token", token(user))

    def get(self, path: str, **kw: Any) -> Any:
        return self.client.get(f"/hitl{path}", **kw)

    def csrf(self, path: str = "/") -> str:
        page = self.get(path).get_data(as_text=True)
        match = re.search(r'name="csrf_token" value="([^"]+)"', page)
        assert match, page[:500]
        return match.group(1)

    def post(self, path: str, data: Any, csrf_from: str | None = None, **kw: Any) -> Any:
        if csrf_from is not None:
            data = {**data, "csrf_token": self.csrf(csrf_from)}
        return self.client.post(f"/hitl{path}", data=data, **kw)


def slack_post(
    app: Any,
    body: str | bytes,
    *,
    secret: str = SLACK_SECRET,
    age: int = 0,
    timestamp: str | None = None,
    signature: str | None = None,
) -> Any:
    """POST a raw body to the Slack action endpoint, signed as Slack signs it (unless told otherwise)."""
    raw = body.encode() if isinstance(body, str) else body
    stamp = str(int(time.time()) - age) if timestamp is None else timestamp
    if signature is None:
        mac = hmac.new(secret.encode(), b"v0:" + stamp.encode("latin-1") + b":" + raw, hashlib.sha256)
        signature = "v0=" + mac.hexdigest()
    return app.test_client().post(
        "/hitl/slack/actions",
        data=raw,
        content_type="application/x-www-form-urlencoded",
        headers={"X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": signature},
    )


def slack_payload(app: Any, payload: Any, **kw: Any) -> Any:
    """POST ``payload`` (JSON-encoded unless it is already text) as Slack's ``payload`` form field."""
    text = payload if isinstance(payload, str) else json.dumps(payload)
    return slack_post(app, urlencode({"payload": text}), **kw)


def slack_click(app: Any, user: str, action: str, request_id: Any, response_url: str | None = None, **kw: Any) -> Any:
    payload = {
        "type": "block_actions",
        "user": {"id": user},
        "trigger_id": "T-1",
        "actions": [{"action_id": action, "value": str(request_id)}],
        "response_url": response_url,
    }
    return slack_payload(app, payload, **kw)
