"""Download one url module (I/O): https only, to public addresses only (unless allowed),
redirects followed one by one under the same checks, read to the end under a size cap and
within a timeout. Every failure is a DownloadError saying what happened."""

from __future__ import annotations

import asyncio
import socket
import ssl

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from edgeplane.resolve.policy import (
    REDIRECT_STATUSES,
    DownloadError,
    UrlSettings,
    address_refusal,
    check_target,
    redact,
    redirect_target,
    refused_address_message,
    too_large,
)

CHUNK = 1 << 16


class RefusedAddress(OSError):
    """A host resolved to an address the operator may not connect to."""


class CheckedResolver(AbstractResolver):
    """aiohttp's resolver, refusing a host if any of its addresses is not allowed. The
    connector connects only to what this returns, so an answer that changes between the
    check and the connection (DNS rebinding) cannot reach a refused address."""

    def __init__(self, settings: UrlSettings, inner: AbstractResolver | None = None) -> None:
        self.settings = settings
        self.inner = inner or DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self.inner.resolve(host, port, family)
        for r in results:
            if why := address_refusal(r["host"], self.settings):
                raise RefusedAddress(refused_address_message(host, why))
        return results

    async def close(self) -> None:
        await self.inner.close()


def tls_context(ca_bundle: str | None) -> ssl.SSLContext:
    """The system's CAs, and those of `ca_bundle` (a PEM file) too."""
    ctx = ssl.create_default_context()
    if ca_bundle:
        ctx.load_verify_locations(cafile=ca_bundle)
    return ctx


def explain(e: aiohttp.ClientError, where: str) -> DownloadError:
    """What an aiohttp error means for the user, without the request's headers or query."""
    if isinstance(e, aiohttp.ClientConnectorCertificateError):
        cert = e.certificate_error
        detail = getattr(cert, "verify_message", None) or cert.__class__.__name__
        return DownloadError(f"{where}: TLS failed: certificate not trusted ({detail})")
    if isinstance(e, aiohttp.ClientSSLError):
        return DownloadError(f"{where}: TLS failed: {e.os_error.strerror or e.os_error}")
    if isinstance(e, aiohttp.ClientConnectorError):
        if isinstance(e.os_error, RefusedAddress):
            return DownloadError(f"{where}: {e.os_error}")
        if isinstance(e.os_error, socket.gaierror):
            return DownloadError(f"{where}: the host name could not be resolved")
        return DownloadError(f"{where}: cannot connect ({e.os_error.strerror or e.os_error})")
    if isinstance(e, aiohttp.ClientPayloadError):
        return DownloadError(f"{where}: the answer broke off before its end")
    if isinstance(e, aiohttp.InvalidURL):
        return DownloadError(f"{where}: not a valid URL")
    return DownloadError(f"{where}: {e.__class__.__name__}")


async def read_capped(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    """The whole body, to its end, refusing it once it passes `limit` bytes (or says it
    will): a body may arrive in any number of chunks, and a server may lie."""
    if resp.content_length is not None and resp.content_length > limit:
        raise DownloadError(too_large(limit))
    chunks, size = [], 0
    async for chunk in resp.content.iter_chunked(CHUNK):
        size += len(chunk)
        if size > limit:
            raise DownloadError(too_large(limit))
        chunks.append(chunk)
    return b"".join(chunks)


def checked_session(settings: UrlSettings) -> aiohttp.ClientSession:
    """An HTTP client under the url policy: addresses checked when resolved, the CA bundle
    trusted; the caller bounds each request with `settings.timeout`."""
    connector = aiohttp.TCPConnector(
        resolver=CheckedResolver(settings), ssl=tls_context(settings.ca_bundle)
    )
    # No proxy from the environment: a proxy would resolve and connect unchecked.
    return aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=None), trust_env=False
    )


class Downloader:
    """One HTTP client for all url modules; made when the first is downloaded."""

    def __init__(self, settings: UrlSettings) -> None:
        self.settings = settings
        self._http: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()

    def _session(self) -> aiohttp.ClientSession:
        if self._http is None:
            self._http = checked_session(self.settings)
        return self._http

    async def fetch(self, url: str) -> bytes:
        """The body at `url`, or DownloadError saying why not."""
        timeout = self.settings.timeout
        try:
            async with asyncio.timeout(timeout):
                return await self._follow(url)
        except TimeoutError:
            raise DownloadError(
                f"{redact(url)}: not downloaded within {timeout:g}s (the operator's --url-timeout)"
            ) from None

    async def _follow(self, url: str) -> bytes:
        s = self.settings
        target = check_target(url, s)  # a literal address never reaches the resolver
        for hops in range(s.max_redirects + 1):
            where = redact(target) if hops == 0 else f"redirected to {redact(target)}"
            try:
                async with self._session().get(target, allow_redirects=False) as resp:
                    if resp.status in REDIRECT_STATUSES:
                        location = resp.headers.get("Location")
                        target = redirect_target(target, resp.status, location, hops, s)
                        continue
                    if resp.status != 200:
                        said = f"HTTP {resp.status} {resp.reason or ''}".strip()
                        raise DownloadError(f"{where}: the server answered {said}")
                    try:
                        return await read_capped(resp, s.max_bytes)
                    except DownloadError as e:
                        raise DownloadError(f"{where}: {e}") from None
            except aiohttp.ClientError as e:
                raise explain(e, where) from None
        raise AssertionError("redirect_target refuses one hop too many")  # pragma: no cover

