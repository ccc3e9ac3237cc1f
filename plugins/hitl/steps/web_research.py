"""webResearch: fetch a prospect's website and extract what a sales rep would look for.

Output: {url, status, title, description, emails, phones, text, pages: [{url, status, title, error}]}

What it may fetch. Whoever may trigger a run chooses the URL (through ``conf``), and the page ends up on
the review page, in Slack and in the logs, so the step refuses anything that is not a public web site:

* only ``http`` and ``https`` URLs;
* the host is resolved when the connection is made, and every address it resolves to is checked:
  loopback, private, link-local, multicast, reserved, unspecified, shared (CGNAT) and other
  non-public addresses are refused, and so are cloud metadata addresses, also when written as
  IPv4-mapped IPv6 (``::ffff:169.254.169.254``), NAT64, 6to4 or Teredo addresses;
* the TCP connection is made to the very address that was checked: the name is resolved once per
  connection, inside the connection, and never again, so a DNS answer that changes between the
  check and the connect (DNS rebinding) cannot swap in another address. TLS still verifies the
  certificate against the host name. After the connect the socket's peer address is compared with
  the checked one as well;
* redirects are followed here, not by the HTTP library, at most ``MAX_REDIRECTS`` of them, and every
  hop is checked like the first request;
* proxies and ``.netrc`` from the environment are not used (a proxy would connect on our behalf,
  out of reach of the check);
* at most ``[hitl] web_research_max_bytes`` of the body are read (after decompression), and the
  whole fetch must finish within ``timeoutSeconds``.

``[hitl] web_research_allow`` (``AIRFLOW__HITL__WEB_RESEARCH_ALLOW``) lets an operator allow what
would be refused: comma-separated host names, addresses and CIDR networks, each optionally with a
port: ``intranet.example.com, 10.1.2.0/24, 127.0.0.1:8765, [::1]:8080``. A host name entry allows
that name whatever it resolves to; an address or network entry allows those addresses whatever name
led to them. A cloud metadata address is allowed only by an entry naming that exact address (not by a
network around it, nor by a host name that resolves to it).
"""

from __future__ import annotations

import ipaddress
import re
import socket
import sys
import time
import zlib
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
PHONE = re.compile(r"(?:\+?\d[\d ().-]{7,}\d)")

MAX_REDIRECTS = 5
SCHEMES = ("http", "https")
USER_AGENT = "hitl-webResearch/0.1"

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Cloud metadata and platform endpoints. Most are also link-local or private, but not all
# (Azure's wire server is a public address), and these stay refused under a broad allow entry.
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean, Oracle ... instance metadata
        "169.254.170.2",  # AWS ECS task metadata
        "169.254.169.253",  # AWS VPC DNS
        "fd00:ec2::254",  # AWS instance metadata over IPv6
        "fd00:ec2::253",  # AWS VPC DNS over IPv6
        "100.100.100.200",  # Alibaba Cloud
        "168.63.129.16",  # Azure wire server
        "192.0.0.192",  # Oracle Cloud (legacy)
    )
)
NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))


class ResearchError(RuntimeError):
    pass


class Refused(ResearchError):
    """The URL or an address it leads to may not be fetched."""


# --- the allow list ---------------------------------------------------------------------------


@dataclass(frozen=True)
class AllowEntry:
    host: str | None = None
    network: IPNetwork | None = None
    port: int | None = None

    def matches(self, host: str, ip: IPAddress, port: int) -> bool:
        if self.port is not None and self.port != port:
            return False
        candidates = (ip, _unmapped(ip))
        if any(a in METADATA_ADDRESSES for a in candidates):
            # only an entry naming the metadata address itself allows it: never a range around it, never a name
            return (
                self.network is not None
                and self.network.num_addresses == 1
                and self.network.network_address in candidates
            )
        if self.host is not None:
            return self.host == _norm_host(host)
        assert self.network is not None
        return any(a.version == self.network.version and a in self.network for a in candidates)


