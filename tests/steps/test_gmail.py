"""transport: gmail against a local server speaking Google's OAuth token endpoint and Gmail users.messages.send.

Both credential kinds the google provider's connection holds: a Workspace service account with domain-wide
delegation (a JWT bearer grant whose subject is the sender) and a connected user's refresh token.
"""

from __future__ import annotations

import base64
import email
import json
from email import policy
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qs

import pytest

from helpers import LoopbackServer, json_reply
from hitl.steps import email as email_step
from hitl.store import Store, _store_for

MESSAGE = {
    "from": "Sam <sam@acme.example>",
    "to": "owner@shop.example, Rosie <rosie@shop.example>",
    "subject": "A quicker checkout",
    "body": "Hello\nthere",
    "transport": "gmail",
    "connId": "gmail_test",
}


class FakeGmail:
    def __init__(self) -> None:
        self.grants: list[dict[str, list[str]]] = []
        self.sent: list[dict[str, Any]] = []
        # the next send's fate: "ok", "lost_reply" (Gmail sends it, the answer is a 503), "down" (503, not sent)
        self.next_send = "ok"
        self.server = LoopbackServer(self._answer)
        self.url = self.server.url

    def _answer(self, method: str, path: str, headers: dict[str, str], raw: bytes) -> tuple[int, dict[str, str], bytes]:
        if path == "/token":
            form = parse_qs(raw.decode())
            self.grants.append(form)
            return json_reply({"access_token": "gmail-access-token", "expires_in": 3600, "token_type": "Bearer"})
        if path.startswith("/gmail/v1/users/me/messages/send"):
            if headers.get("authorization", headers.get("Authorization")) != "Bearer gmail-access-token":
                return json_reply({"error": {"code": 401}}, 401)
            fate, self.next_send = self.next_send, "ok"
            if fate == "down":
                return json_reply({"error": {"code": 503, "message": "Backend Error"}}, 503)
            self.sent.append(json.loads(raw))
            if fate == "lost_reply":
                return json_reply({"error": {"code": 503, "message": "Backend Error"}}, 503)
            return json_reply({"id": f"18f{len(self.sent):05d}", "threadId": "t1", "labelIds": ["SENT"]})
        if path.startswith("/gmail/v1/users/me/messages?"):
            query = parse_qs(path.split("?", 1)[1])["q"][0].removeprefix("rfc822msgid:")
            found = [
                {"id": f"18f{i + 1:05d}", "threadId": "t1"}
                for i, m in enumerate(self.sent)
                if email.message_from_bytes(base64.urlsafe_b64decode(m["raw"]), policy=policy.default)["Message-ID"]
                == query
            ]
            return json_reply(
                {"messages": found, "resultSizeEstimate": len(found)} if found else {"resultSizeEstimate": 0}
            )
        return 404, {}, b""


@pytest.fixture
def gmail() -> Any:
    fake = FakeGmail()
    yield fake
    fake.server.close()


@pytest.fixture
def ctx(sqlite_store: Store, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.setenv("AIRFLOW__HITL__STORE_URL", sqlite_store.url)
    _store_for.cache_clear()
    return {"ti": SimpleNamespace(dag_id="outreach", run_id="manual__1", task_id="send_email", map_index=-1)}


def service_account(url: str) -> dict[str, Any]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    keyfile = {
        "type": "service_account",
        "project_id": "p",
        "private_key_id": "k1",
        "private_key": pem.decode(),
        "client_email": "mailer@p.iam.gserviceaccount.com",
        "client_id": "1",
        "token_uri": f"{url}/token",
    }
    return {"conn_type": "google_cloud_platform", "extra": {"keyfile_dict": json.dumps(keyfile), "gmail_api_url": url}}


def refresh_token(url: str) -> dict[str, Any]:
    extra = {
        "refresh_token": "1//connected-account",
        "client_id": "cid.apps.googleusercontent.com",
        "client_secret": "shh",
        "token_uri": f"{url}/token",
        "gmail_api_url": url,
    }
    return {"conn_type": "google_cloud_platform", "extra": extra}


def jwt_claims(assertion: str) -> dict[str, Any]:
    payload = assertion.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


@pytest.mark.parametrize("kind", ["service_account", "refresh_token"])
def test_gmail_sends_the_rfc5322_message_once_per_approval(
    kind: str, gmail: FakeGmail, ctx: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    conn = service_account(gmail.url) if kind == "service_account" else refresh_token(gmail.url)
    monkeypatch.setenv("AIRFLOW_CONN_GMAIL_TEST", json.dumps(conn))
    first = email_step.run(dict(MESSAGE), ctx)
    assert first["sent"] is True and first["gmail_id"] == "18f00001"
    (grant,) = gmail.grants
    if kind == "service_account":
        assert grant["grant_type"] == ["urn:ietf:params:oauth:grant-type:jwt-bearer"]
        claims = jwt_claims(grant["assertion"][0])
        assert claims["sub"] == "sam@acme.example"  # domain-wide delegation: sending as the sender
        assert claims["scope"] == " ".join(email_step.GMAIL_SCOPES)
    else:
        assert grant["grant_type"] == ["refresh_token"] and grant["refresh_token"] == ["1//connected-account"]
    (sent,) = gmail.sent
    parsed = email.message_from_bytes(base64.urlsafe_b64decode(sent["raw"]), policy=policy.default)
    assert parsed["From"] == "Sam <sam@acme.example>"
    assert parsed["To"] == "owner@shop.example, Rosie <rosie@shop.example>"
    assert parsed["Subject"] == "A quicker checkout" and parsed["Message-ID"] == first["message_id"]
    assert parsed.get_content().strip() == "Hello\nthere"
    retry = email_step.run(dict(MESSAGE), ctx)  # the task retried after it sent: nothing more goes out
    assert retry["sent"] is False and retry["already_sent"] is True and retry["gmail_id"] == "18f00001"
    assert len(gmail.sent) == 1


@pytest.mark.parametrize("fate", ["lost_reply", "down"])
def test_a_retry_after_an_unknown_outcome_reconciles_with_the_mailbox(
    fate: str, gmail: FakeGmail, ctx: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from googleapiclient.errors import HttpError

    monkeypatch.setenv("AIRFLOW_CONN_GMAIL_TEST", json.dumps(refresh_token(gmail.url)))
    gmail.next_send = fate
    with pytest.raises(HttpError):
        email_step.run(dict(MESSAGE), ctx)
    retry = email_step.run(dict(MESSAGE), ctx)  # the task's retry: asks Gmail by Message-ID before sending
    assert len(gmail.sent) == 1  # sent exactly once either way
    sent = email.message_from_bytes(base64.urlsafe_b64decode(gmail.sent[0]["raw"]), policy=policy.default)
    assert retry["message_id"] == sent["Message-ID"] and retry["gmail_id"] == "18f00001"
    assert retry.get("reconciled", False) is (fate == "lost_reply")
    again = email_step.run(dict(MESSAGE), ctx)
    assert again["already_sent"] is True and len(gmail.sent) == 1
