"""The agent's core: accepted state, a coalescing reload loop, batch validation in a
throw-away workerd, supervision of the serving workerd generation, request counts per
version across generations, and probes through the public socket."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from edgeplane.edge import batch as batches
from edgeplane.edge import counts, render, workerd
from edgeplane.edge import probe as probes
from edgeplane.edge.inventory import Inventory
from edgeplane.edge.metrics import Metrics
from edgeplane.edge.result import Result
from edgeplane.edge.store import Store
from edgeplane.edge.validate import Validator
from edgeplane.wire import Deployment, redact, secrets_of

log = logging.getLogger("edgeplane.agent")
COALESCE = 0.02
COALESCE_MAX = 0.5
STATS_TIMEOUT = 2.0  # reading a generation's request counts
FINAL_MAX = 5.0  # longest a draining generation waits for in-flight requests before counting


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
    ) -> None:
        self.state_dir = state_dir
        self.workerd_bin = workerd_bin
        self.http_sock = http_sock
        self.drain_grace = drain_grace
        self.start_timeout = start_timeout
        self.handoff_wait = handoff_wait
        self.store = Store(state_dir)
        self.run_dir = state_dir / "run"
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.paths = render.Paths(do_dir=state_dir / "do", kv_dir=state_dir / "kv")
        self.metrics = Metrics()
        self.validator = Validator(workerd_bin, self.run_dir, self.metrics, validate_timeout)
        self.accepted: dict[str, Deployment] = {}
        self.refused: dict[str, str] = {}  # worker -> message of its last refused push
        self.pending: dict[str, _Pending] = {}
        self.validated: set[str] = set()
        self.current: workerd.Proc | None = None
        self.config_path: Path | None = None
        self.crash_message = ""
        self._gen = 0
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()  # one generation change at a time
        self._tasks: set[asyncio.Task[object]] = set()
        self._draining: set[workerd.Proc] = set()
        self._closing = False
        self._loop_task: asyncio.Task[None] | None = None
        self.counts = counts.Counts()
        self._stats_ports: dict[workerd.Proc, int] = {}
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

    # ---- lifecycle -------------------------------------------------------------------
    async def start(self) -> None:
        self.accepted = await asyncio.to_thread(self.store.load_all)
        self.validated = batches.versions_of(self.accepted)
        self.metrics.workers.set(len(self.accepted))
        try:
            await self._reload(self.accepted)
        except workerd.StartFailed as e:
            # The stored set served before; keep retrying rather than refusing to start.
            self.crash_message = self._redact(e.message, self.accepted.values())
            log.error("workerd failed to start the stored config: %s", self.crash_message)
            self._spawn(self._restart_later())
        self._loop_task = asyncio.create_task(self._loop())

    async def close(self) -> None:
        self._closing = True
        if self._loop_task:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        for t in list(self._tasks):
            t.cancel()
        for t in list(self._tasks):
            with contextlib.suppress(BaseException):
                await t
        procs = [*self._draining, *([self.current] if self.current else [])]
        await asyncio.gather(*(workerd.stop(p, self.drain_grace) for p in procs))
        self.current = None
        if self._session is not None:
            await self._session.close()
        for p in self.pending.values():
            p.answer(Result.error(503, "agent is shutting down"))

    def ready(self) -> bool:
        return self.current is not None and self.current.proc.returncode is None

    # ---- pushes ----------------------------------------------------------------------
    def submit(self, worker: str, d: Deployment | None) -> asyncio.Future[Result]:
        """Push `d` (None: delete) for `worker`; the future is done once it is answered:
        at once when the answer needs no batch, else once the batch serves."""
        fut: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        pending = {w: p.deployment for w, p in self.pending.items()}
        early = batches.precheck(worker, d, self.accepted, pending, self.refused)
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

    # ---- the reload loop -------------------------------------------------------------
    async def _loop(self) -> None:
        while True:
            await self._wake.wait()
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
            batch, self.pending = self.pending, {}
            try:
                await self._process(batch)
            except Exception as e:  # never leave a PUT waiting forever
                log.exception("reload failed")
                for p in batch.values():
                    p.answer(Result.error(500, f"agent error: {e}"))

    async def _process(self, batch: dict[str, _Pending]) -> None:
        wanted = {w: p.deployment for w, p in batch.items()}
        for w, d in wanted.items():
            if d is None:
                self.refused.pop(w, None)  # a deleted Worker's refusal goes with it, at once
        new = batches.to_validate(self.accepted, wanted, self.validated)
        errors = await self.validator.validate(new)
        decision = batches.decide(self.accepted, wanted, errors)
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
        await self.store.apply(changes)
        try:
            await self._reload(candidate)
        except workerd.StartFailed as e:
            await self.store.apply(previous)
            msg = self._redact(e.message, candidate.values())
            self.refused.update(dict.fromkeys(changes, msg))
            return batches.refused_together(changes, msg)
        self.accepted = candidate
        for w in changes:
            self.refused.pop(w, None)
        self.validated |= batches.versions_of(changes)
        self.metrics.workers.set(len(self.accepted))
        return {}

    # ---- generations -----------------------------------------------------------------
    def _next_gen(self) -> int:
        self._gen += 1
        return self._gen

    async def _reload(self, deployments: dict[str, Deployment]) -> None:
        """Start a new generation on the shared socket; once it listens, drain the old."""
        async with self._lock:
            gen = self._next_gen()
            cfg = self.run_dir / f"config-{gen}.capnp"
            deps = list(deployments.values())
            await asyncio.to_thread(workerd.write_config, cfg, deps, self.paths)
            started = time.monotonic()
            # The generation's own stats socket (request counts), on loopback: the agent binds
            # it and hands it over like the public one, so it knows the port up front.
            stats_sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                stats_sock.bind(("127.0.0.1", 0))
                stats_sock.listen(64)
                stats_port = int(stats_sock.getsockname()[1])
                p = await workerd.start(
                    self.workerd_bin,
                    cfg,
                    socket_fd=self.http_sock.fileno(),
                    stats_fd=stats_sock.fileno(),
                    start_timeout=self.start_timeout,
                )
            except workerd.StartFailed:
                self.metrics.reloads.labels("failed").inc()
                cfg.unlink(missing_ok=True)
                raise
            finally:
                # workerd holds its own copy; once it stops listening, connects are refused.
                stats_sock.close()
            self.metrics.reload_time.observe(time.monotonic() - started)
            self.metrics.reloads.labels("ok").inc()
            self._stats_ports[p] = stats_port
            self.counts.start(p)
            old, self.current = self.current, p
            old_cfg, self.config_path = self.config_path, cfg
            self.crash_message = ""
            self._spawn(self._watch(p))
            if old is not None:
                # Ask the old generation for its final counts before it stops accepting: it
                # answers once the requests in flight during its drain are done.
                final = await self._ask_final(old)
                # Before the PUT is answered: from now on only the new generation accepts.
                workerd.terminate(old)
                self._spawn(self._drain(old, final))
                # SIGTERM is handled asynchronously: the old generation may still accept a
                # connection from the shared backlog for a few ms. Wait (briefly) for it to
                # exit, so that a 200 means new connections reach the new config.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.handoff_wait):
                        await asyncio.shield(old.proc.wait())
            if old_cfg is not None and old_cfg != cfg:
                old_cfg.unlink(missing_ok=True)

    async def _drain(self, p: workerd.Proc, final: aiohttp.ClientResponse | None) -> None:
        self._draining.add(p)
        snap: counts.Snapshot | None = None
        reading: asyncio.Future[counts.Snapshot | None] | None = None
        try:
            # Concurrently: the final counts arrive while the generation drains, and reading
            # them must not extend the drain's SIGKILL deadline.
            if final is not None:
                reading = asyncio.ensure_future(self._read_final(final))
            await workerd.stop(p, self.drain_grace)
            if reading is not None:
                snap = await reading
        finally:
            if reading is not None and not reading.done():
                reading.cancel()  # the agent is closing
            self._draining.discard(p)
            self._end_generation(p, snap)

    def _end_generation(self, p: workerd.Proc, final: counts.Snapshot | None) -> None:
        self.counts.finish(p, final)
        self._stats_ports.pop(p, None)
        self.metrics.export_requests(self.counts.totals())

    async def _watch(self, p: workerd.Proc) -> None:
        await p.proc.wait()
        if self._closing or p is not self.current:
            return
        self._end_generation(p, None)  # what was read last is all there is
        self.metrics.restarts.inc()
        tail = self._redact(p.stderr_text()[-1000:], self.accepted.values())
        self.crash_message = f"workerd exited unexpectedly ({p.proc.returncode}): {tail}".strip()
        log.error("%s", self.crash_message)
        await self._restart_later()

    async def _restart_later(self) -> None:
        delay = 0.2
        while not self._closing:
            await asyncio.sleep(delay)
            try:
                await self._reload(self.accepted)
                log.info("workerd restarted")
                return
            except workerd.StartFailed as e:
                self.crash_message = "workerd restart failed: " + self._redact(
                    e.message, self.accepted.values()
                )
                self.metrics.reloads.labels("failed").inc()
                delay = min(delay * 2, 30.0)

    def _spawn(self, coro: object) -> None:
        t = asyncio.create_task(coro)  # type: ignore[arg-type]
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    @staticmethod
    def _redact(message: str, deployments: object) -> str:
        return redact(message, secrets_of(deployments))  # type: ignore[arg-type]

    # ---- request counts --------------------------------------------------------------
    def _stats_url(self, p: workerd.Proc, path: str) -> str | None:
        port = self._stats_ports.get(p)
        return None if port is None else f"http://127.0.0.1:{port}{path}"

    async def _ask_final(self, p: workerd.Proc) -> aiohttp.ClientResponse | None:
        """Send GET /final to a generation about to drain; returns once its headers arrived
        (the request is being served, so it outlives the SIGTERM that follows)."""
        url = self._stats_url(p, f"/final?max={int(min(FINAL_MAX, self.drain_grace) * 1000)}")
        if url is None or p.proc.returncode is not None:
            return None
        try:
            async with asyncio.timeout(STATS_TIMEOUT):
                return await self._http().get(url)
        except (aiohttp.ClientError, OSError, TimeoutError) as e:
            log.warning("could not ask a draining workerd for its request counts: %r", e)
            return None

    async def _read_final(self, resp: aiohttp.ClientResponse) -> counts.Snapshot | None:
        try:
            async with asyncio.timeout(min(FINAL_MAX, self.drain_grace) + STATS_TIMEOUT):
                body = await resp.read()
            return counts.parse(body) if resp.status == 200 else None
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError, KeyError) as e:
            log.warning("no final request counts from a draining workerd: %r", e)
            return None
        finally:
            resp.release()

    async def refresh_counts(self) -> None:
        """Read the serving generation's counts now (callers that arrive while a read is
        under way share it). Draining generations are counted by their final answer."""
        asked = time.monotonic()
        async with self._refresh_lock:
            if self._refreshed >= asked:
                return  # a read that started after this call finished meanwhile
            p = self.current
            url = self._stats_url(p, "/counts") if p is not None else None
            if p is not None and url is not None and p.proc.returncode is None:
                started = time.monotonic()
                try:
                    async with asyncio.timeout(STATS_TIMEOUT):
                        async with self._http().get(url) as resp:
                            body = await resp.read()
                            if resp.status == 200:
                                self.counts.update(p, counts.parse(body))
                except (aiohttp.ClientError, OSError, TimeoutError, ValueError, KeyError) as e:
                    log.warning("could not read request counts from workerd: %r", e)
                self._refreshed = started
            self.metrics.export_requests(self.counts.totals())

    # ---- probes ----------------------------------------------------------------------
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
            answer = await probes.send(
                self._http(),
                base,
                t,
                worker=worker,
                version=version,
                path=path,
                method=method,
                seconds=seconds,
            )
        secrets = secrets_of(self.accepted.values())
        for k in ("body", "error"):
            answer[k] = redact(str(answer[k]), secrets)
        return Result(200, answer)

    # ---- inventory -------------------------------------------------------------------
    def _inventory(self) -> Inventory:
        return Inventory(
            self.accepted, self.refused, self.ready(), self.crash_message, self.counts.totals()
        )

    def item(self, worker: str) -> dict[str, object] | None:
        return self._inventory().item(worker)

    def inventory(self) -> list[dict[str, object]]:
        return self._inventory().items()
