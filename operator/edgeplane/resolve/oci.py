"""A small OCI distribution client on aiohttp (I/O): pull one layer of a manifest by
digest, and push an artifact. Every answer is checked against the digest that names it,
each request has a timeout, and retries are the caller's (the work queue's backoff).

Why not oras-py: it is synchronous (a thread per pull), sends requests with no timeout,
retries a failed call for about two minutes by itself, and does not check digests; an
adapter would have to replace all of that, leaving only the HTTP calls below.

Errors are ArtifactError, whose message names the reference and never the credentials:
they are sent only in Authorization headers, which no message quotes."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Mapping, Sequence

import aiohttp
from yarl import URL

from edgeplane.resolve.artifact import (
    DIGEST_MISMATCH,
    MANIFEST_TYPES,
    MAX_MANIFEST_BYTES,
    NOT_FOUND,
    PULL_FIX,
    TOO_LARGE,
    UNAVAILABLE,
    ArtifactRef,
    Credentials,
    challenge,
    digest_of,
    module_manifest,
    pick_layer,
    refusal,
)
from edgeplane.resolve.download import checked_session, explain, read_capped
from edgeplane.resolve.policy import DownloadError, UrlSettings


class ArtifactError(Exception):
    """Why an artifact could not be read: a reason (one of the above) and a message that
    starts with the reference."""

    def __init__(self, reason: str, ref: str, why: str, status: int | None = None) -> None:
        super().__init__(f"{ref}: {why}")
        self.reason = reason
        self.ref = ref
        self.message = f"{ref}: {why}"
        self.status = status  # the registry's HTTP answer; None: it gave none

    @property
    def retry(self) -> bool:
        return self.reason == UNAVAILABLE


class OciClient:
    """One HTTP client for all registries, made on first use; the same address policy,
    CA bundle and size cap as url modules (UrlSettings)."""

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

    async def _send(
        self, method: str, url: str, auth: str | None, headers: Mapping[str, str], body: bytes
    ) -> tuple[int, Mapping[str, str], bytes]:
        hdrs = {**headers, **({"Authorization": auth} if auth else {})}
        # Redirects (to a registry's blob storage) are followed: aiohttp drops the
        # Authorization header when one leaves the origin, and content is checked by digest.
        async with self._session().request(method, url, headers=hdrs, data=body or None) as resp:
            content = await read_capped(resp, self.settings.max_bytes) if method != "HEAD" else b""
            return resp.status, dict(resp.headers), content

    async def _token(self, params: Mapping[str, str], creds: Credentials | None) -> str:
        """A bearer token from the registry's token service (the Docker token protocol)."""
        realm = params.get("realm", "")
        if not realm.startswith("https://"):
            raise DownloadError("the registry's token service is not https")
        query = {k: params[k] for k in ("service", "scope") if k in params}
        status, _, content = await self._send(
            "GET", str(URL(realm).with_query(query)), _basic(creds), {}, b""
        )
        if status != 200:
            raise DownloadError(f"the registry's token service answered HTTP {status}")
        try:
            doc = json.loads(content)
            return str(doc.get("token") or doc["access_token"])
        except (ValueError, KeyError, AttributeError):
            raise DownloadError("the registry's token service answered no token") from None

    async def request(
        self,
        method: str,
        url: str,
        creds: Credentials | None,
        headers: Mapping[str, str] | None = None,
        body: bytes = b"",
    ) -> tuple[int, Mapping[str, str], bytes]:
        """One request, answering the registry's auth challenge once, within the timeout."""
        async with asyncio.timeout(self.settings.timeout):
            hdrs = dict(headers or {})
            auth = f"Bearer {creds.token}" if creds and creds.token else None
            status, rh, content = await self._send(method, url, auth, hdrs, body)
            if status != 401 or auth is not None:
                return status, rh, content
            scheme, params = challenge(rh.get("WWW-Authenticate", ""))
            if scheme == "basic" and creds is not None:
                return await self._send(method, url, _basic(creds), hdrs, body)
            if scheme == "bearer":
                token = await self._token(params, creds)
                return await self._send(method, url, f"Bearer {token}", hdrs, body)
            return status, rh, content

    async def _checked(
        self,
        method: str,
        url: str,
        ref: ArtifactRef,
        creds: Credentials | None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, bytes]:
        """`request`, its failures said as ArtifactErrors naming `ref`."""
        try:
            status, _, content = await self.request(method, url, creds, headers or {})
        except TimeoutError:
            raise ArtifactError(
                UNAVAILABLE, str(ref), f"no answer within {self.settings.timeout:g}s"
            ) from None
        except aiohttp.ClientError as e:
            raise ArtifactError(UNAVAILABLE, str(ref), str(explain(e, "registry"))) from None
        except DownloadError as e:
            reason = TOO_LARGE if "larger than" in str(e) else UNAVAILABLE
            raise ArtifactError(reason, str(ref), str(e)) from None
        return status, content

    async def _get(
        self, ref: ArtifactRef, what: str, creds: Credentials | None, fix: str = PULL_FIX
    ) -> bytes:
        url = f"https://{ref.host}/v2/{ref.repository}/{what}"
        accept = {"Accept": ", ".join(MANIFEST_TYPES)} if what.startswith("manifests/") else {}
        status, content = await self._checked("GET", url, ref, creds, accept)
        if status == 200:
            return content
        reason, why = refusal(
            status, "manifest" if what.startswith("manifests/") else "layer", fix
        )
        raise ArtifactError(reason, str(ref), why)

    async def blob(
        self, ref: ArtifactRef, digest: str, creds: Credentials | None, fix: str = PULL_FIX
    ) -> bytes:
        """One blob of the repository `ref` names, by digest, checked against it."""
        content = await self._get(ref, f"blobs/{digest}", creds, fix)
        if digest_of(content) != digest:
            raise ArtifactError(
                DIGEST_MISMATCH, str(ref), f"layer {digest} does not match its digest; refused"
            )
        return content

    async def delete(self, ref: ArtifactRef, creds: Credentials | None, fix: str) -> None:
        """Delete the manifest `ref` names (and so its tags); one already gone is fine."""
        url = f"https://{ref.host}/v2/{ref.repository}/manifests/{ref.digest}"
        status, _ = await self._checked("DELETE", url, ref, creds)
        if status not in (202, 404):
            raise ArtifactError(
                UNAVAILABLE, str(ref), refusal(status, "manifest", fix)[1], status=status
            )

    async def pull(
        self, ref: ArtifactRef, files: Sequence[str], creds: Credentials | None
    ) -> dict[str, bytes | ArtifactError]:
        """The content of each layer titled in `files` of the manifest `ref` names (read
        once), both digests checked; ArtifactError for the manifest, or per layer."""
        manifest = await self._manifest(ref, creds)
        out: dict[str, bytes | ArtifactError] = {}
        for file in files:
            try:
                out[file] = await self._layer(ref, manifest, file, creds)
            except ArtifactError as e:
                out[file] = e
        return out

    async def _manifest(self, ref: ArtifactRef, creds: Credentials | None) -> bytes:
        manifest = await self._get(ref, f"manifests/{ref.digest}", creds)
        if len(manifest) > MAX_MANIFEST_BYTES:
            raise ArtifactError(TOO_LARGE, str(ref), "the manifest is too large to be one")
        if digest_of(manifest) != ref.digest:
            raise ArtifactError(
                DIGEST_MISMATCH, str(ref), f"the registry answered a manifest of digest "
                f"{digest_of(manifest)}; refused"
            )
        return manifest

    async def _layer(
        self, ref: ArtifactRef, manifest: bytes, file: str, creds: Credentials | None
    ) -> bytes:
        try:
            layer = pick_layer(manifest, file)
        except ValueError as e:
            raise ArtifactError(NOT_FOUND, str(ref), str(e)) from None
        if layer.size > self.settings.max_bytes:
            raise ArtifactError(
                TOO_LARGE, str(ref), f"layer {file!r} is {layer.size} bytes, over the "
                f"operator's limit of {self.settings.max_bytes}"
            )
        content = await self._get(ref, f"blobs/{layer.digest}", creds)
        if digest_of(content) != layer.digest:
            raise ArtifactError(
                DIGEST_MISMATCH, str(ref), f"layer {file!r} does not match its digest "
                f"{layer.digest}; refused"
            )
        return content

    async def push(
        self,
        host: str,
        repository: str,
        tag: str | None,
        layers: Sequence[tuple[str, str, bytes]],
        config: bytes,
        creds: Credentials | None,
        annotations: Mapping[str, str] | None = None,
    ) -> str:
        """Upload the blobs the registry does not have yet and the manifest; its digest."""
        base = f"https://{host}/v2/{repository}"
        for blob in [config, *(content for _, _, content in layers)]:
            await self._upload(base, blob, creds)
        manifest = module_manifest(layers, config, annotations or {})
        digest = digest_of(manifest)
        status, _, _ = await self.request(
            "PUT", f"{base}/manifests/{tag or digest}", creds,
            {"Content-Type": MANIFEST_TYPES[0]}, manifest,
        )
        if status != 201:
            raise DownloadError(f"{host}/{repository}: the manifest upload answered HTTP {status}")
        return digest

    async def _upload(self, base: str, blob: bytes, creds: Credentials | None) -> None:
        digest = digest_of(blob)
        status, _, _ = await self.request("HEAD", f"{base}/blobs/{digest}", creds)
        if status == 200:
            return  # content-addressed: already there
        status, headers, _ = await self.request("POST", f"{base}/blobs/uploads/", creds)
        location = headers.get("Location")
        if status != 202 or not location:
            raise DownloadError(f"{base}: starting an upload answered HTTP {status}")
        url = URL(base).join(URL(location)).update_query(digest=digest)
        status, _, _ = await self.request(
            "PUT", str(url), creds, {"Content-Type": "application/octet-stream"}, blob
        )
        if status != 201:
            raise DownloadError(f"{base}: a blob upload answered HTTP {status}")


def _basic(creds: Credentials | None) -> str | None:
    if creds is None or not creds.username:
        return None
    pair = f"{creds.username}:{creds.password}".encode()
    return "Basic " + base64.b64encode(pair).decode()

