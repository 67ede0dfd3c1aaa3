"""url modules downloaded by the Resolver from real https servers on loopback addresses,
each with its own CA: large bodies whole, oversize ones refused, redirects to non-public
addresses refused, slow servers timed out, untrusted certificates refused, the cache
bounded. No apiserver: a Worker with only url modules reads nothing else."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edgeplane.api import Worker
from edgeplane.compile import CompileError, Sources, compile_worker
from edgeplane.localstack.pki import CertificateAuthority
from edgeplane.resolve.policy import MAX_URL_BYTES, UrlSettings
from edgeplane.resolve.sources import Resolver
from tests.url_server import FileServer, Route

MODULE = b"export default { fetch() { return new Response('hi'); } };\n"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> CertificateAuthority:
    return CertificateAuthority(tmp_path_factory.mktemp("url-ca"))


@pytest.fixture
def server(tmp_path: Path, pki: CertificateAuthority) -> Iterator[FileServer]:
    with FileServer(tmp_path, ca=pki) as s:
        yield s


def settings(pki: CertificateAuthority, **kw: Any) -> UrlSettings:
    """The test server's CA trusted and 127.0.0.1 allowed, nothing else non-public."""
    base: dict[str, Any] = {"ca_bundle": str(pki.pair.cert), "allowed_networks": ("127.0.0.1/32",)}
    return UrlSettings(**{**base, **kw})


def worker(*urls: tuple[str, bytes]) -> Worker:
    modules = [
        {"name": f"m{i}.js", "url": url, "sha256": hashlib.sha256(body).hexdigest()}
        for i, (url, body) in enumerate(urls)
    ]
    return Worker.model_validate({
        "metadata": {"name": "w", "namespace": "t", "uid": "u"},
        "spec": {"compatibilityDate": "2025-01-01", "modules": modules},
    })


async def sources(s: UrlSettings, w: Worker) -> Sources:
    """What a fresh Resolver (an empty cache) reads for `w`."""
    r = Resolver(kube=None, urls=s)  # type: ignore[arg-type]
    try:
        return await r.resolve(w)
    finally:
        await r.close()


async def resolve(s: UrlSettings, w: Worker) -> tuple[dict[str, bytes], dict[Any, str]]:
    got = await sources(s, w)
    return dict(got.urls), dict(got.url_errors)


async def only_error(s: UrlSettings, url: str, body: bytes = MODULE) -> str:
    urls, errors = await resolve(s, worker((url, body)))
    assert not urls and len(errors) == 1, (urls, errors)
    return next(iter(errors.values()))


