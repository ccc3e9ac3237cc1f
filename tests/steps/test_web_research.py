"""webResearch against a real HTTP server on loopback, and what it refuses to fetch."""

from __future__ import annotations

import gzip
import ipaddress
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from helpers import LoopbackServer
from hitl.steps import web_research
from hitl.steps.address_policy import Guard, ResearchError, parse_allow, refusal_reason

PAGE = b"""<html><head><title>Rosie's Bakery</title>
<meta name="description" content="Family bakery since 1998."></head>
<body><h1>Rosie's</h1><p>Write to <a href="mailto:owner@rosies.example">us</a> or call +1 555 014 2233.</p>
<script>var hidden = "not text";</script></body></html>"""

ALLOW = "AIRFLOW__HITL__WEB_RESEARCH_ALLOW"


class Site:
    """A loopback web site that records what it was asked."""

    def __init__(self) -> None:
        self.server = LoopbackServer(self._answer)
        self.port = self.server.port
        self.url = self.server.url

    @property
    def paths(self) -> list[str]:
        return [path for _m, path, _h, _b in self.server.calls]

    @property
    def hosts(self) -> list[str]:
        return [headers.get("Host", "") for _m, _p, headers, _b in self.server.calls]

    def _answer(
        self, method: str, raw_path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        path, query = urlsplit(raw_path).path, parse_qs(urlsplit(raw_path).query)
        if path == "/slow":
            time.sleep(2)
        if path == "/missing":
            return 404, {}, b"not found"
        if path == "/redirect":
            return 302, {"Location": query["to"][0]}, b""
        if path == "/loop":
            return 301, {"Location": "/loop"}, b""
        page, extra = PAGE, {}
        if path == "/about":
            page = b"<title>About</title><p>info@rosies.example</p>"
        elif path == "/big":
            page = b"<title>Big</title><p>" + b"x" * 5_000_000 + b"</p>"
        elif path == "/bomb":  # 50 MB of zeros in about 50 KB
            page, extra = gzip.compress(b"<title>Bomb</title>" + b"0" * 50_000_000), {"Content-Encoding": "gzip"}
        elif path == "/utf8":
            page = "<title>Café Ünïcode</title>".encode()
        return 200, {"Content-Type": "text/html", **extra}, page


@pytest.fixture(autouse=True)
def only_loopback_traffic(loopback_only: None) -> None:
    """Every test here: no connection past this machine (tests/conftest.py: loopback_only)."""


@pytest.fixture
def allow_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ALLOW, "127.0.0.1")


@pytest.fixture
def site() -> Iterator[Site]:
    s = Site()
    yield s
    s.server.close()


@pytest.fixture
def other_site() -> Iterator[Site]:
    s = Site()
    yield s
    s.server.close()


# --- what it reads, with the loopback site allowed ----------------------------------------------


@pytest.mark.usefixtures("allow_loopback")
def test_extracts_title_description_contacts_and_text(site: Site) -> None:
    out = web_research.run(
        {"url": f"{site.url}/", "extraUrls": [f"{site.url}/about", f"{site.url}/missing"], "timeoutSeconds": 5}
    )
    assert out["title"] == "Rosie's Bakery"
    assert out["description"] == "Family bakery since 1998."
    assert out["emails"] == ["owner@rosies.example", "info@rosies.example"]
    assert "+1 555 014 2233" in out["phones"]
    assert "not text" not in out["text"] and "Write to us" in out["text"]
    assert out["pages"][0]["title"] == "About"
    assert "HTTP 404" in out["pages"][1]["error"]


@pytest.mark.usefixtures("allow_loopback")
def test_http_error_is_clear(site: Site) -> None:
    with pytest.raises(ResearchError, match=r"/missing answered HTTP 404"):
        web_research.run({"url": f"{site.url}/missing"})


@pytest.mark.usefixtures("allow_loopback")
def test_timeout_is_clear(site: Site) -> None:
    with pytest.raises(ResearchError, match=r"did not answer within 0.5s"):
        web_research.run({"url": f"{site.url}/slow", "timeoutSeconds": 0.5})


