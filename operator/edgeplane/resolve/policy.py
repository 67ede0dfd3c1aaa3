"""What the operator may do when it downloads a Worker's `url` modules (pure decisions):
which addresses it may connect to, which redirects it follows, what a failure says, and
which cached modules make room for a new one. resolve/download.py does the I/O."""

from __future__ import annotations

import ipaddress
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass

from yarl import URL

# Cloudflare's limit for a Worker before compression; no single module can be larger.
MAX_URL_BYTES = 64 * 1000 * 1000
MAX_REDIRECTS = 5
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class UrlSettings:
    """How url modules are downloaded (the operator's --url-* flags)."""

    # Connect to non-public addresses (loopback, private, link-local, ...) too.
    allow_private: bool = False
    # Non-public networks allowed one by one (CIDR), e.g. an internal artifact server.
    allowed_networks: tuple[str, ...] = ()
    # PEM file of CAs trusted for https in addition to the system's.
    ca_bundle: str | None = None
    # Seconds for one download, its redirects included.
    timeout: float = 30.0
    # Seconds for all of one Worker's downloads together.
    budget: float = 120.0
    # Downloads of one Worker at the same time.
    concurrency: int = 4
    # Bytes of downloaded modules kept (by sha256), least recently used dropped first.
    cache_bytes: int = 256 * 1000 * 1000
    max_bytes: int = MAX_URL_BYTES
    max_redirects: int = MAX_REDIRECTS


class DownloadError(Exception):
    """Why a URL could not be downloaded, worded for the Worker's condition. URLs in it are
    redacted: a redirect's URL may carry credentials or a signature in its query."""


