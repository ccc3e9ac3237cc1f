"""The demo's whole loop on this machine: the local mail sink, ports that move together, the stack's real URL for
the CLI, and the example's default prospect URL that follows HITL_DEMO_SITE_PORT."""

from __future__ import annotations

import email
import json
import smtplib
import socket
from email import policy
from pathlib import Path
from typing import Any

import pytest

from hitl_devstack import REPO, AirflowStack, log_server_ports
from hitl_devstack.mailsink import MailSink


def test_the_mail_sink_writes_each_message_as_eml_with_date_and_message_id(tmp_path: Path) -> None:
    sink = MailSink(tmp_path / "outbox")
    try:
        with smtplib.SMTP("127.0.0.1", sink.port, timeout=10) as client:
            client.sendmail(
                "approvals@hitl.local",
                ["alice@acme-pos.example"],
                b"From: approvals@hitl.local\r\nTo: alice@acme-pos.example\r\nSubject: [Approval needed] x\r\n\r\n"
                b"..a line starting with a dot\r\nReview: http://127.0.0.1:8080/pluginsv2/hitl/request/1?t=abc\r\n",
            )
    finally:
        sink.close()
    (path,) = sink.received
    assert path.parent == tmp_path / "outbox" and path.name.startswith("mail__") and path.suffix == ".eml"
    assert path.stat().st_mode & 0o077 == 0  # signed links inside: the owner's only
    msg = email.message_from_bytes(path.read_bytes(), policy=policy.default)
    assert msg["Subject"] == "[Approval needed] x" and msg["To"] == "alice@acme-pos.example"
    assert msg["Date"] and msg["Message-ID"].endswith("@hitl.local>")
    body = msg.get_content()
    assert ".a line starting with a dot" in body and "/pluginsv2/hitl/request/1?t=abc" in body


