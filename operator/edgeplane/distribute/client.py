"""Client of the edge agent's HTTP API (/v1), one call per operation, no retries here:
the work queue owns retries and backoff."""

from __future__ import annotations

import asyncio
import gzip
import json
import random
import ssl
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp

from edgeplane.api import Probe
from edgeplane.budget import ByteBudget
from edgeplane.distribute.tls import ClientCertificate, ClientTls, client_tls
from edgeplane.kube import fence
from edgeplane.plan.rollout import ProbeResult
from edgeplane.report import metrics
from edgeplane.wire import (
    DECODED_LENGTH_HEADER,
    ROLLOUT_VERSIONS,
    Deployment,
    Exclusions,
    InventoryChanges,
    blobs_of,
    gzip_worthy,
    inventory_changes,
    retry_after_seconds,
)

# A health check or inventory answer is small and quick; an agent that accepts the
# connection but does not answer within this (e.g. while shutting down) is unreachable.
HEALTH_TIMEOUT = 5.0
# Push bodies held at once, across every Worker and location: the rest wait their turn.
DEFAULT_BYTES_IN_FLIGHT = 256 * 1024 * 1024
# How long a push keeps coming back to an agent that answers "busy, retry after"; then it
# fails as a server error and the Worker is retried with backoff, so a busy location does
# not hold a reconcile (and a slot of the work queue) for long.
BUSY_PATIENCE = 30.0
# Blobs sent to one location at once.
BLOB_CONCURRENCY = 4
# Seconds a live-log stream may be silent before it is taken as lost (the agent pings).
TAIL_SILENCE = 30.0


def _module_blobs(d: Deployment, wanted: set[str]) -> dict[str, bytes]:
    """sha256 → bytes of the modules of `d` in `wanted`."""
    out: dict[str, bytes] = {}
    for b in d.versions:
        for m in b.modules:
            if m.content is not None and (sha := m.digest()) in wanted:
                out[sha] = m.raw()
    return out


@dataclass
class PushBody:
    """A deployment as sent: its JSON, gzipped when large, and what it holds of the budget."""

    data: bytes
    decoded: int  # length of the JSON
    encoded: bool
    held: int = 0

    def headers(self) -> dict[str, str]:
        if not self.encoded:
            return {}
        return {"Content-Encoding": "gzip", DECODED_LENGTH_HEADER: str(self.decoded)}


def encode(deployment: Deployment) -> PushBody:
    """Serialize and compress (CPU-bound: run in a thread; zlib lets go of the GIL)."""
    raw = deployment.model_dump_json(by_alias=True, exclude_none=True).encode()
    if not gzip_worthy(len(raw)):
        return PushBody(raw, len(raw), False)
    return PushBody(gzip.compress(raw, compresslevel=1), len(raw), True)


def weight(deployment: Deployment) -> int:
    """About the JSON's length, known before serializing it: what a push reserves."""
    content = sum(len(m.content or "") for v in deployment.versions for m in v.modules)
    return content + 64 * 1024 * len(deployment.versions)


@dataclass
class _Shared:
    """One deployment's body, encoded once for all the locations it goes to at once."""

    task: asyncio.Task[PushBody]
    users: int = field(default=0)


@dataclass(frozen=True)
class Endpoint:
    """One EdgeTarget's agent, with its credentials resolved."""

    target: str
    url: str
    token: str
    ca_bundle: str | None = None
    client_certificate: ClientCertificate | None = None

    def __repr__(self) -> str:  # never print the token or the key
        return f"Endpoint({self.target!r}, {self.url!r})"


class AgentError(Exception):
    pass


class Unreachable(AgentError):
    """The agent did not answer, or answered with a server error: retry later. `reason`
    names why in a word for the EdgeTarget's status (e.g. TLSVerifyFailed)."""

    def __init__(self, message: str, reason: str = "Unreachable", sent: bool = False) -> None:
        super().__init__(message)
        self.reason = reason
        # The request may have reached the agent unanswered (not a refused connection).
        self.sent = sent


