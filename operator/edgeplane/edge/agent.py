"""The agent: accepted state and the pushes that change it, gathered into batches.

It wires the parts: `batch` decides what pushes do, `validate` loads new bundles in
throw-away workerds, `generations` serves the accepted set and counts its requests,
`inventory` reports it, `probe` sends requests through the public socket."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from yarl import URL

from edgeplane.edge import batch as batches
from edgeplane.edge import probe as probes
from edgeplane.edge import render, workerd
from edgeplane.edge.generations import Generations
from edgeplane.edge.inventory import Inventory
from edgeplane.edge.metrics import Metrics
from edgeplane.edge.result import Result
from edgeplane.edge.store import Store, private_dir, secure_state
from edgeplane.edge.validate import Validator
from edgeplane.wire import Deployment, redact, secrets_of, signed_headers

log = logging.getLogger("edgeplane.agent")
COALESCE = 0.02
COALESCE_MAX = 0.5


@dataclass
class _Pending:
    deployment: Deployment | None  # None: delete
    waiters: list[asyncio.Future[Result]] = field(default_factory=list)

    def answer(self, result: Result) -> None:
        for fut in self.waiters:
            if not fut.done():
                fut.set_result(result)


class Agent:
    def __init__(
        self,
        state_dir: Path,
        workerd_bin: Path,
        http_sock: socket.socket,
        *,
        drain_grace: float = 10.0,
        start_timeout: float = 60.0,
        validate_timeout: float = 10.0,
        handoff_wait: float = 2.0,
        bypass_status: int = 404,
        trust_forwarded_proto: bool = False,
    ) -> None:
        self.state_dir = state_dir
        self.workerd_bin = workerd_bin
        self.http_sock = http_sock
        self.store = Store(state_dir)
        self.run_dir = private_dir(state_dir / "run")
        self.metrics = Metrics()
        self.accepted: dict[str, Deployment] = {}
        self.refused: dict[str, str] = {}  # worker -> message of its last refused push
        self.pending: dict[str, _Pending] = {}
        self.validated: set[str] = set()
        self.exclusions: dict[str, tuple[str, ...]] = {}  # namespace -> patterns
        self.bypass_status = bypass_status
        self.trust_forwarded_proto = trust_forwarded_proto
        self.signing_key = ""  # loaded at start
        self._serving = asyncio.Lock()  # one change of what is served at a time
        self.validator = Validator(workerd_bin, self.run_dir, self.metrics, validate_timeout)
        self.gens = Generations(
            workerd_bin,
            http_sock,
            self.run_dir,
            render.Paths(do_dir=state_dir / "do", kv_dir=state_dir / "kv"),
            self.metrics,
            lambda: self.accepted,
            self._router_settings,
            self._http,
            drain_grace=drain_grace,
            start_timeout=start_timeout,
            handoff_wait=handoff_wait,
        )
        self._wake = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self._refresh_lock = asyncio.Lock()
        self._refreshed = 0.0
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        """The agent's client for its own sockets (stats, probes): no pooled connections, so
        nothing holds an old generation open."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(force_close=True), trust_env=False
            )
        return self._session

    @property
    def crash_message(self) -> str:
        """Why workerd is not serving, or ""."""
        return self.gens.crash_message

    # ---- lifecycle -------------------------------------------------------------------
    async def start(self) -> None:
        # Before the first workerd: no child of this agent uses the leftovers it purges (an
        # agent that adopted running workerds would have to spare their files).
        await asyncio.to_thread(secure_state, self.state_dir)
        self.accepted = await asyncio.to_thread(self.store.load_all)
        self.exclusions = await asyncio.to_thread(self.store.load_exclusions)
        self.signing_key = await asyncio.to_thread(self.store.load_signing_key)
        self.validated = batches.versions_of(self.accepted)
        self.metrics.workers.set(len(self.accepted))
        await self.gens.start()
        self._loop_task = asyncio.create_task(self._loop())

    async def close(self) -> None:
        self.gens.closing = True  # no restart while the loop winds down
        if self._loop_task:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        await self.gens.close()
        if self._session is not None:
            await self._session.close()
        for p in self.pending.values():
            p.answer(Result.error(503, "agent is shutting down"))

    def ready(self) -> bool:
        return self.gens.ready()

    # ---- pushes ----------------------------------------------------------------------
    def submit(self, worker: str, d: Deployment | None) -> asyncio.Future[Result]:
        """Push `d` (None: delete) for `worker`; the future is done once it is answered:
        at once when the answer needs no batch, else once the batch serves."""
        fut: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        pending = self._pending_changes()
        early = batches.precheck(worker, d, self.accepted, pending, self.refused, self.exclusions)
        if early is not None:
            if early.push is not None:
                self.metrics.pushes.labels(early.push).inc()
            fut.set_result(early.result)
            return fut
        p = self.pending.get(worker)
        if p is None:
            p = self.pending[worker] = _Pending(d)
        p.deployment = d  # a later request for the same Worker supersedes an earlier one
        p.waiters.append(fut)
        self._wake.set()
        return fut

    def _pending_changes(self) -> batches.Changes:
        return {w: p.deployment for w, p in self.pending.items()}

    async def _loop(self) -> None:
        while True:
            await self._wake.wait()
            await self._quiet()
            batch, self.pending = self.pending, {}
            try:
                await self._process(batch)
            except Exception as e:  # never leave a PUT waiting forever
                log.exception("reload failed")
                for p in batch.values():
                    p.answer(Result.error(500, f"agent error: {e}"))

    async def _quiet(self) -> None:
        # Let a burst (e.g. 1,000 Workers applied at once) gather: wait until no new
        # change arrived for COALESCE seconds, at most COALESCE_MAX.
        deadline = time.monotonic() + COALESCE_MAX
        while time.monotonic() < deadline:
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(COALESCE):
                    await self._wake.wait()
            if not self._wake.is_set():
                break
        self._wake.clear()

    async def _process(self, batch: dict[str, _Pending]) -> None:
        wanted = {w: p.deployment for w, p in batch.items()}
        for w, d in wanted.items():
            if d is None:
                self.refused.pop(w, None)  # a deleted Worker's refusal goes with it, at once
        new = batches.to_validate(self.accepted, wanted, self.validated)
        errors = await self.validator.validate(new)
        decision = batches.decide(self.accepted, wanted, errors, self.exclusions)
        self.refused.update(decision.refused)
        self.metrics.validation_failures.inc(len(decision.refused))
        results = dict(decision.results)
        if decision.changes:
            results.update(await self._commit(decision))
        for w, p in batch.items():
            r = results[w]
            self.metrics.pushes.labels("ok" if r.status < 400 else "refused").inc()
            p.answer(r)

    async def _commit(self, decision: batches.Decision) -> dict[str, Result]:
        """Store and serve the decided changes. If workerd refuses the combined config, the
        store is put back and the changed Workers' answers replaced: those are returned."""
        changes, candidate = decision.changes, decision.candidate
        previous = {w: self.accepted.get(w) for w in changes}
        async with self._serving:
            await self.store.apply(changes)
            try:
                await self.gens.reload(candidate)
            except workerd.StartFailed as e:
                await self.store.apply(previous)
                msg = redact(e.message, secrets_of(candidate.values()))
                self.refused.update(dict.fromkeys(changes, msg))
                return batches.refused_together(changes, msg)
            self.accepted = candidate
        for w in changes:
            self.refused.pop(w, None)
        self.validated |= batches.versions_of(changes)
        self.metrics.workers.set(len(self.accepted))
        return {}

    async def exclude(self, namespace: str, patterns: tuple[str, ...]) -> Result:
        """Make `patterns` the namespace's routes without a Worker (none: drop them); the
        answer comes once the router serves them."""
        async with self._serving:
            served = batches.desired(self.accepted, self._pending_changes())
            conflict = batches.exclusion_conflict(namespace, patterns, served, self.exclusions)
            if conflict:
                return Result.error(409, conflict, namespace=namespace)
            new = {ns: ps for ns, ps in self.exclusions.items() if ns != namespace}
            if patterns:
                new[namespace] = patterns
            if new == self.exclusions:
                return Result(200, {"changed": False, "namespace": namespace})
            old, self.exclusions = self.exclusions, new
            await self.store.save_exclusions(new)
            try:
                await self.gens.reload(self.accepted)
            except workerd.StartFailed as e:
                self.exclusions = old
                await self.store.save_exclusions(old)
                msg = redact(e.message, secrets_of(self.accepted.values()))
                return Result.error(422, f"workerd refused the route table: {msg}")
            return Result(200, {"changed": True, "namespace": namespace})

    def _router_settings(self) -> render.RouterSettings:
        return render.RouterSettings(
            self.exclusions, self.bypass_status, self.signing_key, self.trust_forwarded_proto
        )

    async def use_signing_key(self, key: str) -> Result:
        """Sign override headers with the operator's key from now on (it goes into the
        router's config, so the router is reloaded)."""
        async with self._serving:
            if key == self.signing_key:
                return Result(200, {"changed": False})
            old, self.signing_key = self.signing_key, key
            await self.store.save_signing_key(key)
            try:
                await self.gens.reload(self.accepted)
            except workerd.StartFailed as e:
                self.signing_key = old
                await self.store.save_signing_key(old)
                msg = redact(e.message, [*secrets_of(self.accepted.values()), key])
                return Result.error(500, f"workerd did not take the new key: {msg}")
            return Result(200, {"changed": True})

    # ---- request counts, probes, inventory -------------------------------------------
    async def refresh_counts(self) -> None:
        """Read the serving generation's counts now (callers that arrive while a read is
        under way share it)."""
        asked = time.monotonic()
        async with self._refresh_lock:
            if self._refreshed >= asked:
                return  # a read that started after this call finished meanwhile
            started = time.monotonic()
            if await self.gens.read_counts():
                self._refreshed = started
            self.metrics.export_requests(self.gens.counts.totals())

    async def probe(
        self,
        worker: str,
        version: str,
        path: str,
        *,
        host: str | None = None,
        method: str = "GET",
        seconds: float = probes.DEFAULT_TIMEOUT,
    ) -> Result:
        """One request through the public socket, answered by `version` of `worker`."""
        try:
            t = probes.resolve(self.accepted, worker, version, path, host)
        except probes.ProbeError as e:
            return Result.error(e.status, e.message, **e.extra)
        if not self.ready():
            why = f": {self.crash_message}" if self.crash_message else ""
            answer = probes.answer(t, path, error=f"workerd is not serving at this location{why}")
        else:
            base = probes.base_url(self.http_sock.getsockname())
            # Signed, so the router honours the proto and the version override.
            headers = signed_headers(
                self.signing_key,
                int(time.time()),
                proto=t.scheme,
                overrides=f'{worker}="{version}"',
            )
            answer = await _send_probe(
                self._http(), base, t, headers, path=path, method=method, seconds=seconds
            )
        secrets = secrets_of(self.accepted.values())
        for k in ("body", "error"):
            answer[k] = redact(str(answer[k]), secrets)
        return Result(200, answer)

    def _inventory(self) -> Inventory:
        return Inventory(
            self.accepted, self.refused, self.ready(), self.crash_message, self.gens.counts.totals()
        )

    def item(self, worker: str) -> dict[str, object] | None:
        return self._inventory().item(worker)

    def inventory(self) -> list[dict[str, object]]:
        return self._inventory().items()


