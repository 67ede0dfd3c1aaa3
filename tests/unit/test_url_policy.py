"""The url-module decisions: which addresses the operator connects to, which redirects it
follows, what its messages show, and which cached modules make room."""

from __future__ import annotations

import socket

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from edgeplane.resolve.download import CheckedResolver, RefusedAddress
from edgeplane.resolve.policy import (
    DownloadError,
    ModuleCache,
    UrlSettings,
    address_refusal,
    check_target,
    evictions,
    redact,
    redirect_target,
)

DEFAULT = UrlSettings()
PRIVATE_OK = UrlSettings(allow_private=True)
ONE_HOST = UrlSettings(allowed_networks=("127.0.0.1/32", "fd00:1::/64"))


@pytest.mark.parametrize(
    ("address", "settings", "refused"),
    [
        ("8.8.8.8", DEFAULT, None),
        ("2606:4700::1111", DEFAULT, None),
        ("172.32.0.1", DEFAULT, None),  # just past 172.16/12
        ("127.0.0.1", DEFAULT, "127.0.0.1, a loopback address"),
        ("127.9.9.9", DEFAULT, "loopback"),
        ("::1", DEFAULT, "::1, a loopback address"),
        ("10.1.2.3", DEFAULT, "private"),
        ("172.31.255.255", DEFAULT, "private"),
        ("192.168.0.1", DEFAULT, "private"),
        ("fd12::1", DEFAULT, "private (unique local)"),
        ("169.254.169.254", DEFAULT, "169.254.169.254, a link-local address"),  # metadata
        ("fe80::1%eth0", DEFAULT, "fe80::1, a link-local address"),
        ("100.64.0.1", DEFAULT, "shared (carrier-grade NAT)"),
        ("0.0.0.0", DEFAULT, "0.0.0.0, an unspecified address"),
        ("::", DEFAULT, "unspecified"),
        ("224.0.0.251", DEFAULT, "multicast"),
        ("ff02::1", DEFAULT, "multicast"),
        ("255.255.255.255", DEFAULT, "reserved"),
        ("240.0.0.1", DEFAULT, "reserved"),
        ("192.0.2.1", DEFAULT, "documentation"),
        ("2001:db8::1", DEFAULT, "documentation"),
        ("2001::1", DEFAULT, "reserved"),  # Teredo
        # IPv6 forms that reach an IPv4 address are judged by that address.
        ("::ffff:127.0.0.1", DEFAULT, "::ffff:7f00:1 (that is 127.0.0.1), a loopback"),
        ("::ffff:a9fe:a9fe", DEFAULT, "(that is 169.254.169.254), a link-local"),
        ("::ffff:8.8.8.8", DEFAULT, None),
        ("64:ff9b::a00:1", DEFAULT, "(that is 10.0.0.1), a private"),
        ("2002:c0a8:1::1", DEFAULT, "(that is 192.168.0.1), a private"),
        ("::127.0.0.1", DEFAULT, "reserved"),  # IPv4-compatible, deprecated
        # The flag allows every non-public address; a network list allows just those.
        ("127.0.0.1", PRIVATE_OK, None),
        ("169.254.169.254", PRIVATE_OK, None),
        ("127.0.0.1", ONE_HOST, None),
        ("::ffff:127.0.0.1", ONE_HOST, None),
        ("127.0.0.2", ONE_HOST, "127.0.0.2, a loopback address"),
        ("10.0.0.1", ONE_HOST, "private"),
        ("fd00:1::5", ONE_HOST, None),
        ("fd00:2::5", ONE_HOST, "private (unique local)"),
        ("example.com", DEFAULT, "not an IP"),
    ],
)
def test_address_refusal(address: str, settings: UrlSettings, refused: str | None) -> None:
    why = address_refusal(address, settings)
    if refused is None:
        assert why is None
    else:
        assert why is not None and refused in why


HERE = URL("https://files.example/lib/a.js?token=s3cret")


@pytest.mark.parametrize(
    ("status", "location", "hops", "settings", "outcome"),
    [
        (302, "https://cdn.example/a.js", 0, DEFAULT, "https://cdn.example/a.js"),
        (301, "/v2/a.js", 0, DEFAULT, "https://files.example/v2/a.js"),
        (307, "b.js", 4, DEFAULT, "https://files.example/lib/b.js"),
        (308, "//mirror.example/a.js", 0, DEFAULT, "https://mirror.example/a.js"),
        (302, "https://cdn.example/a.js", 5, DEFAULT, "more than 5 redirects"),
        (302, None, 0, DEFAULT, "answered HTTP 302 without a Location"),
        (302, "http://cdn.example/a.js", 0, DEFAULT, "only https is downloaded"),
        (302, "ftp://cdn.example/a.js", 0, DEFAULT, "only https is downloaded"),
        (302, "https://127.0.0.1/a.js", 0, DEFAULT, "127.0.0.1, a loopback address"),
        (302, "https://10.0.0.1/a.js", 0, DEFAULT, "10.0.0.1, a private address"),
        (303, "https://169.254.169.254/latest/meta-data/", 0, DEFAULT, "link-local"),
        (302, "https://[::ffff:7f00:1]/a.js", 0, DEFAULT, "(that is 127.0.0.1)"),
        (302, "https://10.0.0.1/a.js", 0, PRIVATE_OK, "https://10.0.0.1/a.js"),
        (302, "https://127.0.0.1:8443/a.js", 0, ONE_HOST, "https://127.0.0.1:8443/a.js"),
        (302, "https://127.0.0.2:8443/a.js", 0, ONE_HOST, "127.0.0.2, a loopback address"),
    ],
)
def test_redirect_target(
    status: int, location: str | None, hops: int, settings: UrlSettings, outcome: str
) -> None:
    try:
        target = str(redirect_target(HERE, status, location, hops, settings))
    except DownloadError as e:
        assert outcome in str(e)
        assert "s3cret" not in str(e)  # the query may carry a signature
    else:
        assert target == outcome