def large_module(size: int) -> bytes:
    """JavaScript text of `size` bytes that no compression layer can shrink much."""
    return b"//" + os.urandom(size // 2).hex().encode()[: size - 3] + b"\n"


@pytest.mark.parametrize("length", [True, False], ids=["content-length", "until-eof"])
async def test_a_large_module_arrives_whole_and_compiles(
    server: FileServer, pki: CertificateAuthority, length: bool
) -> None:
    body = large_module(5_000_000)  # ~80 chunks of 64 KiB
    server.routes["/big.js"] = Route(body, length=length)
    w = worker((server.url("/big.js"), body))
    got = await sources(settings(pki), w)
    assert got.urls[hashlib.sha256(body).hexdigest()] == body
    bundle = compile_worker(w, got)
    assert len(bundle.modules[0].content) == len(body)


@pytest.mark.parametrize("length", [True, False], ids=["declared", "streamed"])
async def test_an_oversize_module_is_refused_naming_the_limit(
    server: FileServer, pki: CertificateAuthority, length: bool
) -> None:
    if length:  # refused from its Content-Length, before a byte of the body is read
        route = Route(b"", declared=MAX_URL_BYTES + 1, delay=0)
    else:  # no Content-Length: counted while read, refused once over
        route = Route(b"x" * (MAX_URL_BYTES + 1), length=False, chunk=1 << 20)
    server.routes["/huge.js"] = route
    why = await only_error(settings(pki), server.url("/huge.js"))
    assert "larger than the limit of 64,000,000 bytes" in why, why


async def test_the_error_reaches_the_condition_naming_the_field(
    server: FileServer, pki: CertificateAuthority
) -> None:
    server.routes["/gone.js"] = Route(b"", status=404)
    w = worker((server.url("/gone.js"), MODULE))
    got = await sources(settings(pki), w)
    with pytest.raises(CompileError) as e:
        compile_worker(w, got)
    assert e.value.reason == "SourceNotFound"
    assert e.value.message == (
        f"spec.modules[0].url (m0.js): {server.url('/gone.js')}: "
        "the server answered HTTP 404 Not Found"
    )


@pytest.mark.parametrize(
    ("location", "refused"),
    [
        ("https://10.0.0.1/m.js", "10.0.0.1, a private address, is refused"),
        ("https://169.254.169.254/latest/meta-data/", "169.254.169.254, a link-local address"),
        ("https://127.0.0.2:{port}/m.js", "127.0.0.2, a loopback address, is refused"),
        ("https://[::ffff:169.254.169.254]/x", "(that is 169.254.169.254), a link-local"),
        ("http://127.0.0.1:{port}/m.js", "only https is downloaded"),
    ],
)
async def test_a_redirect_to_a_refused_address_is_not_followed(
    server: FileServer, pki: CertificateAuthority, location: str, refused: str
) -> None:
    server.routes["/r"] = Route(status=302, headers=(("Location", location.format(
        port=server.port)),))
    server.routes["/m.js"] = Route(MODULE)
    why = await only_error(settings(pki), server.url("/r?sig=s3cret"))
    assert refused in why, why
    assert "s3cret" not in why
    assert server.hits["/m.js"] == 0


async def test_a_name_resolving_to_loopback_is_refused_at_connect(
    server: FileServer, pki: CertificateAuthority
) -> None:
    server.routes["/m.js"] = Route(MODULE)
    why = await only_error(settings(pki, allowed_networks=()), server.url("/m.js", "localhost"))
    assert why.startswith(f"{server.url('/m.js', 'localhost')}: localhost resolves to 127.0.0.1")
    assert server.hits["/m.js"] == 0
    ok = settings(pki, allowed_networks=("127.0.0.0/8", "::1/128"))
    urls, _ = await resolve(ok, worker((server.url("/m.js", "localhost"), MODULE)))
    assert list(urls.values()) == [MODULE]


async def test_allowing_private_addresses_follows_the_redirect(
    tmp_path: Path, server: FileServer, pki: CertificateAuthority
) -> None:
    with FileServer(tmp_path / "other", host="127.0.0.2", ca=pki) as other:
        other.routes["/m.js"] = Route(MODULE)
        server.routes["/r"] = Route(status=307, headers=(("Location", other.url("/m.js")),))
        s = settings(pki, allowed_networks=(), allow_private=True)
        urls, errors = await resolve(s, worker((server.url("/r"), MODULE)))
        assert (list(urls.values()), errors) == ([MODULE], {})
        assert other.hits["/m.js"] == 1


async def test_redirects_stop_after_the_limit(
    server: FileServer, pki: CertificateAuthority
) -> None:
    server.routes["/loop"] = Route(status=302, headers=(("Location", "/loop"),))
    why = await only_error(settings(pki), server.url("/loop"))
    assert "more than 5 redirects" in why
    assert server.hits["/loop"] == 6


async def test_a_slow_server_hits_the_timeout(
    server: FileServer, pki: CertificateAuthority
) -> None:
    server.routes["/slow.js"] = Route(MODULE, delay=30)
    started = time.monotonic()
    why = await only_error(settings(pki, timeout=0.5), server.url("/slow.js"))
    assert time.monotonic() - started < 5
    assert why == f"{server.url('/slow.js')}: not downloaded within 0.5s " \
        "(the operator's --url-timeout)"


@pytest.mark.parametrize("bundle", ["other-ca", "none"])
async def test_a_certificate_from_an_untrusted_ca_fails_tls(
    tmp_path: Path, server: FileServer, pki: CertificateAuthority, bundle: str
) -> None:
    other = CertificateAuthority(tmp_path / "other-ca")
    ca = str(other.pair.cert) if bundle == "other-ca" else None
    server.routes["/m.js"] = Route(MODULE)
    why = await only_error(settings(pki, ca_bundle=ca), server.url("/m.js"))
    # Both CAs have the same name: OpenSSL finds the other as issuer, and its signature fails.
    assert f"{server.url('/m.js')}: TLS failed: certificate not trusted (" in why, why
    assert server.hits["/m.js"] == 0


async def test_downloads_run_concurrently_within_a_budget(
    server: FileServer, pki: CertificateAuthority
) -> None:
    bodies = [MODULE + bytes([i]) for i in range(6)]
    for i, body in enumerate(bodies):
        server.routes[f"/{i}.js"] = Route(body, delay=1.0)
    urls = [(server.url(f"/{i}.js"), b) for i, b in enumerate(bodies)]
    started = time.monotonic()
    got, errors = await resolve(settings(pki, concurrency=3), worker(*urls))
    assert len(got) == 6 and not errors
    assert server.state.peak == 3  # two rounds of three, not six at once nor one by one
    assert time.monotonic() - started < 4.5
    # One at a time within 2.5s: two or three arrive, the rest are out of budget.
    got, errors = await resolve(settings(pki, concurrency=1, budget=2.5), worker(*urls))
    assert 2 <= len(got) <= 3 and len(got) + len(errors) == 6
    assert set(errors.values()) == {
        "not downloaded: this Worker's downloads took over 2.5s in all"
    }


async def test_the_cache_keeps_modules_within_its_bytes(
    server: FileServer, pki: CertificateAuthority
) -> None:
    a, b = large_module(2_000_000), large_module(2_000_000)
    server.routes["/a.js"], server.routes["/b.js"] = Route(a), Route(b)
    r = Resolver(kube=None, urls=settings(pki, cache_bytes=3_000_000))  # type: ignore[arg-type]
    wa, wb = worker((server.url("/a.js"), a)), worker((server.url("/b.js"), b))
    try:
        for w in (wa, wa, wb, wb, wa):
            assert len((await r.resolve(w)).urls) == 1
    finally:
        await r.close()
    # a once, then from the cache; b made room by dropping a, so a came back once more.
    assert (server.hits["/a.js"], server.hits["/b.js"]) == (2, 1)
    assert r.url_cache.size <= 3_000_000


async def test_a_checksum_mismatch_is_reported_and_not_cached(
    server: FileServer, pki: CertificateAuthority
) -> None:
    server.routes["/m.js"] = Route(b"changed")
    w = worker((server.url("/m.js"), MODULE))
    r = Resolver(kube=None, urls=settings(pki))  # type: ignore[arg-type]
    try:
        for _ in range(2):
            with pytest.raises(CompileError, match="does not match"):
                compile_worker(w, await r.resolve(w))
    finally:
        await r.close()
    assert server.hits["/m.js"] == 2 and len(r.url_cache) == 0