def _norm_host(host: str) -> str:
    return host.strip().strip("[]").rstrip(".").lower()


def _same_address(host: str, ip: IPAddress) -> bool:
    try:
        return ipaddress.ip_address(_norm_host(host)) == ip
    except ValueError:
        return False


def parse_allow(text: str) -> tuple[AllowEntry, ...]:
    """``[hitl] web_research_allow``: ``host``, ``address``, ``cidr``, each optionally ``:port`` (``[v6]:port``)."""
    entries = []
    for raw in text.split(","):
        item = raw.strip()
        if not item:
            continue
        port: int | None = None
        body = item
        if body.startswith("["):  # [v6], [v6]:port, [v6/cidr]:port
            inner, bracket, rest = body[1:].partition("]")
            if not bracket:
                raise ResearchError(f"[hitl] web_research_allow: cannot read {item!r}")
            if rest.startswith(":"):
                port = _port(rest[1:], item)
            elif rest:
                raise ResearchError(f"[hitl] web_research_allow: cannot read {item!r}")
            body = inner
        elif body.count(":") == 1:  # host:port, v4:port, v4/cidr:port
            body, _, port_text = body.partition(":")
            port = _port(port_text, item)
        try:
            entries.append(AllowEntry(network=ipaddress.ip_network(body, strict=False), port=port))
            continue
        except ValueError:
            pass
        host = _norm_host(body)
        if not host or not re.fullmatch(r"[a-z0-9_]([a-z0-9_.-]*[a-z0-9_])?", host):
            raise ResearchError(f"[hitl] web_research_allow: cannot read {item!r}")
        entries.append(AllowEntry(host=host, port=port))
    return tuple(entries)


