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
    with pytest.raises(ConnectionRefusedError):
        email_step.run({**MESSAGE, "transport": "smtp", "connId": "smtp_dead"}, ctx)
    # Nothing went out, so the claim was released: the next try sends.
    out = email_step.run({**MESSAGE, "transport": "outbox"}, ctx)
    assert out["sent"] is True


def outbox_message(tmp_path: Path) -> Any:
    (path,) = list((tmp_path / "outbox").glob("*.eml"))
    return email.message_from_bytes(path.read_bytes(), policy=policy.default)


def test_address_lists_are_written_as_addresses_not_as_a_python_list(ctx: dict[str, Any], tmp_path: Path) -> None:
    config = {
        **MESSAGE,
        "to": ["owner@shop.example", '"Smith, Jo" <jo@shop.example>'],
        "cc": ["c1@shop.example", "c2@shop.example"],
        "bcc": ["audit@acme.example"],
        "reply_to": "Desk <desk@acme.example>",
        "transport": "outbox",
    }
    email_step.run(config, ctx)
    raw = next((tmp_path / "outbox").glob("*.eml")).read_bytes()
    assert b"['" not in raw and b"']" not in raw
    parsed = outbox_message(tmp_path)
    assert [a.addr_spec for a in parsed["To"].addresses] == ["owner@shop.example", "jo@shop.example"]
    assert parsed["To"].addresses[1].display_name == "Smith, Jo"
    assert parsed["Cc"] == "c1@shop.example, c2@shop.example"
    assert parsed["Bcc"] == "audit@acme.example"
    assert parsed["Reply-To"] == "Desk <desk@acme.example>"


@pytest.mark.parametrize(
    "change",
    [
        {"to": "owner@shop.example\r\nBcc: evil@attacker.example"},
        {"cc": ["ok@shop.example", "x@y.example\nBcc: evil@attacker.example"]},
        {"subject": "Hi\r\nBcc: evil@attacker.example"},
        {"body": "nul\x00byte"},
        {"to": "['owner@shop.example']"},
        {"to": [f"r{i}@shop.example" for i in range(101)]},
    ],
)
def test_a_message_that_is_not_what_it_reads_is_not_sent(
    ctx: dict[str, Any], tmp_path: Path, change: dict[str, Any]
) -> None:
    with pytest.raises(ValueError, match="email: will not send"):
        email_step.run({**MESSAGE, **change, "transport": "outbox"}, ctx)
    assert not list((tmp_path / "outbox").glob("*.eml"))
    # Nothing was claimed: once the message is fixed, the task's next try sends it.
    assert email_step.run({**MESSAGE, "transport": "outbox"}, ctx)["sent"] is True


def test_smtp_gets_each_recipient_once_with_display_names_intact(ctx: dict[str, Any], smtp_server: Any) -> None:
    config = {
        **MESSAGE,
        "to": ['"Smith, Jo" <jo@shop.example>', "owner@shop.example"],
        "cc": "c@shop.example",
        "transport": "smtp",
        "connId": "smtp_test",
    }
    email_step.run(config, ctx)
    (msg,) = smtp_server.messages
    assert [a.addr_spec for a in msg["To"].addresses] == ["jo@shop.example", "owner@shop.example"]
    assert [a.addr_spec for a in msg["Cc"].addresses] == ["c@shop.example"]