def test_the_sink_is_an_smtp_connection_airflows_provider_can_use(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sink = MailSink(tmp_path / "outbox")
    try:
        uri = json.loads(sink.connection_uri())
        assert uri["host"] == "127.0.0.1" and uri["port"] == sink.port
        monkeypatch.setenv("AIRFLOW_CONN_SMTP_SINK", sink.connection_uri())
        from airflow.providers.smtp.hooks.smtp import SmtpHook

        with SmtpHook(smtp_conn_id="smtp_sink") as hook:
            hook.send_email_smtp(
                to=["alice@acme-pos.example"],
                subject="hello",
                html_content="<p>hi</p>",
                from_email="approvals@hitl.local",
                custom_headers={"Message-ID": "<fixed@hitl.local>"},
            )
    finally:
        sink.close()
    (path,) = sink.received
    msg = email.message_from_bytes(path.read_bytes(), policy=policy.default)
    assert msg["Message-ID"] == "<fixed@hitl.local>" and msg["Date"]  # the sender's own headers are kept


def test_log_server_ports_move_with_the_stack_port(monkeypatch: pytest.MonkeyPatch) -> None:
    import hitl_devstack

    monkeypatch.setattr(hitl_devstack, "port_free", lambda port: 0 < port < 65536)  # whatever this host runs
    assert log_server_ports(20000) == (20713, 20714)
    a = AirflowStack(home=Path("/nonexistent"), port=20000)
    assert (a.worker_log_port, a.trigger_log_port) == (20713, 20714)
    # past 65535: two other free ports, never Airflow's fixed 8793/8794
    worker, trigger = log_server_ports(65000)
    assert worker != trigger and not {worker, trigger} & {8793, 8794, 65713, 65714}


def test_taken_log_server_ports_are_replaced_by_two_free_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    import hitl_devstack

    taken = {20713}
    monkeypatch.setattr(hitl_devstack, "port_free", lambda port: 0 < port < 65536 and port not in taken)
    worker, trigger = log_server_ports(20000)
    assert worker != trigger and 20713 not in (worker, trigger)


def test_the_stack_env_carries_the_log_server_ports(tmp_path: Path) -> None:
    env = AirflowStack(home=tmp_path / "h", port=21000).env()
    assert env["AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT"] == "21713"
    assert env["AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT"] == "21714"


@pytest.mark.parametrize(
    "cfg",
    [
        None,  # no airflow.cfg yet
        "[core]\ndags_folder = /x\n\n[api]\n# base_url =\nport = 8080\n\n[logging]\nx = 1\n",  # Airflow's generated one
        "[api]\nbase_url = http://localhost:8080\n",  # an older demo's
    ],
)
def test_the_cli_reads_the_stacks_real_url_from_its_home(tmp_path: Path, cfg: str | None) -> None:
    home = tmp_path / "h"
    home.mkdir()
    if cfg is not None:
        (home / "airflow.cfg").write_text(cfg)
    stack = AirflowStack(home=home, port=9191)
    stack.write_cli_settings()
    import configparser

    parser = configparser.ConfigParser(interpolation=None)
    parser.read(home / "airflow.cfg")
    assert parser.get("api", "base_url") == "http://127.0.0.1:9191"
    if cfg and "dags_folder" in cfg:
        assert parser.get("core", "dags_folder") == "/x" and parser.get("logging", "x") == "1"


def test_the_examples_default_url_follows_the_demo_site(monkeypatch: pytest.MonkeyPatch) -> None:
    """A run with the default params (Airflow's Trigger button) reads the Variable the demo sets from its port."""
    from hitl.spec.loader import load_spec

    loaded = load_spec(REPO / "workflow_specs" / "local_business_outreach.yaml")
    assert loaded.ok and loaded.spec is not None
    assert loaded.spec.params["prospect_url"]["default"] == ""  # declared for the Trigger form (hitl.spec.params)
    url_template = loaded.steps[0].config["url"]
    from jinja2 import Environment

    class Var:
        def __init__(self, values: dict[str, str]) -> None:
            self.value = values

    def render(params: dict[str, Any], variables: dict[str, str]) -> str:
        return Environment().from_string(url_template).render(params=params, var=Var(variables))

    assert render({"prospect_url": ""}, {"hitl_demo_site_url": "http://127.0.0.1:9876/"}) == "http://127.0.0.1:9876/"
    assert render({"prospect_url": ""}, {}) == "http://127.0.0.1:8765/"
    assert render({"prospect_url": "https://shop.example/"}, {"hitl_demo_site_url": "x"}) == "https://shop.example/"
    demo = (REPO / "scripts" / "demo.py").read_text()
    assert "AIRFLOW_VAR_HITL_DEMO_SITE_URL" in demo and "HITL_DEMO_SITE_PORT" in demo


def test_the_approvers_notification_lands_in_the_sink_with_its_signed_links(
    configured: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What `make demo` wires: the smtp_default connection at the sink, the users' emails from [hitl] user_emails."""
    from helpers import gate
    from hitl.notify import notify_requested

    sink = MailSink(tmp_path / "outbox")
    try:
        monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", sink.connection_uri())
        monkeypatch.setenv("AIRFLOW__HITL__USER_EMAILS", "alice:alice@acme-pos.example")
        req, _ = configured.record_request(gate())
        assert notify_requested(req, store=configured)["email"] == "sent"
    finally:
        sink.close()
    (path,) = sink.received
    msg = email.message_from_bytes(path.read_bytes(), policy=policy.default)
    assert msg["To"] == "alice@acme-pos.example" and msg["Subject"].startswith("[Approval needed] outreach")
    assert msg["Date"] and msg["Message-ID"].endswith("@hitl.local>")
    html = msg.get_body(preferencelist=("html",)).get_content()  # type: ignore[union-attr]
    assert f"/pluginsv2/hitl/request/{req.id}?action=approve&amp;t=" in html


def test_the_sent_emails_eml_has_date_and_message_id() -> None:
    from hitl.steps.email import build_message

    msg = build_message({"from": "a@x.example", "to": "b@y.example", "subject": "s", "body": "b"})
    assert msg["Date"] and msg["Message-ID"].endswith("@hitl.local>")


def test_a_dot_line_split_across_reads_does_not_smuggle_a_second_message(tmp_path: Path) -> None:
    """A read stops after 65,536 bytes: a ".\\r\\n" there is mid-line, not the end of the data."""
    sink = MailSink(tmp_path / "outbox")
    try:
        with socket.create_connection(("127.0.0.1", sink.port), timeout=10) as conn:
            replies = conn.makefile("rb")
            replies.readline()
            body = (
                b"Subject: one\r\n\r\n"
                + b"A" * 65536
                + b".\r\nMAIL FROM:<x@y>\r\nRCPT TO:<victim@z>\r\nDATA\r\nSubject: smuggled\r\n\r\nhi\r\n"
            )
            conn.sendall(b"HELO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<alice@x>\r\nDATA\r\n" + body + b".\r\nQUIT\r\n")
            while replies.readline():  # until the sink hangs up after QUIT
                pass
    finally:
        sink.close()
    (path,) = sink.received
    assert "alice" in path.name and b"Subject: smuggled" in path.read_bytes()  # one message, the text inside it


def test_messages_arriving_at_once_each_get_their_own_file(tmp_path: Path) -> None:
    import threading

    from hitl_devstack.mailsink import store_message

    outbox = tmp_path / "outbox"
    paths: list[Path] = []
    threads = [
        threading.Thread(
            target=lambda i=i: paths.append(store_message(outbox, f"Subject: m{i}\r\n\r\nx".encode(), ["alice@x"]))
        )
        for i in range(20)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(paths)) == 20 and len(list(outbox.glob("*.eml"))) == 20
    subjects = {email.message_from_bytes(p.read_bytes(), policy=policy.default)["Subject"] for p in paths}
    assert subjects == {f"m{i}" for i in range(20)}