def _port(text: str, item: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ResearchError(f"[hitl] web_research_allow: bad port in {item!r}")
    return int(text)


# --- which addresses are refused ---------------------------------------------------------------


def _unmapped(ip: IPAddress) -> IPAddress:
    """The IPv4 address inside an IPv4-mapped (``::ffff:a.b.c.d``) or NAT64 (``64:ff9b::a.b.c.d``) address."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
        if any(ip in net for net in NAT64):
            return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip


def refusal_reason(ip: IPAddress) -> str | None:
    """Why this address is not a public web site's (None: it may be fetched)."""
    inner = _unmapped(ip)
    if inner is not ip:  # ::ffff:a.b.c.d and 64:ff9b::a.b.c.d reach a.b.c.d: judge that
        reason = refusal_reason(inner)
        return f"{reason} ({inner})" if reason else None
    if ip in METADATA_ADDRESSES:
        return "a cloud metadata address"
    checks = (
        ("is_loopback", "a loopback address"),
        ("is_unspecified", "the unspecified address"),
        ("is_link_local", "a link-local address"),
        ("is_multicast", "a multicast address"),
        ("is_reserved", "a reserved address"),
        ("is_private", "a private address"),
        ("is_site_local", "a site-local address"),
    )
    for attr, reason in checks:
        if getattr(ip, attr, False):
            return reason
    if not ip.is_global:
        return "not a public address"
    if isinstance(ip, ipaddress.IPv6Address):  # 6to4 and Teredo carry an IPv4 address too
        embedded = [a for a in (ip.sixtofour, *(ip.teredo or ())) if a is not None]
        for v4 in embedded:
            reason = refusal_reason(v4)
            if reason:
                return f"{reason} (inside {ip})"
    return None


@dataclass(frozen=True)
class Guard:
    """Decides, per connection, whether a host's addresses may be connected to."""

    allow: tuple[AllowEntry, ...] = ()

    def check(self, host: str, ip: IPAddress, port: int) -> None:
        if any(entry.matches(host, ip, port) for entry in self.allow):
            return
        reason = refusal_reason(ip)
        if reason:
            shown = host if _same_address(host, ip) else f"{host} ({ip})"
            raise Refused(f"{shown} is {reason}; [hitl] web_research_allow can allow it")

    def resolve(self, host: str, port: int, family: int = socket.AF_UNSPEC) -> list[tuple[Any, ...]]:
        """Resolve once; every address must pass (a name with one bad address is refused whole)."""
        infos = socket.getaddrinfo(host, port, family, socket.SOCK_STREAM)
        checked = []
        for family_, type_, proto, _, sockaddr in infos:
            ip = ipaddress.ip_address(str(sockaddr[0]).split("%")[0])
            self.check(host, ip, port)
            checked.append((family_, type_, proto, sockaddr, ip))
        if not checked:
            raise OSError(f"{host} resolves to no address")
        return checked


def _connect(conn: Any, guard: Guard) -> socket.socket:
    """urllib3's ``_new_conn``: resolve, check, and connect to exactly the address that was checked."""
    from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError
    from urllib3.util.connection import allowed_gai_family

    host, port = conn._dns_host, conn.port
    try:
        candidates = guard.resolve(host, port, allowed_gai_family())
    except socket.gaierror as exc:
        raise NameResolutionError(conn.host, conn, exc) from exc
    error: OSError | None = None
    for family, type_, proto, sockaddr, ip in candidates:
        sock = socket.socket(family, type_, proto)
        try:
            for option in conn.socket_options or ():
                sock.setsockopt(*option)
            if isinstance(conn.timeout, int | float):
                sock.settimeout(conn.timeout)
            if conn.source_address:
                sock.bind(conn.source_address)
            sock.connect(sockaddr)
            peer = ipaddress.ip_address(str(sock.getpeername()[0]).split("%")[0])
            if peer != ip:  # cannot happen with a numeric sockaddr; never talk to an unchecked peer
                raise Refused(f"connected to {peer}, not to the checked {ip}")
        except OSError as exc:  # refused, unreachable, timed out: try the next checked address
            sock.close()
            error = exc
            continue
        except BaseException:
            sock.close()
            raise
        sys.audit("http.client.connect", conn, conn.host, port)
        return sock
    if isinstance(error, TimeoutError):
        raise ConnectTimeoutError(conn, f"Connection to {conn.host} timed out. (connect timeout={conn.timeout})")
    raise NewConnectionError(conn, f"Failed to establish a new connection: {error}")


def _session(guard: Guard) -> Any:
    """A requests session whose every connection goes through ``guard``; no proxies, no netrc, no retries."""
    import requests
    from requests.adapters import HTTPAdapter
    from urllib3.connection import HTTPConnection, HTTPSConnection
    from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

    class GuardedHTTPConnection(HTTPConnection):
        def _new_conn(self) -> socket.socket:
            return _connect(self, guard)

    class GuardedHTTPSConnection(HTTPSConnection):
        def _new_conn(self) -> socket.socket:
            return _connect(self, guard)

    class GuardedHTTPPool(HTTPConnectionPool):
        ConnectionCls = GuardedHTTPConnection

    class GuardedHTTPSPool(HTTPSConnectionPool):
        ConnectionCls = GuardedHTTPSConnection

    class GuardedAdapter(HTTPAdapter):
        def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
            super().init_poolmanager(*args, **kwargs)
            self.poolmanager.pool_classes_by_scheme = {"http": GuardedHTTPPool, "https": GuardedHTTPSPool}

        def proxy_manager_for(self, proxy: Any, **kwargs: Any) -> Any:
            raise Refused("webResearch does not connect through proxies")

    session = requests.Session()
    session.trust_env = False  # no proxies (they would connect for us, unchecked) and no .netrc credentials
    adapter = GuardedAdapter(max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def check_url(url: str) -> None:
    """Refuse what is not an http(s) URL with a host (the addresses are checked when connecting)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError as exc:
        raise Refused(f"webResearch: cannot read the URL {url!r}: {exc}") from exc
    if parts.scheme.lower() not in SCHEMES:
        raise Refused(f"webResearch: refusing {url!r}: only http and https URLs are fetched")
    if not host:
        raise Refused(f"webResearch: refusing {url!r}: no host")


# --- fetching -----------------------------------------------------------------------------------


def _ca_bundle() -> str | bool:
    import os

    return os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True


def _chunks_until(resp: Any, deadline: float, size: int = 64 * 1024) -> Any:
    """The raw body in pieces, each read bounded by the time left: a server that drips one byte at a time
    cannot stretch the fetch past its deadline (a plain read loops over many receives, each with its own timeout)."""
    sock = getattr(getattr(resp.raw, "connection", None), "sock", None)
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            yield b""  # the caller sees the deadline passed
            return
        if sock is not None:
            sock.settimeout(left)
        try:
            chunk = resp.raw.read1(size, decode_content=False)
        except Exception as exc:  # a socket timeout surfaces as urllib3's ReadTimeoutError
            if time.monotonic() >= deadline:
                yield b""
                return
            raise exc
        if not chunk:
            return
        yield chunk


def _read_body(resp: Any, max_bytes: int, deadline: float, url: str, timeout: float) -> bytes:
    """At most ``max_bytes`` of the (decompressed) body; the rest is not read."""
    encoding = (resp.headers.get("Content-Encoding") or "identity").strip().lower()
    if encoding in ("identity", ""):
        decoder = None
    elif encoding in ("gzip", "x-gzip"):
        decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
    elif encoding == "deflate":
        decoder = zlib.decompressobj()
    else:
        raise ResearchError(f"webResearch: {url} sent an unsupported Content-Encoding {encoding!r}")
    out = bytearray()
    for chunk in _chunks_until(resp, deadline):
        if time.monotonic() > deadline:
            raise ResearchError(f"webResearch: {url} did not answer within {timeout:g}s")
        if decoder is None:
            out += chunk
        else:
            try:
                out += decoder.decompress(chunk, max_bytes + 1 - len(out))
            except zlib.error as exc:
                if not out and encoding == "deflate":  # some servers send raw deflate
                    decoder = zlib.decompressobj(-zlib.MAX_WBITS)
                    out += decoder.decompress(chunk, max_bytes + 1)
                    continue
                raise ResearchError(f"webResearch: {url} sent a broken {encoding} body") from exc
        if len(out) >= max_bytes:
            break
    return bytes(out[:max_bytes])


def _decode(data: bytes, content_type: str) -> str:
    from bs4.dammit import EncodingDetector

    match = re.search(r"charset\s*=\s*[\"']?([\w.:-]+)", content_type or "", re.I)
    declared = match.group(1) if match else EncodingDetector.find_declared_encoding(data[:4096], is_html=True)
    for encoding in (declared, "utf-8"):
        if encoding:
            try:
                return data.decode(encoding)
            except (LookupError, UnicodeDecodeError):
                pass
    return data.decode("windows-1252", errors="replace")


def fetch(url: str, timeout: float, *, guard: Guard | None = None, max_bytes: int | None = None) -> tuple[int, str]:
    """GET ``url`` (following checked redirects): its status and text. Refused or failed: ResearchError."""
    import requests
    from urllib3.exceptions import HTTPError as Urllib3Error
    from urllib3.exceptions import TimeoutError as Urllib3Timeout

    from hitl.config import load_settings

    if guard is None or max_bytes is None:
        settings = load_settings()
        guard = guard or Guard(parse_allow(settings.web_research_allow))
        max_bytes = max_bytes or settings.web_research_max_bytes
    deadline = time.monotonic() + timeout
    current = url
    with _session(guard) as session:
        for _ in range(MAX_REDIRECTS + 1):
            try:
                check_url(current)
            except Refused as exc:
                if current == url:
                    raise
                raise Refused(f"{exc} ({url} redirected there)") from exc
            where = url if current == url else f"{url} (redirected to {current})"
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ResearchError(f"webResearch: {url} did not answer within {timeout:g}s")
            try:
                resp = session.get(
                    current,
                    timeout=remaining,
                    allow_redirects=False,
                    stream=True,
                    verify=_ca_bundle(),
                    headers={"User-Agent": USER_AGENT, "Accept-Encoding": "gzip, deflate"},
                )
            except Refused as exc:
                raise Refused(f"webResearch: refusing {where}: {exc}") from exc
            except requests.Timeout as exc:
                raise ResearchError(f"webResearch: {url} did not answer within {timeout:g}s") from exc
            except requests.RequestException as exc:
                raise ResearchError(f"webResearch: cannot fetch {where}: {type(exc).__name__}: {exc}") from exc
            with resp:
                target = session.get_redirect_target(resp)
                if target is not None:
                    current = urljoin(resp.url, target)
                    continue
                if resp.status_code >= 400:
                    raise ResearchError(f"webResearch: {where} answered HTTP {resp.status_code} {resp.reason}")
                try:
                    body = _read_body(resp, max_bytes, deadline, url, timeout)
                except (Urllib3Timeout, TimeoutError) as exc:
                    raise ResearchError(f"webResearch: {url} did not answer within {timeout:g}s") from exc
                except (Urllib3Error, requests.RequestException, OSError) as exc:
                    raise ResearchError(f"webResearch: cannot read {where}: {type(exc).__name__}: {exc}") from exc
                return resp.status_code, _decode(body, resp.headers.get("Content-Type", ""))
    raise ResearchError(f"webResearch: {url} redirected more than {MAX_REDIRECTS} times")


def extract(html: str, max_chars: int) -> dict[str, Any]:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(html, "html.parser")
    title = soup.title.get_text(strip=True) if soup.title else ""
    meta = soup.find("meta", attrs={"name": "description"})
    description = str(meta.get("content", "")).strip() if meta else ""
    mailtos = [str(a["href"])[7:].split("?")[0] for a in soup.select('a[href^="mailto:"]')]
    tels = [str(a["href"])[4:] for a in soup.select('a[href^="tel:"]')]
    for tag in soup(["script", "style", "noscript", "template"]):
        tag.decompose()
    text = " ".join(soup.get_text(" ").split())
    emails = list(dict.fromkeys([*mailtos, *EMAIL.findall(text)]))
    phones = list(dict.fromkeys([*tels, *(p.strip() for p in PHONE.findall(text))]))
    return {"title": title, "description": description, "emails": emails, "phones": phones, "text": text[:max_chars]}


def run(config: dict[str, Any], context: Any = None) -> dict[str, Any]:
    from hitl.config import load_settings

    settings = load_settings()
    guard = Guard(parse_allow(settings.web_research_allow))
    max_bytes = settings.web_research_max_bytes
    timeout = float(config.get("timeoutSeconds", 10))
    max_chars = int(config.get("maxChars", 5000))
    status, html = fetch(config["url"], timeout, guard=guard, max_bytes=max_bytes)
    result: dict[str, Any] = {"url": config["url"], "status": status, **extract(html, max_chars), "pages": []}
    for extra in config.get("extraUrls", []):
        try:
            extra_status, extra_html = fetch(extra, timeout, guard=guard, max_bytes=max_bytes)
            found = extract(extra_html, max_chars)
            result["pages"].append(
                {"url": extra, "status": extra_status, "title": found["title"], "text": found["text"]}
            )
            result["emails"] = list(dict.fromkeys([*result["emails"], *found["emails"]]))
            result["phones"] = list(dict.fromkeys([*result["phones"], *found["phones"]]))
        except ResearchError as exc:  # extra pages are optional: note the failure, keep going
            result["pages"].append({"url": extra, "error": str(exc)})
    return result
