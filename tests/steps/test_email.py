"""The email step: outbox .eml files, SMTP against a real server on loopback (aiosmtpd), at most once."""

from __future__ import annotations

import email
from email import policy
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from helpers import dead_smtp_connection
from hitl.steps import email as email_step
from hitl.store import Store, _store_for

MESSAGE = {
    "from": "Sam <sam@acme.example>",
    "to": "owner@shop.example",
    "subject": "Edited subject",
    "body": "Hello\nthere",
}


@pytest.fixture
def ctx(sqlite_store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.setenv("AIRFLOW__HITL__STORE_URL", sqlite_store.url)
    monkeypatch.setenv("AIRFLOW__HITL__OUTBOX_DIR", str(tmp_path / "outbox"))
    _store_for.cache_clear()
    ti = SimpleNamespace(dag_id="outreach", run_id="manual__1", task_id="send_email", map_index=-1)
    return {"ti": ti}


def test_outbox_writes_one_rfc5322_file_and_a_retry_sends_nothing(ctx: dict[str, Any], tmp_path: Path) -> None:
    first = email_step.run({**MESSAGE, "transport": "outbox"}, ctx)
    assert first["sent"] is True
    files = list((tmp_path / "outbox").glob("*.eml"))
    assert len(files) == 1
    parsed = email.message_from_bytes(files[0].read_bytes(), policy=policy.default)
    assert parsed["Subject"] == "Edited subject" and parsed["To"] == "owner@shop.example"
    assert parsed.get_content().strip() == "Hello\nthere"
    retry = email_step.run({**MESSAGE, "transport": "outbox"}, ctx)
    assert retry["sent"] is False and retry["already_sent"] is True
    assert retry["message_id"] == first["message_id"]
    assert len(list((tmp_path / "outbox").glob("*.eml"))) == 1


def test_smtp_sends_through_the_providers_hook_once(ctx: dict[str, Any], smtp_server: Any) -> None:
    out = email_step.run({**MESSAGE, "transport": "smtp", "connId": "smtp_test"}, ctx)
    assert out["sent"] is True
    assert len(smtp_server.messages) == 1
    msg = smtp_server.messages[0]
    assert msg["Subject"] == "Edited subject" and msg["To"] == "owner@shop.example"
    email_step.run({**MESSAGE, "transport": "smtp", "connId": "smtp_test"}, ctx)
    assert len(smtp_server.messages) == 1


def test_failed_send_can_be_retried(ctx: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEAD", dead_smtp_connection())
    with pytest.raises(OSError):
        email_step.run({**MESSAGE, "transport": "smtp", "connId": "smtp_dead"}, ctx)
    # Nothing went out, so the claim was released: the next try sends.
    out = email_step.run({**MESSAGE, "transport": "outbox"}, ctx)
    assert out["sent"] is True
