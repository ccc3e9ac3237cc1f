"""What webResearch may fetch: public web sites only, unless ``[hitl] web_research_allow`` says otherwise.

Whoever may trigger a run chooses the URL (through ``conf``), and the page ends up on the review page, in Slack and
in the logs, so anything that is not a public web site is refused:

* only ``http`` and ``https`` URLs (``check_url``);
* every address a host resolves to is checked (``Guard``): loopback, private, link-local, multicast, reserved,
  unspecified, shared (CGNAT) and other non-public addresses are refused, and so are cloud metadata addresses,
  also when written as IPv4-mapped IPv6 (``::ffff:169.254.169.254``), NAT64, 6to4 or Teredo addresses.

``[hitl] web_research_allow`` (``AIRFLOW__HITL__WEB_RESEARCH_ALLOW``) lets an operator allow what would be refused:
comma-separated host names, addresses and CIDR networks, each optionally with a port: ``intranet.example.com,
10.1.2.0/24, 127.0.0.1:8765, [::1]:8080``. A host name entry allows that name whatever it resolves to; an address
or network entry allows those addresses whatever name led to them. A cloud metadata address is allowed only by an
entry naming that exact address (not by a network around it, nor by a host name that resolves to it).

Connecting to exactly the checked address is ``hitl.steps.guarded_fetch``'s part.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

SCHEMES = ("http", "https")

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
