"""The location's workerd processes: the front, the cells, and the watchdog over them.

The front (router, no tenant code) owns the public socket and sends each request to the
cell that serves its Worker; cells load Worker versions on demand (render.py, host_js.py).
A deploy is a new front state (`publish`), never a restart; only a Durable Object Worker's
own cell is restarted, when that Worker changes.

Every process is detached from the agent and listed in `run/dataplane.json`, so a restarted
agent adopts them (`start`): a SIGKILLed agent leaves the location serving. The watchdog
pings the front and every cell on its own path; a process that exited or does not answer
within `hang_timeout` is replaced, the front moved to the replacement before the old one is
killed. For a hung cell the front names the request it was stuck in (`/inflight`), and
`on_hang` decides about quarantine."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path

import aiohttp

from edgeplane.edge import counts, integrity, render, workerd
from edgeplane.edge.metrics import Metrics
from edgeplane.edge.placement import shared
from edgeplane.edge.store import LazyFile, atomic_write, json_member, json_object, private_dir
from edgeplane.edge.watchdog import Suspect, culprit, says_nothing
from edgeplane.wire import Deployment, redact, secrets_of

log = logging.getLogger("edgeplane.agent")
ADMIN_TIMEOUT = 5.0  # a state push or a counts read; the front runs no tenant code
# Seconds between writes of the front's whole state to disk (what a front that restarts
# while the agent is away serves, until the agent is back and pushes it all): rewriting it
# takes tens of ms of CPU at 10,000 Workers, so not after every deploy.
DISK_EVERY = 2.0
_HTTP_ERRORS = (aiohttp.ClientError, OSError, TimeoutError, ValueError)


def _state_json(head: dict[str, object], workers: list[str]) -> bytes:
    return json_object(head, "workers", workers)


class FrontDown(Exception):
    """The front did not take a state push."""


def bind(host: str, port: int) -> socket.socket:
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, port))
    s.listen(4096)
    return s


class DataPlane:
    def __init__(
        self,
        workerd_bin: Path,
        run_dir: Path,
        paths: render.Paths,
        metrics: Metrics,
        http: Callable[[], aiohttp.ClientSession],
        public: tuple[str, int],
        *,
        cells: int,
        hang_timeout: float,
        watch_interval: float,
        start_timeout: float,
        drain_grace: float,
        on_hang: Callable[[str, Suspect | None], Awaitable[None]],
        redact: Callable[[str], str],
        internal_key: str,
    ) -> None:
        self.workerd_bin = workerd_bin
        self.run_dir = run_dir
        self.paths = paths
        self.metrics = metrics
        self.http = http
        self.public = public  # (host, port) of the public socket; port 0: any
        self.shared_cells = cells
        self.hang_timeout = hang_timeout
        self.watch_interval = watch_interval
        self.start_timeout = start_timeout
        self.drain_grace = drain_grace
        self.on_hang = on_hang
        self.redact = redact  # workerd's stderr may echo a Worker's secrets
        self.internal_key = internal_key
        self.tail_port = 0  # the agent's tail sink (edge/tail.py), set before start; 0: none
        self.auth = {"edgeplane-internal": internal_key}  # on every call to the processes
        self.front: workerd.Proc | None = None
        self.cells: dict[str, workerd.Proc] = {}
        self.statics: dict[str, Deployment] = {}  # own cell key → the Worker it holds
        self._adopted_statics: dict[str, str] = {}  # own cell key → identity, when adopted
        self.unhealthy: dict[str, str] = {}  # process key → why it is not answering
        # Own cell key → why its Worker's cell did not start (retried, with backoff, until it
        # does or the Worker changes); the rest of the location serves meanwhile.
        self.start_failed: dict[str, str] = {}
        self._retry: dict[str, tuple[float, float]] = {}  # key → (next attempt, delay)
        self.counts = counts.Counts()
        self.closing = False
        self._sockets: dict[str, socket.socket] = {}  # the front's, while the agent holds them
        self.workers: dict[str, str] = {}  # Worker → its front entry, as a `json_member`
        self.settings: dict[str, object] = {}  # render.front_settings
        self._dirty: set[str] = set()  # Workers changed since the front's state
        self._seq = 0
        self._front_seq: int | None = None  # the state the front holds; None: unknown
        self._published = False  # the agent has said what to serve (start publishes it all)
        # The front's whole state on disk, for a front that starts while the agent is away.
        failures = metrics.store_write_failures.labels("front-state")
        self._disk = LazyFile(Path(paths.front_dir) / "state.json", DISK_EVERY, failures.inc)
        self._lock = asyncio.Lock()  # one change of processes or state at a time
        self._tasks: set[asyncio.Task[None]] = set()
        self._file = run_dir / "dataplane.json"
        self._unsaved = False  # the last write of _file failed
        self._short_of_fds = -60.0  # when a ping that could not even be sent was last logged

    # ---- lifecycle -------------------------------------------------------------------
    async def start(self, statics: Mapping[str, Deployment]) -> None:
        """Adopt the processes a previous agent left running, or start them; then watch.
        `statics`: own cell key → its Durable Object Worker, as accepted."""
        async with self._lock:
            await self._adopt()
            if self.front is None:
                for p in self.cells.values():
                    await workerd.kill(p)  # they point at the old front's internal socket
                self.cells.clear()
                await self._start_front()
            for i in range(self.shared_cells):
                if shared(i) not in self.cells:
                    await self._start_cell(shared(i), None)
            for key, d in statics.items():
                if key in self.cells and self._adopted_statics.get(key) == render.cell_identity(d):
                    self.statics[key] = d
                else:
                    await self._try_cell(key, d)
            for key in [k for k in self.cells if not _wanted(k, self.shared_cells, statics)]:
                self._retire(self.cells.pop(key))
            await self._save()
        self._spawn(self._watch())

    async def _ensure_cells(self) -> None:
        """Start the cells that should run and do not (one that failed to start before)."""
        missing = [shared(i) for i in range(self.shared_cells) if shared(i) not in self.cells]
        missing += [k for k in self.statics if k not in self.cells]
        now = time.monotonic()
        missing = [k for k in missing if self._retry.get(k, (0.0, 0.0))[0] <= now]
        if not missing or self.front is None:
            return
        async with self._lock:
            for key in missing:  # one that does not start never keeps the next from it
                if key not in self.cells:
                    await self._try_cell(key, self.statics.get(key))
            await self._save()

    async def _try_cell(self, key: str, static: Deployment | None) -> bool:
        """`_replace_cell`, but a cell that does not start is recorded, not raised: its
        Worker is reported failed, the watchdog tries again later (backing off), and every
        other cell is started and served meanwhile."""
        try:
            await self._replace_cell(key, static)
        except (workerd.StartFailed, OSError) as e:  # OSError: no fds, no disk for its dirs
            text = e.message if isinstance(e, workerd.StartFailed) else f"{type(e).__name__}: {e}"
            why = redact(self.redact(text), secrets_of([static] if static else []))
            self.start_failed[key] = self.unhealthy[key] = f"cell {key} did not start: {why}"
            previous = self._retry.get(key)
            delay = integrity.next_retry(previous[1] if previous else None)
            self._retry[key] = (time.monotonic() + delay, delay)
            if static is not None:
                self.statics[key] = static  # what to try again
            old = self.cells.get(key)
            if old is not None and not old.alive():
                self.cells.pop(key)  # missing, so retried by _ensure_cells with its delay
            log.error("%s (next try in %gs)", self.start_failed[key], delay)
            return False
        self.start_failed.pop(key, None)
        self._retry.pop(key, None)
        return True

    async def close(self) -> None:
        self.closing = True
        for t in list(self._tasks):
            t.cancel()
        for t in list(self._tasks):
            with contextlib.suppress(BaseException):
                await t
        procs = [*self.cells.values(), *([self.front] if self.front else [])]
        await asyncio.gather(*(workerd.stop(p, self.drain_grace) for p in procs))
        self.cells.clear()
        self.front = None
        for s in self._sockets.values():
            s.close()
        self._file.unlink(missing_ok=True)
        self._disk.cancel()

    def ready(self) -> bool:
        return self.front is not None and self.front.alive() and "front" not in self.unhealthy

    @property
    def http_address(self) -> tuple[str, int]:
        port = self.front.ports.get("http", self.public[1]) if self.front else self.public[1]
        return self.public[0], port

    def _spawn(self, coro: Awaitable[None]) -> None:
        t = asyncio.ensure_future(coro)
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    # ---- state -----------------------------------------------------------------------
    async def publish(
        self, workers: Mapping[str, dict[str, object] | None], settings: dict[str, object] | None
    ) -> None:
        """Make the front serve `workers` (Worker → its render.worker_entry, None: gone) and
        `settings` (render.front_settings; None: unchanged). Only the changes are sent, so a
        deploy costs the same whatever the number of Workers; FrontDown if the front did not
        take them (it gets the whole state once it is back)."""
        async with self._lock:
            for w, entry in workers.items():
                if entry is None:
                    self.workers.pop(w, None)
                else:
                    self.workers[w] = json_member(w, entry)
            self._dirty |= set(workers)
            if settings is not None:
                self.settings = settings
            self._published = True
            await self._push()

    def _state(self, whole: bool) -> tuple[dict[str, object], list[str]]:
        """The state to send (all of it, or what changed since the front's) as `_state_json`'s
        arguments: a snapshot, it may be written to disk later. Each Worker's entry was
        encoded once, when it changed: encoding all 10,000 for each disk copy held the
        agent's interpreter for 100s of ms and slowed every deploy."""
        head = {
            "base": self._front_seq,
            "seq": self._seq,
            **self.settings,
            "cells": {k: c.ports["http"] for k, c in self.cells.items()},
        }
        if whole:
            return head, list(self.workers.values())
        return head, [self.workers.get(w) or json_member(w, None) for w in self._dirty]

    async def _push(self) -> None:
        """Send the front what it lacks: the changes since the state it holds, or the whole
        state when it holds none the agent knows (a new or adopted front)."""
        if not self._published:
            return  # nothing to tell yet: an adopted front keeps what it serves until then
        if self.front is None:
            raise FrontDown("the front is not running")
        self._seq += 1
        whole = self._front_seq is None
        status = await self._send(_state_json(*self._state(whole)), whole)
        if status == 409 and not whole:  # it lacks the base: send it all
            status = await self._send(_state_json(*self._state(True)), True)
        if status != 200:
            self._front_seq = None
            raise FrontDown(f"the front answered {status} to a state push")
        self._front_seq = self._seq
        self._dirty.clear()
        state = self._state(True)
        self._disk.write_soon(lambda: _state_json(*state))

    async def _send(self, body: bytes, whole: bool) -> int:
        assert self.front is not None
        url = f"http://127.0.0.1:{self.front.ports['admin']}/state"
        try:
            async with asyncio.timeout(ADMIN_TIMEOUT):
                method = "PUT" if whole else "PATCH"
                async with self.http().request(method, url, data=body, headers=self.auth) as r:
                    return r.status
        except _HTTP_ERRORS as e:
            self._front_seq = None
            raise FrontDown(f"the front did not take the new state: {e!r}") from None

    async def set_statics(self, statics: Mapping[str, Deployment]) -> dict[str, tuple[str, bool]]:
        """Start a new own cell for each Durable Object Worker that changed (the old one keeps
        serving until `publish` moved the front); returns cell key → why it did not start,
        and whether that may pass by itself (a timeout on a loaded machine, no fds or disk
        for its config) rather than be the Worker's fault."""
        errors: dict[str, tuple[str, bool]] = {}
        async with self._lock:
            for key, d in statics.items():
                old = self.statics.get(key)
                if old is not None and render.cell_identity(old) == render.cell_identity(d):
                    self.statics[key] = d  # the same config: no restart (an assets version)
                    continue
                try:
                    await self._replace_cell(key, d)
                    self.start_failed.pop(key, None)
                    self._retry.pop(key, None)
                except workerd.StartFailed as e:
                    errors[key] = (redact(e.message, secrets_of([d])), e.timed_out)
                except OSError as e:
                    errors[key] = (f"{type(e).__name__}: {e}", True)
                await self._save()
        return errors

    async def drop_statics(self, gone: set[str]) -> None:
        """Stop the own cells `gone` (their Worker is gone or no longer binds a Durable Object
        class); after `publish`, so no route points at them."""
        async with self._lock:
            for key in gone & set(self.statics):
                self.statics.pop(key)
                self.start_failed.pop(key, None)
                self._retry.pop(key, None)
                self.unhealthy.pop(key, None)
                if key in self.cells:
                    self._retire(self.cells.pop(key))
                await self._save()

    # ---- processes -------------------------------------------------------------------
    async def _start_front(self) -> None:
        socks = self._front_sockets()
        private_dir(Path(self.paths.kv_dir))
        private_dir(Path(self.paths.front_dir))
        if self._published:
            # The disk copy lags by up to DISK_EVERY: a new front reads it before the agent's
            # first push reaches it, and requests may be waiting in the socket's backlog.
            body = _state_json(*self._state(True))
            try:
                await asyncio.to_thread(atomic_write, self._disk.path, body)
            except OSError as e:  # a full disk: the agent pushes it the whole state anyway
                self._write_failed("front-state", e)
        p = await self._run(render.front_config(self.paths, self.internal_key), socks)
        self.front = p
        self._front_seq = None  # a new front holds the state on disk, maybe stale
        self.counts.start(p)
        self.unhealthy.pop("front", None)

    def _front_sockets(self) -> dict[str, int | None]:
        """The front's listening sockets, bound by the agent (so a replacement front takes
        over the same ones, connections queued meanwhile included): the public one and two
        loopback ones, on the ports the last front used where possible."""
        want = {"http": self.public, "admin": ("127.0.0.1", 0), "internal": ("127.0.0.1", 0)}
        saved = self._load().get("front", {}).get("ports", {})
        for name, (host, port) in want.items():
            if name in self._sockets:
                continue
            if name != "http":
                port = int(saved.get(name, 0))  # the cells' configs name the internal port
            try:
                self._sockets[name] = bind(host, port)
            except OSError:
                if name == "http":
                    raise
                self._sockets[name] = bind(host, 0)
        return {name: s.fileno() for name, s in self._sockets.items()}

    async def _start_cell(self, key: str, static: Deployment | None) -> workerd.Proc:
        assert self.front is not None
        if static is not None:
            await asyncio.to_thread(private_dir, Path(self.paths.do_dir))
        text = render.cell_config(
            self.paths, self.front.ports["internal"], self.internal_key, static, self.tail_port
        )
        p = await self._run(text, {"http": None})
        self.cells[key] = p
        if static is not None:
            self.statics[key] = static
        self.unhealthy.pop(key, None)
        self.metrics.cells.set(len(self.cells))
        return p

    async def _replace_cell(self, key: str, static: Deployment | None) -> None:
        """A new process for cell `key`; the old one drains once the front has moved."""
        old = self.cells.get(key)
        await self._start_cell(key, static)
        if self.front is not None:
            with contextlib.suppress(FrontDown):
                await self._push()
        if old is not None:
            self._retire(old)

    async def _run(self, text: str, sockets: dict[str, int | None]) -> workerd.Proc:
        """workerd on config `text` (in memory: never on disk, where it would need room and
        hold secrets), detached. Its stderr is a pipe the agent reads into memory, never a
        file: workerd echoes Workers' exceptions there, secrets and all. Once the agent is
        gone, workerd's writes to it fail and are lost (it carries on); an adopted
        process's stderr is unknown."""
        return await workerd.start_in_memory(
            self.workerd_bin,
            text,
            sockets=sockets,
            start_timeout=self.start_timeout,
            detached=True,
        )

    def _retire(self, p: workerd.Proc) -> None:
        self._spawn(workerd.stop(p, self.drain_grace))

    # ---- adoption --------------------------------------------------------------------
    def _load(self) -> dict[str, dict[str, object]]:
        try:
            return json.loads(self._file.read_bytes())
        except (OSError, ValueError):
            return {}

    async def _save(self) -> None:
        """The processes this agent runs, for the next agent to adopt."""

        def entry(p: workerd.Proc) -> dict[str, object]:
            return {"pid": p.pid, "started": p.started, "ports": p.ports}

        doc: dict[str, object] = {
            "host": render.HOST_GENERATION,
            "front": entry(self.front) if self.front else None,
            "cells": {k: entry(p) for k, p in self.cells.items()},
            "statics": {k: render.cell_identity(d) for k, d in self.statics.items()},
        }
        try:
            await asyncio.to_thread(atomic_write, self._file, json.dumps(doc).encode())
            self._unsaved = False
        except OSError as e:
            # A full disk must not stop a process change half-way: the watchdog writes it
            # again (until then an agent restarted here would not adopt the changed ones).
            if not self._unsaved:  # once, not at every watchdog pass while the disk is full
                self._write_failed("dataplane", e)
            self._unsaved = True

    def _write_failed(self, file: str, e: OSError) -> None:
        self.metrics.store_write_failures.labels(file).inc()
        log.error("could not write the %s file: %s", file, e)

    async def _adopt(self) -> None:
        saved = self._load()
        front = _adopt_one(saved.get("front"))
        if front is not None and not self._public_matches(front):
            await workerd.kill(front)
            front = None
        if front is not None and await self._ping(front, "admin", "/ping") is None:
            self.front = front
            self.public = (self.public[0], front.ports["http"])
            self.counts.start(front)
            log.info("adopted the running front (pid %d)", front.pid)
        elif front is not None:
            await workerd.kill(front)
        cells = saved.get("cells") or {}
        assert isinstance(cells, dict)
        same_code = saved.get("host") == render.HOST_GENERATION
        for key, e in cells.items():
            p = _adopt_one(e)
            if p is not None and not same_code:
                log.info("replacing cell %s (pid %d): it runs another release's code", key, p.pid)
                await workerd.kill(p)
            elif p is not None:
                self.cells[key] = p
        statics = saved.get("statics") or {}
        assert isinstance(statics, dict)
        self._adopted_statics = {str(k): str(v) for k, v in statics.items()}
        log.info("adopted %d running cells", len(self.cells))

    def _public_matches(self, front: workerd.Proc) -> bool:
        return self.public[1] in (0, front.ports.get("http"))

    # ---- watchdog --------------------------------------------------------------------
    async def _ping(self, p: workerd.Proc, socket_name: str, path: str) -> str | None:
        """None if `p` answered `path` within hang_timeout (or the agent could not ask: it
        is out of fds), else why not."""
        if not p.alive():
            return self.redact(f"exited ({p.returncode}): {p.stderr_text()[-500:]}".strip())
        url = f"http://127.0.0.1:{p.ports[socket_name]}{path}"
        try:
            async with asyncio.timeout(self.hang_timeout):
                async with self.http().get(url, headers=self.auth) as resp:
                    await resp.read()
                    return None if resp.status == 200 else f"answered {resp.status}"
        except TimeoutError:
            return f"did not answer within {self.hang_timeout:g}s"
        except (aiohttp.ClientError, OSError) as e:
            if says_nothing(getattr(e, "errno", None)):  # the agent is out of fds: not p
                if time.monotonic() - self._short_of_fds > 30:  # once a while, not every pass
                    log.error("could not ping a process (%s): not replacing it for that", e)
                    self._short_of_fds = time.monotonic()
                return None
            return f"{type(e).__name__}: {e}"

    async def _watch(self) -> None:
        while not self.closing:
            await asyncio.sleep(self.watch_interval)
            try:
                await self._check_front()
                await self._ensure_cells()
                if self._unsaved:
                    async with self._lock:
                        await self._save()
                cells = list(self.cells.items())
                why = await asyncio.gather(
                    *(self._ping(p, "http", "/__edgeplane/ping") for _, p in cells)
                )
                for (key, p), reason in zip(cells, why, strict=True):
                    if reason is not None and self.cells.get(key) is p:
                        await self._cell_down(key, p, reason)
            except Exception:  # the watchdog must outlive any one failure
                log.exception("watchdog pass failed")

    async def _check_front(self) -> None:
        front = self.front
        reason = "not running" if front is None else await self._ping(front, "admin", "/ping")
        if reason is None:
            self.unhealthy.pop("front", None)
            return
        self.unhealthy["front"] = f"the front {reason}"
        log.error("the front %s: replacing it", reason)
        kind = "hang" if front is not None and front.alive() else "crash"
        self.metrics.restarts.labels("front", kind).inc()
        async with self._lock:
            if front is not None:
                self.counts.finish(front, None)
                await workerd.kill(front)
                self.front = None
            old_internal = front.ports.get("internal") if front else None
            await self._start_front()
            assert self.front is not None
            if self.front.ports["internal"] != old_internal:
                for key in list(self.cells):  # their config names the internal port
                    await self._try_cell(key, self.statics.get(key))
            with contextlib.suppress(FrontDown):
                await self._push()
            await self._save()

    async def _cell_down(self, key: str, p: workerd.Proc, reason: str) -> None:
        hung = p.alive()
        self.unhealthy[key] = f"cell {key} {reason}"
        log.error("cell %s %s: replacing it", key, reason)
        self.metrics.restarts.labels("cell", "hang" if hung else "crash").inc()
        suspect = culprit(await self.inflight(), key) if hung else None
        async with self._lock:
            if self.cells.get(key) is not p:
                return  # replaced meanwhile
            await workerd.kill(p)  # before the replacement: a hung cell never drains
            await self._try_cell(key, self.statics.get(key))
            await self._save()
        if hung:
            await self.on_hang(key, suspect)

    async def inflight(self) -> list[dict[str, object]]:
        """The requests the front has sent to cells and not had answered."""
        doc = await self._admin_get("/inflight")
        return list(doc.get("inflight", [])) if doc else []

    async def read_counts(self) -> bool:
        """Read the front's request counts into `counts`; False if no front answers."""
        front = self.front
        doc = await self._admin_get("/counts")
        if front is None or doc is None:
            return False
        with contextlib.suppress(ValueError, KeyError, TypeError):
            self.counts.update(front, counts.parse(json.dumps(doc).encode()))
        return True

    async def _admin_get(self, path: str) -> dict[str, object] | None:
        if self.front is None:
            return None
        url = f"http://127.0.0.1:{self.front.ports['admin']}{path}"
        try:
            async with asyncio.timeout(ADMIN_TIMEOUT):
                async with self.http().get(url, headers=self.auth) as resp:
                    return dict(await resp.json()) if resp.status == 200 else None
        except _HTTP_ERRORS as e:
            log.warning("could not read %s from the front: %r", path, e)
            return None


def recorded_pids(run_dir: Path) -> list[int]:
    """The pids of the workerd processes `run_dir/dataplane.json` lists that still run (the
    same process: pid and start time): what to end when a location is torn down for good
    while its agent is not running to do it (tests, `edgeplane demo`)."""
    try:
        doc = json.loads((run_dir / "dataplane.json").read_bytes())
    except (OSError, ValueError):
        return []
    entries = [doc.get("front"), *(doc.get("cells") or {}).values()]
    return [
        int(e["pid"])
        for e in entries
        if isinstance(e, dict) and workerd.start_time(int(e["pid"])) == e.get("started")
    ]


def _wanted(key: str, shared_cells: int, statics: Mapping[str, object]) -> bool:
    return key in statics or key in {shared(i) for i in range(shared_cells)}


def _adopt_one(entry: object) -> workerd.Proc | None:
    if not isinstance(entry, dict):
        return None
    with contextlib.suppress(KeyError, TypeError, ValueError):
        ports = {str(k): int(v) for k, v in entry["ports"].items()}
        return workerd.Proc.adopt(int(entry["pid"]), int(entry["started"]), ports)
    return None
