"""The serving workerd generations on the agent's public socket.

A reload starts a new generation on the shared socket and, once it listens, hands over:
the old one is asked for its final request counts, then drains. A generation that exits
unexpectedly is restarted. Each generation has a stats socket of its own (loopback) where
the agent reads its request counts into `counts`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Callable, Coroutine, Mapping
from pathlib import Path

import aiohttp

from edgeplane.edge import counts, render, workerd
from edgeplane.edge.metrics import Metrics
from edgeplane.wire import Deployment, redact, secrets_of

log = logging.getLogger("edgeplane.agent")
STATS_TIMEOUT = 2.0  # reading a generation's request counts
FINAL_MAX = 5.0  # longest a draining generation waits for in-flight requests before counting
_READ_ERRORS = (aiohttp.ClientError, OSError, TimeoutError, ValueError, KeyError)


def _redacted(message: str, deployments: Mapping[str, Deployment]) -> str:
    return redact(message, secrets_of(deployments.values()))


class Generations:
    def __init__(
        self,
        workerd_bin: Path,
        http_sock: socket.socket,
        run_dir: Path,
        paths: render.Paths,
        metrics: Metrics,
        accepted: Callable[[], Mapping[str, Deployment]],
        router: Callable[[], render.RouterSettings],
        http: Callable[[], aiohttp.ClientSession],
        *,
        drain_grace: float,
        start_timeout: float,
        handoff_wait: float,
    ) -> None:
        self.workerd_bin = workerd_bin
        self.http_sock = http_sock
        self.run_dir = run_dir
        self.paths = paths
        self.metrics = metrics
        self.accepted = accepted  # what a restart serves
        self.router = router  # the router's settings, as accepted
        self.http = http  # the client for the stats sockets
        self.drain_grace = drain_grace
        self.start_timeout = start_timeout
        self.handoff_wait = handoff_wait
        self.counts = counts.Counts()
        self.current: workerd.Proc | None = None
        self.crash_message = ""
        self.closing = False  # no restarts once set
        self._gen = 0
        self._lock = asyncio.Lock()  # one generation change at a time
        self._tasks: set[asyncio.Task[None]] = set()
        self._draining: set[workerd.Proc] = set()
        self._stats_ports: dict[workerd.Proc, int] = {}

    def ready(self) -> bool:
        return self.current is not None and self.current.proc.returncode is None

    def _spawn(self, coro: Coroutine[object, object, None]) -> None:
        t = asyncio.create_task(coro)
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    # ---- lifecycle -------------------------------------------------------------------
    async def start(self) -> None:
        """Serve the accepted deployments; if workerd refuses them, keep retrying."""
        try:
            await self.reload(self.accepted())
        except workerd.StartFailed as e:
            # The stored set served before; keep retrying rather than refusing to start.
            self.crash_message = _redacted(e.message, self.accepted())
            log.error("workerd failed to start the stored config: %s", self.crash_message)
            self._spawn(self._restart_later())

    async def close(self) -> None:
        self.closing = True
        for t in list(self._tasks):
            t.cancel()
        for t in list(self._tasks):
            with contextlib.suppress(BaseException):
                await t
        procs = [*self._draining, *([self.current] if self.current else [])]
        await asyncio.gather(*(workerd.stop(p, self.drain_grace) for p in procs))
        self.current = None

    # ---- generations -----------------------------------------------------------------
    async def reload(self, deployments: Mapping[str, Deployment]) -> None:
        """Start a new generation on the shared socket; once it listens, drain the old.
        workerd.StartFailed if the new one does not start (the old one keeps serving)."""
        async with self._lock:
            self._gen += 1
            cfg = self.run_dir / f"config-{self._gen}.capnp"
            deps = list(deployments.values())
            await asyncio.to_thread(
                workerd.write_config, cfg, deps, self.paths, self.router()
            )
            p = await self._start(cfg)
            self.counts.start(p)
            old, self.current = self.current, p
            self.crash_message = ""
            self._spawn(self._watch(p))
            if old is not None:
                await self._hand_off(old)

    async def _start(self, cfg: Path) -> workerd.Proc:
        """workerd on `cfg`, serving the public socket; the config goes once it listens or
        fails: workerd has read it by then, and it holds secret values in clear."""
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
            raise
        finally:
            # workerd holds its own copy; once it stops listening, connects are refused.
            stats_sock.close()
            await asyncio.to_thread(cfg.unlink, missing_ok=True)
        self.metrics.reload_time.observe(time.monotonic() - started)
        self.metrics.reloads.labels("ok").inc()
        self._stats_ports[p] = stats_port
        return p

    async def _hand_off(self, old: workerd.Proc) -> None:
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
        if self.closing or p is not self.current:
            return
        self._end_generation(p, None)  # what was read last is all there is
        self.metrics.restarts.inc()
        tail = _redacted(p.stderr_text()[-1000:], self.accepted())
        self.crash_message = f"workerd exited unexpectedly ({p.proc.returncode}): {tail}".strip()
        log.error("%s", self.crash_message)
        await self._restart_later()

    async def _restart_later(self) -> None:
        delay = 0.2
        while not self.closing:
            await asyncio.sleep(delay)
            try:
                await self.reload(self.accepted())
                log.info("workerd restarted")
                return
            except workerd.StartFailed as e:
                message = _redacted(e.message, self.accepted())
                self.crash_message = "workerd restart failed: " + message
                self.metrics.reloads.labels("failed").inc()
                delay = min(delay * 2, 30.0)

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
                return await self.http().get(url)
        except (aiohttp.ClientError, OSError, TimeoutError) as e:
            log.warning("could not ask a draining workerd for its request counts: %r", e)
            return None

    async def _read_final(self, resp: aiohttp.ClientResponse) -> counts.Snapshot | None:
        try:
            async with asyncio.timeout(min(FINAL_MAX, self.drain_grace) + STATS_TIMEOUT):
                body = await resp.read()
            return counts.parse(body) if resp.status == 200 else None
        except _READ_ERRORS as e:
            log.warning("no final request counts from a draining workerd: %r", e)
            return None
        finally:
            resp.release()

    async def read_counts(self) -> bool:
        """Read the serving generation's counts into `counts`; False if none is serving.
        Draining generations are counted by their final answer."""
        p = self.current
        url = self._stats_url(p, "/counts") if p is not None else None
        if p is None or url is None or p.proc.returncode is not None:
            return False
        try:
            async with asyncio.timeout(STATS_TIMEOUT):
                async with self.http().get(url) as resp:
                    body = await resp.read()
                    if resp.status == 200:
                        self.counts.update(p, counts.parse(body))
        except _READ_ERRORS as e:
            log.warning("could not read request counts from workerd: %r", e)
        return True
