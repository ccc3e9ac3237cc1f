"""webResearch's fetch: connect to exactly the address the address policy checked, within bounds.

* The TCP connection is made to the very address that was checked: the name is resolved once per connection,
  inside the connection, and never again, so a DNS answer that changes between the check and the connect (DNS
  rebinding) cannot swap in another address. TLS still verifies the certificate against the host name. After the
  connect the socket's peer address is compared with the checked one as well.
* Redirects are followed here, not by the HTTP library, at most ``MAX_REDIRECTS`` of them, and every hop is checked
  like the first request.
* Proxies and ``.netrc`` from the environment are not used (a proxy would connect on our behalf, out of reach of
  the check).
* At most ``[hitl] web_research_max_bytes`` of the body are read (after decompression), and the whole fetch must
  finish within ``timeoutSeconds``.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import sys
import time
import zlib
from typing import Any
from urllib.parse import urljoin

from hitl.steps.address_policy import Guard, Refused, ResearchError, check_url, parse_allow

MAX_REDIRECTS = 5
USER_AGENT = "hitl-webResearch/0.1"


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