def test_a_refused_redirect_names_both_ends() -> None:
    with pytest.raises(DownloadError) as e:
        redirect_target(HERE, 302, "https://10.0.0.1/x?sig=abc", 0, DEFAULT)
    assert str(e.value).startswith(
        "https://files.example/lib/a.js redirected to https://10.0.0.1/x, not followed: "
        "10.0.0.1, a private address, is refused;"
    )
    assert "--url-allow-private" in str(e.value)


@pytest.mark.parametrize(
    ("url", "settings", "refused"),
    [
        ("https://files.example/a.js", DEFAULT, None),
        ("http://files.example/a.js", DEFAULT, "only https"),
        ("https://127.0.0.1:8443/a.js", DEFAULT, "loopback"),
        ("https://[::1]/a.js", DEFAULT, "loopback"),
        ("https://127.0.0.1:8443/a.js", ONE_HOST, None),
        ("https://localhost/a.js", DEFAULT, None),  # a name: checked when resolved
    ],
)
def test_check_target(url: str, settings: UrlSettings, refused: str | None) -> None:
    if refused is None:
        assert str(check_target(url, settings)) == url
    else:
        with pytest.raises(DownloadError, match=refused):
            check_target(url, settings)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://files.example/a.js", "https://files.example/a.js"),
        ("https://u:pw@files.example:8443/a.js?X-Amz-Signature=f00#x",
         "https://files.example:8443/a.js"),
    ],
)
def test_redact(url: str, shown: str) -> None:
    assert redact(url) == shown


@pytest.mark.parametrize(
    ("sizes", "incoming", "capacity", "dropped"),
    [
        ({}, 5, 10, []),
        ({"a": 3, "b": 3}, 4, 10, []),  # fits as is
        ({"a": 3, "b": 3}, 5, 10, ["a"]),  # the least recently used goes first
        ({"a": 3, "b": 3, "c": 3}, 9, 10, ["a", "b", "c"]),
        ({"a": 1, "b": 8}, 2, 10, ["a"]),  # only as many as needed
        ({"a": 3}, 10, 10, ["a"]),  # exactly the whole cache
        ({"a": 3}, 11, 10, None),  # never fits: the cache is left alone
    ],
)
def test_evictions(
    sizes: dict[str, int], incoming: int, capacity: int, dropped: list[str] | None
) -> None:
    assert evictions(sizes, incoming, capacity) == dropped


def test_module_cache_keeps_the_recently_used_within_its_bytes() -> None:
    cache = ModuleCache(10)
    cache.put("a", b"aaaa")
    cache.put("b", b"bbbb")
    assert cache.get("a") == b"aaaa"  # now b is the least recently used
    cache.put("c", b"cccc")
    assert "b" not in cache and "a" in cache and "c" in cache
    assert cache.size == 8
    cache.put("huge", b"x" * 11)
    assert "huge" not in cache and len(cache) == 2  # too large: used once, nothing evicted


class _Answers(AbstractResolver):
    def __init__(self, *addresses: str) -> None:
        self.addresses = addresses

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [
            ResolveResult(hostname=host, host=a, port=port, family=family, proto=0, flags=0)
            for a in self.addresses
        ]

    async def close(self) -> None:
        pass


@pytest.mark.parametrize(
    ("addresses", "refused"),
    [
        (("93.184.215.14",), None),
        (("93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"), None),
        # One refused address refuses the name: the connector might pick any of them.
        (("93.184.215.14", "10.0.0.7"), "evil.example resolves to 10.0.0.7, a private"),
        (("169.254.169.254",), "evil.example resolves to 169.254.169.254, a link-local"),
    ],
)
async def test_the_resolver_refuses_a_name_with_a_refused_address(
    addresses: tuple[str, ...], refused: str | None
) -> None:
    resolver = CheckedResolver(DEFAULT, inner=_Answers(*addresses))
    if refused is None:
        got = await resolver.resolve("evil.example", 443)
        assert [r["host"] for r in got] == list(addresses)
    else:
        with pytest.raises(RefusedAddress, match=refused):
            await resolver.resolve("evil.example", 443)
