"""Hostile input to the steps and to edits: header injection, odd types and sizes, and URLs aimed inside.

Everyone who may trigger a run chooses webResearch's URL, and every approver may edit an email: none of it may
reach past what the step is for. No test here sends a packet beyond loopback (a guard on socket.connect fails
the test if anything tries).
"""

from __future__ import annotations

import http.server
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from hitl.outputs import field_errors, sendable_errors
from hitl.steps import email as email_step
from hitl.steps import web_research

EMAIL = {"from": "Sam <sam@acme.example>", "to": "owner@shop.example", "subject": "Hello", "body": "Hi there"}


def nested(levels: int) -> Any:
    value: Any = "x"
    for _ in range(levels):
        value = {"k": value}
    return value


# --- edits (and unedited outputs) that must not be approved as they are -----------------------------

HOSTILE_EDITS = [
    pytest.param("email", {"to": "x@y.com\r\nBcc: evil@z.com"}, "to", id="to-crlf-bcc-injection"),
    pytest.param("email", {"to": "x@y.com\nBcc: evil@z.com"}, "to", id="to-lf-bcc-injection"),
    pytest.param("email", {"from": "Sam <sam@acme.example>\r\nBcc: evil@z.com"}, "from", id="from-injection"),
    pytest.param("email", {"cc": ["ok@y.com", "x@y.com\r\nBcc: evil@z.com"]}, "cc", id="cc-list-injection"),
    pytest.param("email", {"bcc": "x@y.com\rTo: evil@z.com"}, "bcc", id="bcc-cr-injection"),
    pytest.param("email", {"reply_to": "x@y.com\x00evil@z.com"}, "reply_to", id="reply-to-nul"),
    pytest.param("email", {"subject": "Hi\r\nBcc: evil@z.com"}, "subject", id="subject-crlf-injection"),
    pytest.param("email", {"subject": "Hi\u2028Bcc: evil@z.com"}, "subject", id="subject-unicode-line-separator"),
    pytest.param("email", {"subject": "Hi\x00"}, "subject", id="subject-nul"),
    pytest.param("email", {"subject": 12345}, "subject", id="subject-not-a-string"),
    pytest.param("email", {"subject": {"$ne": ""}}, "subject", id="subject-object"),
    pytest.param("email", {"subject": "s" * 5000}, "subject", id="subject-too-long"),
    pytest.param("email", {"body": "Hello\x00world"}, "body", id="body-nul"),
    pytest.param("email", {"body": ["Hello"]}, "body", id="body-list"),
    pytest.param("email", {"body": "b" * 2_000_000}, "body", id="body-2mb"),
    pytest.param("email", {"to": "['a@x.com', 'b@x.com']"}, "to", id="to-python-list-repr"),
    pytest.param("email", {"to": ["a@x.com", ["b@x.com"]]}, "to", id="to-nested-list"),
    pytest.param("email", {"to": {"address": "a@x.com"}}, "to", id="to-object"),
    pytest.param("email", {"to": [f"r{i}@x.com" for i in range(10_000)]}, "to", id="to-10k-recipients"),
    pytest.param("email", {"to": ", ".join(f"r{i}@x.com" for i in range(10_000))}, "to", id="to-10k-in-one-string"),
    pytest.param(
        "email",
        {"cc": [f"c{i}@x.com" for i in range(80)], "to": [f"t{i}@x.com" for i in range(30)]},
        "to",
        id="to-plus-cc-over-100",
    ),
    pytest.param("email", {"from": ["a@x.com", "b@x.com"]}, "from", id="from-two-senders"),
    pytest.param("email", {"to": "undisclosed-recipients:;"}, "to", id="to-empty-group"),
    pytest.param("email", {"x_headers": {"X-Mailer": "evil"}}, "output", id="email-unknown-key"),
    pytest.param("email", {"to": nested(100)}, "output", id="email-nested-100"),
    pytest.param("email", {"subject": "\udc80"}, "subject", id="subject-lone-surrogate"),
    pytest.param("text", {"text": "ok", "html": "<script>"}, "output", id="text-unknown-key"),
    pytest.param("text", {"text": nested(100)}, "output", id="text-nested-100"),
    pytest.param("text", {"text": 42}, "text", id="text-not-a-string"),
    pytest.param("text", {"text": ["a", "b"]}, "text", id="text-list"),
    pytest.param("text", {"text": "t" * 1_000_001}, "text", id="text-over-1mb"),
]