# Addresses that are not publicly routable, each with what it is; first match names it.
_NOT_PUBLIC = tuple(
    (ipaddress.ip_network(net), what)
    for net, what in [
        ("0.0.0.0/8", "unspecified"),
        ("10.0.0.0/8", "private"),
        ("100.64.0.0/10", "shared (carrier-grade NAT)"),
        ("127.0.0.0/8", "loopback"),
        ("169.254.0.0/16", "link-local"),
        ("172.16.0.0/12", "private"),
        ("192.0.0.0/24", "reserved"),
        ("192.0.2.0/24", "reserved (documentation)"),
        ("192.168.0.0/16", "private"),
        ("198.18.0.0/15", "reserved (benchmarking)"),
        ("198.51.100.0/24", "reserved (documentation)"),
        ("203.0.113.0/24", "reserved (documentation)"),
        ("224.0.0.0/4", "multicast"),
        ("240.0.0.0/4", "reserved"),  # and the broadcast address
        ("::/128", "unspecified"),
        ("::1/128", "loopback"),
        ("::/8", "reserved"),  # IPv4-compatible and other legacy forms
        ("64:ff9b:1::/48", "reserved (local NAT64)"),
        ("100::/64", "reserved (discard)"),
        ("2001:db8::/32", "reserved (documentation)"),
        ("2001::/23", "reserved"),  # Teredo and other protocol assignments
        ("fc00::/7", "private (unique local)"),
        ("fe80::/10", "link-local"),
        ("fec0::/10", "site-local"),
        ("ff00::/8", "multicast"),
    ]
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def parse_address(text: str) -> IPAddress | None:
    """The IP address `text` is (an IPv6 zone is dropped), or None for a host name."""
    try:
        return ipaddress.ip_address(text.partition("%")[0])
    except ValueError:
        return None


def _embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for: a connection to it reaches that one."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def address_refusal(address: str, settings: UrlSettings) -> str | None:
    """Why the operator may not connect to `address`, or None when it may."""
    ip = parse_address(address)
    if ip is None:
        return f"{address}, not an IP"
    if settings.allow_private:
        return None
    inner = _embedded_ipv4(ip)
    candidates = [ip] if inner is None else [ip, inner]
    allowed = [ipaddress.ip_network(n, strict=False) for n in settings.allowed_networks]
    if any(c in net for c in candidates for net in allowed if c.version == net.version):
        return None
    judged = inner or ip
    what = next((w for net, w in _NOT_PUBLIC if judged in net), None)
    if what is None:
        return None
    shown = str(ip) if inner is None else f"{ip} (that is {inner})"
    return f"{shown}, {'an' if what[0] in 'aeiou' else 'a'} {what} address"


def refused_address_message(host: str, refusal: str) -> str:
    """`refusal` (from address_refusal) for `host`, a literal address or a name."""
    said = f"{refusal}, is refused" if parse_address(host) else f"{host} resolves to {refusal}"
    return (
        f"{said}; the operator connects only to public addresses unless its "
        "--url-allow-private or --url-allow-network allows others"
    )


def redact(url: str | URL) -> str:
    """The URL without credentials, query or fragment: enough to find the file, nothing
    that may be a secret."""
    u = url if isinstance(url, URL) else URL(url)
    return str(u.with_user(None).with_query(None).with_fragment(None))


def _refusal(u: URL, settings: UrlSettings) -> str | None:
    """Why the operator may not request `u`: not https, or a literal address it may not
    connect to (a host name's addresses are checked when it is resolved)."""
    if u.scheme != "https":
        return "only https is downloaded"
    if not u.host:
        return "the URL has no host"
    if parse_address(u.host) is not None and (why := address_refusal(u.host, settings)):
        return refused_address_message(u.host, why)
    return None


def check_target(url: str, settings: UrlSettings) -> URL:
    """The URL to request, or DownloadError if the operator may not request it."""
    try:
        u = URL(url)
    except ValueError:
        raise DownloadError("not a valid URL") from None
    if why := _refusal(u, settings):
        raise DownloadError(f"{redact(u)}: {why}")
    return u


def redirect_target(
    current: URL, status: int, location: str | None, hops: int, settings: UrlSettings
) -> URL:
    """Where a redirect answer leads, if the operator may follow it (`hops`: redirects
    followed so far); DownloadError says why not."""
    if not location:
        raise DownloadError(f"{redact(current)} answered HTTP {status} without a Location")
    if hops >= settings.max_redirects:
        raise DownloadError(f"{redact(current)}: more than {settings.max_redirects} redirects")
    try:
        target = current.join(URL(location))
    except ValueError:
        raise DownloadError(f"{redact(current)} redirected to an invalid URL") from None
    if why := _refusal(target, settings):
        raise DownloadError(
            f"{redact(current)} redirected to {redact(target)}, not followed: {why}"
        )
    return target


def too_large(limit: int) -> str:
    return f"larger than the limit of {limit:,} bytes for one module"


def evictions(sizes: Mapping[str, int], incoming: int, capacity: int) -> list[str] | None:
    """The cached entries to drop (least recently used first; `sizes` is in that order) so
    `incoming` bytes fit in `capacity`; None when it cannot fit at all (keep the rest)."""
    if incoming > capacity:
        return None
    free = capacity - sum(sizes.values())
    out = []
    for key, size in sizes.items():
        if free >= incoming:
            break
        out.append(key)
        free += size
    return out


class ModuleCache:
    """Downloaded modules by sha256, at most `capacity` bytes, least recently used out
    first. Content-addressed: an entry never goes stale, it only makes room."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: OrderedDict[str, bytes] = OrderedDict()

    def __contains__(self, key: str) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)

    @property
    def size(self) -> int:
        return sum(len(v) for v in self._items.values())

    def get(self, key: str) -> bytes | None:
        if key in self._items:
            self._items.move_to_end(key)
        return self._items.get(key)

    def put(self, key: str, content: bytes) -> None:
        if key in self._items:
            self._items.move_to_end(key)
            return
        drop = evictions({k: len(v) for k, v in self._items.items()}, len(content), self.capacity)
        if drop is None:
            return  # larger than the whole cache: used once, not kept
        for k in drop:
            del self._items[k]
        self._items[key] = content