async def _send_probe(
    session: aiohttp.ClientSession,
    base: str,
    t: probes.Target,
    signed: dict[str, str],
    *,
    path: str,
    method: str,
    seconds: float,
) -> dict[str, object]:
    """One request to `base` (the public socket) as `t` would reach it, with the `signed`
    headers; never raises for transport errors: they are reported as status 0 and `error`."""
    headers = {"Host": t.host, "User-Agent": "edgeplane-agent-probe", **signed}
    status, body, error = 0, "", ""
    started = time.monotonic()
    try:
        async with asyncio.timeout(seconds):
            async with session.request(
                method,
                URL(base + path, encoded=True),
                headers=headers,
                allow_redirects=False,
            ) as resp:
                status = resp.status
                raw = bytearray()
                # Enough bytes for probes.BODY_CHARS characters of UTF-8; never the whole body.
                while len(raw) < probes.BODY_CHARS * 4:
                    chunk = await resp.content.read(probes.BODY_CHARS * 4 - len(raw))
                    if not chunk:
                        break
                    raw += chunk
                body = raw.decode("utf-8", errors="replace")[:probes.BODY_CHARS]
    except TimeoutError:
        error = f"no complete answer within {seconds:g}s"
    except (aiohttp.ClientError, OSError) as e:
        error = f"{type(e).__name__}: {e}".strip()
    elapsed = time.monotonic() - started
    return probes.answer(t, path, status=status, body=body, elapsed=elapsed, error=error)