class ServerError(Unreachable):
    """The agent answered with a server error (e.g. 503 while its front reloads, or a full
    disk): retry later, but the location is up; only a failed health check or a transport
    error says it is not. `retry_after`: the seconds the agent asked to wait, if it did."""

    def __init__(self, status: int, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class Refused(AgentError):
    """The agent answered and refused the request: retrying the same input is useless."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class AgentClient:
    def __init__(
        self, timeout: float = 120.0, bytes_in_flight: int = DEFAULT_BYTES_IN_FLIGHT
    ) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout, connect=5)
        self.budget = ByteBudget(bytes_in_flight)
        self._bodies: dict[tuple[str, str, bool], _Shared] = {}
        self._session: aiohttp.ClientSession | None = None
        self._ssl: dict[ClientTls, ssl.SSLContext] = {}
        # sha256 -> bytes of the blobs (assets' files) of the versions compiled here; a
        # location is sent those it does not hold before a deployment that needs them.
        self.blobs: dict[str, bytes] = {}
        self._sites: dict[str, list[frozenset[str]]] = {}  # Worker -> its last sites' blobs
        # sha256 -> how many sites (of all Workers) hold it: a blob goes with its last site
        # without a scan of every Worker's sites at each compile.
        self._holds: Counter[str] = Counter()

    async def close(self) -> None:
        if self._session:
            await self._session.close()
            self._session = None

    def _ssl_for(self, ep: Endpoint) -> ssl.SSLContext | bool:
        settings = client_tls(ep.url, ep.ca_bundle, ep.client_certificate)
        if settings is None or settings.default:
            return True  # plain http, or the system's trust store
        ctx = self._ssl.get(settings)
        if ctx is None:
            ctx = ssl_context(settings)
            self._ssl[settings] = ctx
        return ctx

    async def _call(
        self,
        ep: Endpoint,
        method: str,
        path: str,
        body: bytes | None = None,
        max_seconds: float | None = None,
        extra: dict[str, str] | None = None,
    ) -> Any:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        headers = {"Authorization": f"Bearer {ep.token}", **(extra or {})}
        if body is not None:
            headers["Content-Type"] = "application/json"
        url = ep.url.rstrip("/") + path
        try:
            async with self._session.request(
                method,
                url,
                data=body,
                headers=headers,
                ssl=self._ssl_for(ep),
                timeout=aiohttp.ClientTimeout(total=max_seconds, connect=5)
                if max_seconds
                else self._timeout,
            ) as resp:
                text = await resp.text()
                if resp.status >= 500:
                    message = f"{ep.target}: agent answered {resp.status}: {_msg(text)}"
                    wait = retry_after_seconds(resp.headers.get("Retry-After"))
                    raise ServerError(resp.status, message, wait)
                if resp.status >= 400:
                    raise Refused(resp.status, _msg(text))
                return json.loads(text) if text else None
        except aiohttp.ClientConnectorCertificateError as e:  # e.g. spec.caBundle is wrong
            message = f"{ep.target}: {type(e).__name__}: {e}"
            raise Unreachable(message, reason="TLSVerifyFailed") from None
        except (TimeoutError, aiohttp.ClientError, OSError) as e:
            sent = not isinstance(e, aiohttp.ClientConnectorError)
            raise Unreachable(
                f"{ep.target}: {type(e).__name__}: {e or 'no answer'}", sent=sent
            ) from None

    async def put(self, ep: Endpoint, deployment: Deployment, by_reference: bool = False) -> bool:
        """Serve `deployment`; returns whether anything changed. Raises AgentError. The body
        waits for its share of the bytes in flight, and an agent that is busy reading others
        (503 with Retry-After) gets it again when it asks, for up to BUSY_PATIENCE.
        `by_reference` (the agent takes it, /v1/info moduleBlobs): the modules go by sha256
        and the deployment is sent first, small; the blobs the location lacks (those it
        could not pull, its 424) follow, then the deployment again. So an unchanged module
        never travels twice, and a change of bindings or routes is one request."""
        started = time.monotonic()
        fence.check(f"push of {deployment.worker}")
        sent = deployment.by_reference() if by_reference else deployment.whole()
        try:
            if not by_reference:  # assets' files before a body that may be large
                await self.send_blobs(ep, sent)
            async with self._encoded(sent) as body:
                try:
                    out = await self._put_patiently(ep, deployment.worker, body)
                except Refused as e:
                    if e.status != 424:
                        raise
                    await self.send_blobs(ep, sent, deployment)
                    out = await self._put_patiently(ep, deployment.worker, body)
        except Unreachable:
            metrics.PUSHES.labels(ep.target, "unreachable").inc()
            raise
        except Refused as e:
            if e.status == 424:  # blobs missing after they were sent: the next push sends
                metrics.PUSHES.labels(ep.target, "unreachable").inc()
                raise Unreachable(f"{ep.target}: {e}", reason="AssetsUnavailable") from None
            metrics.PUSHES.labels(ep.target, "refused").inc()
            raise
        metrics.PUSHES.labels(ep.target, "ok").inc()
        metrics.PUSH_TIME.labels(ep.target).observe(time.monotonic() - started)
        return bool((out or {}).get("changed", True))

    def hold_blobs(self, worker: str, blobs: Mapping[str, bytes]) -> None:
        """Keep the blobs of a version of `worker` just compiled, for the pushes that need
        them: those of its last ROLLOUT_VERSIONS sites (a rollout serves two versions), no
        more, so memory follows the sites in use."""
        site = frozenset(blobs)
        before = self._sites.get(worker, [])
        kept = [s for s in before if s != site][-(ROLLOUT_VERSIONS - 1) :]
        self.blobs.update(blobs)
        self._hold(worker, [*kept, site] if site else kept)

    def drop_blobs(self, worker: str) -> None:
        """A deleted Worker's files go, but those another Worker's sites hold."""
        self._hold(worker, [])

    def _hold(self, worker: str, sites: list[frozenset[str]]) -> None:
        """Make `sites` the Worker's, counting each blob's holders; one no site holds any
        more is let go."""
        before = self._sites.pop(worker, [])
        if sites:
            self._sites[worker] = sites
        self._holds.update(b for s in sites for b in s)
        self._holds.subtract(b for s in before for b in s)
        for sha in {b for s in before for b in s}:
            if self._holds[sha] <= 0:
                del self._holds[sha]
                self.blobs.pop(sha, None)

    async def send_blobs(
        self, ep: Endpoint, deployment: Deployment, whole: Deployment | None = None
    ) -> int:
        """Send the location the blobs of `deployment` it does not hold, a few at a time
        (modules' bytes from `whole`, the deployment with content); returns how many were
        sent. One it holds already is never sent again."""
        wanted = blobs_of([deployment])
        if not wanted:
            return 0
        fence.check(f"files of {deployment.worker}")
        body = json.dumps({"blobs": sorted(wanted)}).encode()
        missing = (await self._call(ep, "POST", "/v1/blobs/missing", body))["missing"]
        if not missing:
            return 0
        modules = await asyncio.to_thread(_module_blobs, whole or deployment, set(missing))
        blobs = self.blobs | modules
        absent = [s for s in missing if s not in blobs]
        if absent:
            raise Unreachable(
                f"{ep.target}: the operator does not hold {len(absent)} of the assets' files "
                f"(e.g. {absent[0][:12]}); they come back when the Worker compiles again",
                reason="AssetsUnavailable",
            )
        slots = asyncio.Semaphore(BLOB_CONCURRENCY)

        async def one(sha: str) -> None:
            async with slots:
                await self._call(ep, "PUT", f"/v1/blobs/{sha}", blobs[sha])

        await asyncio.gather(*(one(s) for s in missing))
        return len(missing)

    async def _put_patiently(self, ep: Endpoint, worker: str, body: PushBody) -> Any:
        deadline = time.monotonic() + BUSY_PATIENCE
        path = f"/v1/workers/{worker}"
        while True:
            fence.check(f"push of {worker}")  # also after waiting for a busy agent
            try:
                return await self._call(ep, "PUT", path, body.data, extra=body.headers())
            except ServerError as e:
                if e.retry_after is None or time.monotonic() + e.retry_after > deadline:
                    raise
                metrics.PUSHES.labels(ep.target, "busy").inc()
                # Jitter: the pushes turned away together do not all come back together.
                await asyncio.sleep(e.retry_after * random.uniform(1.0, 1.5))

    @asynccontextmanager
    async def _encoded(self, deployment: Deployment) -> AsyncIterator[PushBody]:
        """The deployment's body, shared by the pushes of the same deployment in flight,
        holding its share of the budget until the last of them is done."""
        # The same deployment by reference or whole is two bodies (locations differ).
        key = (deployment.worker, deployment.identity(), deployment.versions[0].has_references())
        shared = self._bodies.get(key)
        if shared is None:
            shared = self._bodies[key] = _Shared(asyncio.ensure_future(self._encode(deployment)))
        shared.users += 1
        try:
            yield await asyncio.shield(shared.task)
        finally:
            shared.users -= 1
            if shared.users == 0:
                del self._bodies[key]
                _release(shared.task, self.budget)

    async def _encode(self, deployment: Deployment) -> PushBody:
        held = await self.budget.take(weight(deployment))
        try:
            body = await asyncio.to_thread(encode, deployment)
        except BaseException:
            self.budget.give(held)
            raise
        body.held = held
        return body

    async def delete(self, ep: Endpoint, worker: str) -> None:
        fence.check(f"removal of {worker}")
        try:
            await self._call(ep, "DELETE", f"/v1/workers/{worker}")
        except Refused as e:
            if e.status != 404:
                raise

    async def put_exclusions(self, ep: Endpoint, namespace: str, patterns: tuple[str, ...]) -> None:
        """Make `patterns` the namespace's routes without a Worker there. Raises AgentError."""
        fence.check(f"exclusions of {namespace}")
        body = Exclusions(patterns=patterns).model_dump_json().encode()
        await self._call(ep, "PUT", f"/v1/exclusions/{namespace}", body)

    async def put_cron(
        self, ep: Endpoint, ttl: float, schedules: Mapping[str, tuple[str, ...]],
        holder: str, seq: int,
    ) -> None:
        """The location's cron lease: these Workers' schedules for `ttl` seconds, replacing
        the last lease (of `holder` with a lower `seq`). Raises AgentError."""
        fence.check("cron lease")
        body = json.dumps({"ttlSeconds": ttl, "schedules": dict(schedules), "holder": holder,
                           "seq": seq}).encode()
        await self._call(ep, "PUT", "/v1/cron", body, max_seconds=HEALTH_TIMEOUT)

    async def put_signing_key(self, ep: Endpoint, key: str) -> None:
        """The cluster's key for signed override headers. Raises AgentError."""
        fence.check("signing key")
        body = json.dumps({"key": key}).encode()
        # Sent from the health check, so bounded as it is.
        await self._call(ep, "PUT", "/v1/signing-key", body, max_seconds=HEALTH_TIMEOUT)

    async def exclusions(self, ep: Endpoint) -> dict[str, tuple[str, ...]]:
        out = await self._call(ep, "GET", "/v1/exclusions", max_seconds=HEALTH_TIMEOUT)
        return {ns: tuple(ps) for ns, ps in ((out or {}).get("exclusions") or {}).items()}

    async def inventory(self, ep: Endpoint, since: str = "") -> InventoryChanges:
        """The location's inventory items changed since the cursor `since` ("": all)."""
        path = f"/v1/workers?since={quote(since, safe='')}"
        return inventory_changes(await self._call(ep, "GET", path, max_seconds=HEALTH_TIMEOUT))

    async def requests(self, ep: Endpoint, worker: str, version: str) -> tuple[int, int]:
        """(requests, 5xx responses) of one version at the location since the agent
        started; (0, 0) when it has answered none or the Worker is not there."""
        try:
            item = await self._call(ep, "GET", f"/v1/workers/{worker}", max_seconds=HEALTH_TIMEOUT)
        except Refused as e:
            if e.status == 404:
                return (0, 0)
            raise
        counts = ((item or {}).get("requests") or {}).get(version) or {}
        return (int(counts.get("total", 0)), int(counts.get("errors", 0)))

    async def probe(self, ep: Endpoint, worker: str, version: str, probe: Probe) -> ProbeResult:
        """One request through the location's router to `version`; a location that cannot
        route it (no route covers the path, version not there) is a failed probe."""
        body = json.dumps(
            {
                "version": version,
                "path": probe.path,
                "timeoutSeconds": probe.timeout_seconds,
                **({"host": probe.host} if probe.host else {}),
            }
        ).encode()
        path = f"/v1/workers/{worker}/probe"
        try:
            out = await self._call(ep, "POST", path, body, max_seconds=probe.timeout_seconds + 5)
        except Refused as e:
            return ProbeResult(url=probe.path, status=0, error=f"agent refused the probe: {e}")
        out = out or {}
        return ProbeResult(
            url=str(out.get("url") or probe.path),
            status=int(out.get("status") or 0),
            body=str(out.get("body") or ""),
            error=str(out.get("error") or ""),
        )

    async def info(self, ep: Endpoint) -> dict[str, Any]:
        return dict(await self._call(ep, "GET", "/v1/info", max_seconds=HEALTH_TIMEOUT) or {})

    async def tail(
        self, ep: Endpoint, worker: str, query: dict[str, str]
    ) -> AsyncIterator[dict[str, Any]]:
        """The agent's live-log stream of `worker` (edge/tail.py), one object a line, until
        it ends. Raises Refused, or Unreachable (also when it is silent for TAIL_SILENCE:
        the agent pings every 10 s)."""
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        url = f"{ep.url.rstrip('/')}/v1/workers/{worker}/tail"
        try:
            async with self._session.get(
                url,
                params=query,
                headers={"Authorization": f"Bearer {ep.token}"},
                ssl=self._ssl_for(ep),
                timeout=aiohttp.ClientTimeout(total=None, connect=5, sock_read=TAIL_SILENCE),
            ) as resp:
                if resp.status >= 400:
                    raise Refused(resp.status, _msg(await resp.text()))
                async for line in resp.content:
                    if line.strip():
                        yield json.loads(line)
        except (TimeoutError, aiohttp.ClientError, OSError, ValueError) as e:
            raise Unreachable(f"{ep.target}: {type(e).__name__}: {e or 'no answer'}") from None


def ssl_context(settings: ClientTls) -> ssl.SSLContext:
    """A verifying client context; ssl.SSLError (a ValueError) if a PEM is not usable."""
    ctx = ssl.create_default_context(cadata=settings.ca_bundle)
    if settings.certificate is not None:
        # ssl loads a key only from a file: a private directory, removed at once.
        with tempfile.TemporaryDirectory(prefix="edgeplane-client-") as tmp:
            cert, key = Path(tmp, "tls.crt"), Path(tmp, "tls.key")
            key.touch(mode=0o600)
            key.write_text(settings.certificate.key)
            cert.write_text(settings.certificate.cert)
            ctx.load_cert_chain(cert, key)
    return ctx


def _release(task: asyncio.Task[PushBody], budget: ByteBudget) -> None:
    """Give back what an encoded body holds; one still waiting or encoding gives it back
    itself when cancelled."""
    if not task.done():
        task.cancel()
    elif not task.cancelled() and task.exception() is None:
        budget.give(task.result().held)


def _msg(text: str) -> str:
    """The agent's error message from a JSON body ({"error": ...} or {"message": ...})."""
    try:
        data = json.loads(text)
    except ValueError:
        return text.strip()[:2000]
    if isinstance(data, dict):
        for k in ("error", "message", "detail"):
            if isinstance(data.get(k), str):
                return str(data[k])[:2000]
    return text.strip()[:2000]