@pytest.mark.parametrize(("kind", "change", "field"), HOSTILE_EDITS)
def test_hostile_edit_is_refused_by_field(kind: str, change: dict[str, Any], field: str) -> None:
    base = EMAIL if kind == "email" else {"text": "Hello"}
    edited = {**base, **change}
    errors = field_errors(kind, edited)
    assert field in errors, errors
    # ... and the same output, unedited, cannot be approved either
    assert sendable_errors(kind, edited) == errors


@pytest.mark.parametrize(
    "edited",
    [
        pytest.param("not an object", id="string"),
        pytest.param(["from", "to"], id="list"),
        pytest.param(None, id="null"),
        pytest.param(nested(10_000), id="nested-10000"),
    ],
)
def test_hostile_edit_shapes(edited: Any) -> None:
    assert "output" in field_errors("email", edited)
    assert "output" in field_errors("text", edited)


@pytest.fixture
def email_ctx(sqlite_store: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    from hitl.store import _store_for

    monkeypatch.setenv("AIRFLOW__HITL__STORE_URL", sqlite_store.url)
    monkeypatch.setenv("AIRFLOW__HITL__OUTBOX_DIR", str(tmp_path / "outbox"))
    _store_for.cache_clear()
    return {"ti": SimpleNamespace(dag_id="outreach", run_id="manual__1", task_id="send_email", map_index=-1)}


@pytest.mark.parametrize(
    "change",
    [pytest.param(p.values[1], id=p.id) for p in HOSTILE_EDITS if p.values[0] == "email" and p.values[2] != "output"],
)
def test_email_step_refuses_to_send_what_an_edit_may_not_be(
    email_ctx: dict[str, Any], tmp_path: Path, change: dict[str, Any]
) -> None:
    """The email step checks too, whatever reached it (a spec, a template, a decision service that forgot)."""
    with pytest.raises(ValueError, match="will not send"):
        email_step.run({**EMAIL, **change, "transport": "outbox"}, email_ctx)
    assert not list((tmp_path / "outbox").glob("*.eml"))


# --- URLs aimed at this machine, the network behind it, or the cloud's metadata ---------------------


@pytest.fixture(autouse=True)
def only_loopback_traffic(loopback_only: None) -> None:
    """Every test here: no connection past this machine (tests/conftest.py: loopback_only)."""


class Recorder:
    """A loopback HTTP server that counts requests; /redirect?to=URL answers 302."""

    def __init__(self) -> None:
        self.hits: list[str] = []
        recorder = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                recorder.hits.append(self.path)
                query = parse_qs(urlsplit(self.path).query)
                if "to" in query:
                    self.send_response(302)
                    self.send_header("Location", query["to"][0])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = b"<title>internal secret</title>"
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()


@pytest.fixture
def internal() -> Iterator[Recorder]:
    """A service on loopback that must stay unreachable."""
    r = Recorder()
    yield r
    r.server.shutdown()
    r.server.server_close()


@pytest.fixture
def allowed() -> Iterator[Recorder]:
    """A site the operator allowed (by address and port), which redirects wherever it is told."""
    r = Recorder()
    yield r
    r.server.shutdown()
    r.server.server_close()


SSRF_URLS = [
    "http://127.0.0.1:{port}/",
    "http://localhost:{port}/",
    "http://LOCALHOST:{port}/",
    "http://[::1]:{port}/",
    "http://0.0.0.0:{port}/",
    "http://0:{port}/",
    "http://127.1:{port}/",
    "http://2130706433:{port}/",  # decimal 127.0.0.1
    "http://0177.0.0.1:{port}/",  # octal
    "http://0x7f.0.0.1:{port}/",  # hex
    "http://[::ffff:127.0.0.1]:{port}/",
    "http://[::ffff:7f00:1]:{port}/",
    "http://[64:ff9b::127.0.0.1]:{port}/",
    "http://user@127.0.0.1:{port}/",
    "http://user:pass@127.0.0.1:{port}/",
    "http://allowed.example@127.0.0.1:{port}/",
    "http://10.0.0.1/",
    "http://10.255.255.254:8080/",
    "http://172.16.0.1/",
    "http://172.31.255.1/",
    "http://192.168.0.1/",
    "http://192.168.1.254:8443/",
    "http://100.64.0.1/",
    "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
    "https://169.254.169.254/",
    "http://169.254.170.2/v2/credentials",
    "http://[fd00:ec2::254]/latest/meta-data/",
    "http://[::ffff:169.254.169.254]/",
    "http://[::ffff:a9fe:a9fe]/",
    "http://100.100.100.200/latest/meta-data/",
    "http://[fe80::1]/",
    "http://[fc00::1]/",
    "http://224.0.0.1/",
    "http://[::]/",
    "gopher://127.0.0.1:{port}/_GET%20/",
    "file:///etc/passwd",
    "file://localhost/etc/passwd",
    "ftp://127.0.0.1/",
    "dict://127.0.0.1:11211/stats",
    "ldap://127.0.0.1/",
    "jar:http://127.0.0.1/x.jar!/",
    "http:///etc/passwd",
    "//127.0.0.1:{port}/",
]


@pytest.mark.parametrize("template", SSRF_URLS)
def test_ssrf_url_is_refused_without_a_request(
    template: str, internal: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW__HITL__WEB_RESEARCH_ALLOW", "")
    url = template.format(port=internal.port)
    with pytest.raises(web_research.Refused, match="refusing"):
        web_research.run({"url": url, "timeoutSeconds": 2})
    assert internal.hits == []


REDIRECT_TARGETS = [
    "http://127.0.0.1:{port}/",
    "http://localhost:{port}/",
    "http://[::1]:{port}/",
    "http://0.0.0.0:{port}/",
    "http://2130706433:{port}/",
    "http://0177.0.0.1:{port}/",
    "http://[::ffff:127.0.0.1]:{port}/",
    "http://user@127.0.0.1:{port}/",
    "http://10.0.0.1/",
    "http://172.16.0.1/",
    "http://192.168.0.1/",
    "http://169.254.169.254/latest/meta-data/",
    "http://[fd00:ec2::254]/",
    "gopher://127.0.0.1:{port}/",
    "file:///etc/passwd",
    "/?to=http://127.0.0.1:{port}/",  # a relative hop on the allowed site, then a second hop inside
]


@pytest.mark.parametrize("template", REDIRECT_TARGETS)
def test_redirect_from_an_allowed_site_to_inside_is_refused(
    template: str, allowed: Recorder, internal: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW__HITL__WEB_RESEARCH_ALLOW", f"127.0.0.1:{allowed.port}")
    target = template.format(port=internal.port)
    url = f"http://127.0.0.1:{allowed.port}/?to={target}"
    with pytest.raises(web_research.Refused, match="refusing"):
        web_research.run({"url": url, "timeoutSeconds": 2})
    assert internal.hits == []
    assert allowed.hits  # the allowed site was asked; the hop inside was not taken


def test_allowed_site_itself_is_read(allowed: Recorder, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__HITL__WEB_RESEARCH_ALLOW", f"127.0.0.1:{allowed.port}")
    assert web_research.run({"url": f"http://127.0.0.1:{allowed.port}/"})["title"] == "internal secret"


def test_a_name_that_resolves_to_loopback_is_refused_after_one_lookup(
    internal: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check is on the address a name resolves to, made once per connection, inside the connection."""
    monkeypatch.setenv("AIRFLOW__HITL__WEB_RESEARCH_ALLOW", "")
    calls: list[str] = []
    real = socket.getaddrinfo

    def getaddrinfo(host: str, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host != "innocent.example":
            return real(host, port, *args, **kwargs)
        calls.append(host)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", int(port)))]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    with pytest.raises(web_research.Refused, match=r"innocent.example \(127.0.0.1\) is a loopback address"):
        web_research.run({"url": f"http://innocent.example:{internal.port}/"})
    assert calls == ["innocent.example"] and internal.hits == []
