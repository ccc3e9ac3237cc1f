"""webResearch against a real HTTP server on loopback."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator

import pytest

from hitl.steps import web_research

PAGE = b"""<html><head><title>Rosie's Bakery</title>
<meta name="description" content="Family bakery since 1998."></head>
<body><h1>Rosie's</h1><p>Write to <a href="mailto:owner@rosies.example">us</a> or call +1 555 014 2233.</p>
<script>var hidden = "not text";</script></body></html>"""


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/slow":
            time.sleep(2)
        if self.path == "/missing":
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.end_headers()
        self.wfile.write(PAGE if self.path != "/about" else b"<title>About</title><p>info@rosies.example</p>")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def site() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_extracts_title_description_contacts_and_text(site: str) -> None:
    out = web_research.run({"url": f"{site}/", "extraUrls": [f"{site}/about", f"{site}/missing"], "timeoutSeconds": 5})
    assert out["title"] == "Rosie's Bakery"
    assert out["description"] == "Family bakery since 1998."
    assert out["emails"] == ["owner@rosies.example", "info@rosies.example"]
    assert "+1 555 014 2233" in out["phones"]
    assert "not text" not in out["text"] and "Write to us" in out["text"]
    assert out["pages"][0]["title"] == "About"
    assert "HTTP 404" in out["pages"][1]["error"]


def test_http_error_is_clear(site: str) -> None:
    with pytest.raises(web_research.ResearchError, match=r"/missing answered HTTP 404"):
        web_research.run({"url": f"{site}/missing"})


def test_timeout_is_clear(site: str) -> None:
    with pytest.raises(web_research.ResearchError, match=r"did not answer within 0.5s"):
        web_research.run({"url": f"{site}/slow", "timeoutSeconds": 0.5})


def test_unreachable_is_clear() -> None:
    with pytest.raises(web_research.ResearchError, match=r"cannot fetch http://127.0.0.1:9/"):
        web_research.run({"url": "http://127.0.0.1:9/", "timeoutSeconds": 2})
