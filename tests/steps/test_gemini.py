"""aiAction's Gemini backend against a local server speaking Vertex AI's generateContent and OAuth token protocol.

The google provider's GenAIGenerativeModelHook runs unchanged: a service-account connection whose
token_uri is the local server, and google-genai's GOOGLE_VERTEX_BASE_URL pointing at it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from helpers import LoopbackServer, json_reply
from hitl.steps import ai_action

DRAFT = {"from": "sam@acme.example", "to": "owner@shop.example", "subject": "Hello Rosie", "body": "Hi!"}


class FakeGoogle:
    """Google's OAuth token endpoint and Vertex ``generateContent``, on loopback."""

    def __init__(self) -> None:
        self.answer = json.dumps(DRAFT)
        self.server = LoopbackServer(self._answer)
        self.url = self.server.url

    @property
    def requests(self) -> list[tuple[str, dict[str, Any], str]]:
        return [(path, headers, raw.decode()) for _m, path, headers, raw in self.server.calls]

    def _answer(self, method: str, path: str, headers: dict[str, str], raw: bytes) -> tuple[int, dict[str, str], bytes]:
        if path == "/token":
            return json_reply({"access_token": "fake-access-token", "expires_in": 3600, "token_type": "Bearer"})
        if path.endswith(":generateContent"):
            if headers.get("Authorization") != "Bearer fake-access-token":
                return 401, {}, b""
            parts = [{"text": self.answer}]
            return json_reply({"candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": "STOP"}]})
        return 404, {}, b""


@pytest.fixture
def google(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeGoogle]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    fake = FakeGoogle()
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    keyfile = {
        "type": "service_account",
        "project_id": "test-project",
        "private_key_id": "k1",
        "private_key": pem.decode(),
        "client_email": "hitl-test@test-project.iam.gserviceaccount.com",
        "client_id": "1",
        "token_uri": f"{fake.url}/token",
    }
    conn = {
        "conn_type": "google_cloud_platform",
        "extra": {"keyfile_dict": json.dumps(keyfile), "project": "test-project"},
    }
    monkeypatch.setenv("AIRFLOW_CONN_GOOGLE_TEST", json.dumps(conn))
    monkeypatch.setenv("GOOGLE_VERTEX_BASE_URL", f"{fake.url}/")
    yield fake
    fake.server.close()


def config(**overrides: Any) -> dict[str, Any]:
    base = {
        "backend": "gemini",
        "output": "email",
        "prompt": "Write to Rosie's Bakery about faster checkout.",
        "model": "gemini-2.5-flash",
        "connId": "google_test",
        "project": "test-project",
        "location": "us-central1",
    }
    return {**base, **overrides}


def test_gemini_drafts_an_email_through_the_providers_hook(google: FakeGoogle) -> None:
    assert ai_action.run(config()) == DRAFT
    paths = [p for p, _, _ in google.requests]
    assert paths[0] == "/token"  # the service account got a token from "Google"
    call = next((p, b) for p, _, b in google.requests if p.endswith(":generateContent"))
    assert "projects/test-project/locations/us-central1/publishers/google/models/gemini-2.5-flash" in call[0]
    sent = json.loads(call[1])
    prompt = sent["contents"][0]["parts"][0]["text"]
    assert prompt.startswith("Write to Rosie's Bakery") and "exactly the keys from, to, subject, body" in prompt


def test_gemini_text_and_a_bad_answer(google: FakeGoogle) -> None:
    google.answer = "A short note."
    assert ai_action.run(config(output="text")) == {"text": "A short note."}
    google.answer = '{"subject": "only"}'
    with pytest.raises(ValueError, match="lacks from, to, body"):
        ai_action.run(config())
    google.answer = "Sure! Here's an email..."
    with pytest.raises(ValueError, match="did not answer with JSON"):
        ai_action.run(config())