@pytest.mark.usefixtures("allow_loopback")
def test_unreachable_is_clear() -> None:
    with pytest.raises(ResearchError, match=r"cannot fetch http://127.0.0.1:9/"):
        web_research.run({"url": "http://127.0.0.1:9/", "timeoutSeconds": 2})


@pytest.mark.usefixtures("allow_loopback")
def test_utf8_page_without_charset_header_is_read_as_utf8(site: Site) -> None:
    assert web_research.run({"url": f"{site.url}/utf8"})["title"] == "Café Ünïcode"


@pytest.mark.usefixtures("allow_loopback")
def test_redirect_within_the_allowed_site_is_followed(site: Site) -> None:
    out = web_research.run({"url": f"{site.url}/redirect?to=/about"})
    assert out["title"] == "About"
    assert site.paths == ["/redirect?to=/about", "/about"]


@pytest.mark.usefixtures("allow_loopback")
def test_redirects_are_bounded(site: Site) -> None:
    with pytest.raises(ResearchError, match="redirected more than 5 times"):
        web_research.run({"url": f"{site.url}/loop"})
    assert len(site.paths) == web_research.MAX_REDIRECTS + 1


@pytest.mark.usefixtures("allow_loopback")
def test_body_read_is_capped(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__HITL__WEB_RESEARCH_MAX_BYTES", "10000")
    out = web_research.run({"url": f"{site.url}/big", "maxChars": 200_000})
    assert out["title"] == "Big"
    assert len(out["text"]) < 10_000


@pytest.mark.usefixtures("allow_loopback")
def test_decompression_is_capped_too(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__HITL__WEB_RESEARCH_MAX_BYTES", "100000")
    status, html = web_research.fetch(f"{site.url}/bomb", 10)
    assert status == 200 and html.startswith("<title>Bomb</title>")
    assert len(html) == 100_000


@pytest.mark.usefixtures("allow_loopback")
def test_proxies_from_the_environment_are_not_used(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    # A proxy would connect on our behalf, past the address check: it is ignored.
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    assert web_research.run({"url": f"{site.url}/"})["title"] == "Rosie's Bakery"


# --- what it refuses ---------------------------------------------------------------------------


def test_loopback_is_refused_without_the_allow_setting(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ALLOW, "")
    with pytest.raises(web_research.Refused, match=r"refusing http://127.0.0.1:\d+/: 127.0.0.1 is a loopback address"):
        web_research.run({"url": f"{site.url}/"})
    assert site.paths == []  # nothing was sent


def test_refused_extra_page_is_noted_and_the_rest_goes_on(
    site: Site, other_site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ALLOW, f"127.0.0.1:{site.port}")
    out = web_research.run({"url": f"{site.url}/", "extraUrls": [f"{other_site.url}/about", f"{site.url}/about"]})
    assert "loopback address" in out["pages"][0]["error"]
    assert out["pages"][1]["title"] == "About"
    assert other_site.paths == []


def test_an_allowed_host_with_port_works_and_other_ports_do_not(
    site: Site, other_site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ALLOW, f"localhost:{site.port}")
    assert web_research.run({"url": f"http://localhost:{site.port}/"})["title"] == "Rosie's Bakery"
    assert site.hosts == [f"localhost:{site.port}"]
    with pytest.raises(web_research.Refused):
        web_research.run({"url": f"http://localhost:{other_site.port}/"})
    with pytest.raises(web_research.Refused):  # the name was allowed, not the address
        web_research.run({"url": f"{site.url}/"})
    assert other_site.paths == []


def test_redirect_from_an_allowed_site_to_loopback_is_refused(
    site: Site, other_site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ALLOW, f"127.0.0.1:{site.port}")
    with pytest.raises(web_research.Refused, match=r"redirected to http://127.0.0.1:\d+/about.*loopback"):
        web_research.run({"url": f"{site.url}/redirect?to={other_site.url}/about"})
    assert other_site.paths == []


@pytest.mark.parametrize(
    "target",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://[fd00:ec2::254]/latest/meta-data/",
        "http://[::ffff:169.254.169.254]/",
        "http://10.0.0.1/",
        "http://192.168.1.1/",
        "file:///etc/passwd",
        "gopher://127.0.0.1:70/",
    ],
)
def test_redirect_to_internal_or_non_http_targets_is_refused(
    site: Site, target: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ALLOW, f"127.0.0.1:{site.port}")
    with pytest.raises(web_research.Refused):
        web_research.run({"url": f"{site.url}/redirect?to={target}"})


def test_metadata_address_is_refused_even_under_a_broad_allow_entry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ALLOW, "0.0.0.0/0, ::/0, 169.254.0.0/16, metadata.test")
    fake_dns(monkeypatch, {"metadata.test": [["169.254.169.254"]]})
    for url in (
        "http://169.254.169.254/",
        "http://[fd00:ec2::254]/",
        "http://[::ffff:169.254.169.254]/",
        "http://metadata.test/",
    ):
        with pytest.raises(web_research.Refused, match="cloud metadata"):
            web_research.run({"url": url, "timeoutSeconds": 2})
    # Only an entry naming the exact address allows it (checked without connecting).
    exact = Guard(parse_allow("169.254.169.254"))
    exact.check("169.254.169.254", ipaddress.ip_address("169.254.169.254"), 80)
    exact.check("169.254.169.254", ipaddress.ip_address("::ffff:169.254.169.254"), 80)


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://127.0.0.1/", "gopher://127.0.0.1/", "http:///nohost"])
def test_only_http_and_https_urls_with_a_host(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ALLOW, "127.0.0.1, localhost")
    with pytest.raises(web_research.Refused):
        web_research.run({"url": url})


# --- DNS: checked once per connection, connected to what was checked ---------------------------


def fake_dns(monkeypatch: pytest.MonkeyPatch, answers: dict[str, list[list[str]]]) -> list[str]:
    """Resolve the given names to the next answer on each lookup (the last one repeats); log the lookups."""
    real = socket.getaddrinfo
    looked_up: list[str] = []

    def getaddrinfo(host: str, port: Any, family: int = 0, type: int = 0, *args: Any) -> Any:
        if host not in answers:
            return real(host, port, family, type, *args)
        looked_up.append(host)
        answer = answers[host][min(len(looked_up) - 1, len(answers[host]) - 1)]
        out = []
        for ip in answer:
            fam = socket.AF_INET6 if ":" in ip else socket.AF_INET
            addr = (ip, int(port), 0, 0) if fam == socket.AF_INET6 else (ip, int(port))
            out.append((fam, socket.SOCK_STREAM, 6, "", addr))
        return out

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return looked_up


def test_dns_rebinding_cannot_swap_the_address(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    # The first answer is the allowed address; any later lookup would answer a private one.
    # The connection is made to the checked answer, and nothing resolves the name a second time.
    monkeypatch.setenv(ALLOW, f"127.0.0.1:{site.port}")
    looked_up = fake_dns(monkeypatch, {"rebind.test": [["127.0.0.1"], ["10.0.0.7"]]})
    out = web_research.run({"url": f"http://rebind.test:{site.port}/"})
    assert out["title"] == "Rosie's Bakery"
    assert looked_up == ["rebind.test"]
    assert site.hosts == [f"rebind.test:{site.port}"]


def test_a_name_resolving_to_a_private_address_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ALLOW, "")
    fake_dns(monkeypatch, {"intranet.test": [["10.0.0.7"]], "mixed.test": [["93.184.215.14", "127.0.0.1"]]})
    with pytest.raises(web_research.Refused, match=r"intranet.test \(10.0.0.7\) is a private address"):
        web_research.run({"url": "http://intranet.test/"})
    # one bad address refuses the name: no trying the public one first and the loopback one next
    with pytest.raises(web_research.Refused, match="loopback"):
        web_research.run({"url": "http://mixed.test/"})


# --- the rules, as units -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("127.255.0.9", "loopback"),
        ("::1", "loopback"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.0.1", "private"),
        ("fd12::1", "private"),
        ("169.254.1.1", "link-local"),
        ("fe80::1", "link-local"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("100.64.0.1", "not a public address"),
        ("169.254.169.254", "cloud metadata"),
        ("fd00:ec2::254", "cloud metadata"),
        ("168.63.129.16", "cloud metadata"),
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:169.254.169.254", "cloud metadata"),
        ("::ffff:10.0.0.1", "private"),
        ("64:ff9b::7f00:1", "loopback"),
        ("2002:7f00:1::1", "loopback"),
        ("2002:a00:1::1", "private"),
    ],
)
def test_refused_addresses(address: str, reason: str) -> None:
    assert reason in (refusal_reason(ipaddress.ip_address(address)) or "")


@pytest.mark.parametrize(
    "address", ["93.184.215.14", "8.8.8.8", "2606:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808"]
)
def test_public_addresses_pass(address: str) -> None:
    assert refusal_reason(ipaddress.ip_address(address)) is None


def test_allow_entries() -> None:
    guard = Guard(parse_allow(" intranet.example.com ,10.1.2.0/24, 127.0.0.1:8765, [::1]:8080, Example.ORG., ,"))
    ip = ipaddress.ip_address
    guard.check("intranet.example.com", ip("10.9.9.9"), 443)  # a name entry: whatever it resolves to
    guard.check("INTRANET.example.com.", ip("10.9.9.9"), 80)
    guard.check("example.org", ip("192.168.1.1"), 80)
    guard.check("anything", ip("10.1.2.200"), 80)  # a network entry: whatever name led there
    guard.check("127.0.0.1", ip("127.0.0.1"), 8765)
    guard.check("::1", ip("::1"), 8080)
    guard.check("127.0.0.1", ip("::ffff:127.0.0.1"), 8765)
    for host, address, port in [
        ("127.0.0.1", "127.0.0.1", 8080),
        ("::1", "::1", 8765),
        ("10.1.3.1", "10.1.3.1", 80),
        ("other.example.com", "10.9.9.9", 80),
        ("intranet.example.com.evil", "10.9.9.9", 80),
    ]:
        with pytest.raises(web_research.Refused):
            guard.check(host, ip(address), port)


@pytest.mark.parametrize("bad", ["127.0.0.1:http", "host:0", "[::1", "bad host", "a/b/c"])
def test_unreadable_allow_entries_are_an_error(bad: str) -> None:
    with pytest.raises(ResearchError, match="web_research_allow"):
        parse_allow(bad)


@pytest.fixture
def tls_site(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """An HTTPS site on loopback whose certificate names ``site.test`` (self-signed: its own CA)."""
    import datetime
    import ssl

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "site.test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("site.test")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    site = Site()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    site.server.server.socket = context.wrap_socket(site.server.server.socket, server_side=True)
    yield site.port, cert_file
    site.server.close()


def test_https_connects_to_the_checked_address_and_still_verifies_the_host_name(
    tls_site: tuple[int, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    port, ca = tls_site
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(ca))
    monkeypatch.setenv(ALLOW, f"127.0.0.1:{port}")
    fake_dns(monkeypatch, {"site.test": [["127.0.0.1"]]})
    assert web_research.run({"url": f"https://site.test:{port}/"})["title"] == "Rosie's Bakery"
    # The same server by address: the certificate does not name 127.0.0.1, and verification says so.
    with pytest.raises(ResearchError, match=r"CERTIFICATE_VERIFY_FAILED|certificate"):
        web_research.run({"url": f"https://127.0.0.1:{port}/"})


def test_a_server_that_drips_bytes_cannot_stretch_the_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    """One byte every 0.3 s used to keep a 1 s fetch going for as long as the page lasted."""
    import socket as socket_module
    import threading as threading_module

    listener = socket_module.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    stop = threading_module.Event()

    def drip() -> None:
        conn, _ = listener.accept()
        conn.recv(65536)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 100000\r\n\r\n<title>")
        while not stop.is_set():
            try:
                conn.sendall(b"x")
            except OSError:
                break
            stop.wait(0.3)
        conn.close()

    threading_module.Thread(target=drip, daemon=True).start()
    monkeypatch.setenv(ALLOW, "127.0.0.1")
    started = time.monotonic()
    try:
        with pytest.raises(ResearchError, match="did not answer within"):
            web_research.fetch(f"http://127.0.0.1:{port}/", 1.0)
    finally:
        stop.set()
        listener.close()
    assert time.monotonic() - started < 10  # bounded by the deadline, not by the page's length (100000 x 0.3 s)
