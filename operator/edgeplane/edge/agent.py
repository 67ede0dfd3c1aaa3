"""The agent: accepted state and the pushes that change it, gathered into batches.

It wires the parts: `batch` decides what pushes do, `validate` loads new versions in the
validator cell, `cells` runs the front and the cells that serve the accepted set (a change
is new code files and a new front state, never a restart), `watchdog` decides about the
versions that hang their cell, `inventory` reports it all, `probe` sends requests through
the public socket."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from yarl import URL

from edgeplane.edge import batch as batches
from edgeplane.edge import cron as crons
from edgeplane.edge import placement as places
from edgeplane.edge import probe as probes
from edgeplane.edge import render
from edgeplane.edge import watchdog as watch
from edgeplane.edge.assets import Sites, blobs_of, site_of
from edgeplane.edge.blobs import GRACE, BlobError, Blobs
from edgeplane.edge.cells import DataPlane, FrontDown
from edgeplane.edge.inventory import ChangeLog, Inventory
from edgeplane.edge.metrics import Metrics
from edgeplane.edge.result import Result
from edgeplane.edge.store import (
    LazyFile,
    Staged,
    Store,
    json_member,
    json_object,
    private_dir,
    secure_state,
)
from edgeplane.edge.validate import Validator
from edgeplane.wire import Bundle, Deployment, redact, secrets_of, signed_headers

log = logging.getLogger("edgeplane.agent")
COALESCE = 0.02
COALESCE_MAX = 0.5
# Batches validating at once: a slow validation (a loop at top level costs the whole
# timeout) does not hold the pushes of other Workers that arrive meanwhile.
BATCHES_IN_FLIGHT = 4


@dataclass
class _Pending:
    deployment: Deployment | None  # None: delete
    waiters: list[asyncio.Future[Result]] = field(default_factory=list)

    def answer(self, result: Result) -> None:
        for fut in self.waiters:
            if not fut.done():
                fut.set_result(result)


@dataclass
class _Batches:
    """The batches in flight: they validate beside each other; deciding and committing (which
    read what is served and change it) is one batch at a time."""

    busy: set[str] = field(default_factory=set)  # Workers whose batch is in flight
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    room: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(BATCHES_IN_FLIGHT))
    deciding: asyncio.Lock = field(default_factory=asyncio.Lock)


def _spec(b: Bundle) -> bytes:
    return json.dumps(render.code_spec(b, inline=False), separators=(",", ":")).encode()


def _specs(changes: Mapping[str, Deployment | None]) -> dict[str, bytes]:
    """The code file of each version of `changes` (seconds for the largest Workers: run in a
    thread, so the API answers meanwhile)."""
    return {b.version or "": _spec(b) for d in changes.values() if d for b in d.versions}


def _statics(deployments: Mapping[str, Deployment | None]) -> dict[str, Deployment]:
    """Own cell key → its Durable Object Worker, of `deployments`."""
    return {places.own(w): d for w, d in deployments.items() if d and render.needs_own_cell(d)}


def _push_label(status: int) -> str:
    """edgeplane_agent_pushes_total's label for an answer."""
    return "ok" if status < 400 else "refused" if status < 500 else "failed"


def _own_cells(deployments: Mapping[str, Deployment]) -> dict[str, bool]:
    return {w: render.needs_own_cell(d) for w, d in deployments.items()}


def _paths(state_dir: Path, store: Store, sites: Sites) -> render.Paths:
    return render.Paths(
        state_dir / "do", state_dir / "kv", store.code_dir, state_dir / "front", sites.links,
        store.blobs.root,
    )


class Agent:
    _swept = 0.0  # when unreferenced sites and blobs were last removed (monotonic)
    # Worker → its cell as a `json_member` of placement.json: encoded once per change, not
    # all 10,000 at each write of the file.
    _placed: dict[str, str]
    # Workers whose inventory item may have changed since the last inventory_since (None:
    # any), and what every item shows that was in force then (`_shared_facts`).
    _touched: set[str] | None = None
    _facts: tuple[object, ...] = ()

    def __init__(
        self,
        state_dir: Path,
        workerd_bin: Path,
        public: tuple[str, int],
        *,
        cells: int = 4,
        hang_timeout: float = 2.0,
        watch_interval: float = 0.5,
        drain_grace: float = 10.0,
        start_timeout: float = 60.0,
        validate_timeout: float = 10.0,
        bypass_status: int = 404,
        trust_forwarded_proto: bool = False,
        blob_grace: float = GRACE,
        coalesce: float = COALESCE,
    ) -> None:
        self.state_dir, self.workerd_bin = state_dir, workerd_bin
        self.coalesce = coalesce  # seconds a batch waits for the next push (`_quiet`)
        self.store = Store(state_dir, Blobs(state_dir, blob_grace))  # modules as blobs
        self.sites = Sites(state_dir, self.store.blobs)  # static assets' files too
        self.run_dir = private_dir(state_dir / "run")
        self.metrics = Metrics()
        self.accepted = batches.Served()
        self.refused: dict[str, str] = {}  # worker -> message of its last refused push
        self.pending: dict[str, _Pending] = {}
        self.validated: set[str] = set()
        self.exclusions: dict[str, tuple[str, ...]] = {}  # namespace -> patterns
        self.cells = places.Cells(cells)  # which cell serves which Worker
        self._placement_file = LazyFile(self.run_dir / "placement.json", 0.5)
        self.quarantine: dict[str, str] = {}  # version -> why it is quarantined here
        self.hangs: dict[str, list[float]] = {}  # version -> when it hung its cell
        self.bypass_status, self.trust_forwarded_proto = bypass_status, trust_forwarded_proto
        self.signing_key = ""  # loaded at start
        self.shared_cells = cells
        self._serving = asyncio.Lock()  # one change of what is served at a time
        key = self.store.load_internal_key()  # a small private file, read before serving
        self.validator = Validator(
            workerd_bin, self.run_dir, self.metrics, validate_timeout, key, self._http
        )
        self.dp = DataPlane(
            workerd_bin,
            self.run_dir,
            _paths(state_dir, self.store, self.sites),
            self.metrics,
            self._http,
            public,
            cells=cells,
            hang_timeout=hang_timeout,
            watch_interval=watch_interval,
            start_timeout=start_timeout,
            drain_grace=drain_grace,
            on_hang=self._hung,
            redact=lambda text: redact(text, secrets_of(self.accepted.values())),
            internal_key=key,
        )
        self._wake, self._batches = asyncio.Event(), _Batches()
        self._loop_task: asyncio.Task[None] | None = None
        self._refresh_lock, self._refreshed = asyncio.Lock(), 0.0
        self._session: aiohttp.ClientSession | None = None

    @functools.cached_property
    def changes(self) -> ChangeLog:
        """What changed in the inventory, for callers that ask only that (health checks)."""
        return ChangeLog()

    @functools.cached_property
    def cron(self) -> crons.Scheduler:
        """The cron triggers the operator's lease gives this location (edge/cron.py)."""
        return crons.Scheduler(self._scheduled, self.metrics.registry)

    async def _scheduled(self, worker: str, expression: str, at: int) -> tuple[str, bool]:
        """One cron occurrence of `worker`, run by its primary version in its cell."""
        d, cell = self.accepted.get(worker), self.cells.of.get(worker)
        p = self.dp.cells.get(cell) if cell else None
        if d is None or p is None:
            return "notDeployed", False
        return await crons.fire_at_cell(
            self._http(), p.ports["http"], self.dp.internal_key, d.primary, expression, at
        )

    @property
    def blobs(self) -> Blobs:
        """The location's blob store: modules and static assets' files by sha256."""
        return self.store.blobs

    def hydrated(self, d: Deployment) -> Deployment:
        """`d` with its modules by reference read from the blob store (a thread's work):
        FileNotFoundError for one not here, ValueError for a version id that does not
        match its modules."""
        return d.hydrated(self.blobs.read)

    def _http(self) -> aiohttp.ClientSession:
        """The agent's client for its own processes (state pushes, pings, probes): no pooled
        connections, so nothing holds a replaced process open."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(force_close=True), trust_env=False
            )
        return self._session

    @property
    def crash_message(self) -> str:
        """Why the location is not serving (the front), or ""."""
        return self.dp.unhealthy.get("front", "") if not self.dp.ready() else ""

    # ---- lifecycle -------------------------------------------------------------------
    async def start(self) -> None:
        # Before any workerd of this agent: the leftovers it purges are no running
        # process's (adopted processes read their configs when they started).
        await asyncio.to_thread(secure_state, self.state_dir)
        self.accepted = batches.Served(await asyncio.to_thread(self.store.load_all))
        self.exclusions = await asyncio.to_thread(self.store.load_exclusions)
        self.signing_key = await asyncio.to_thread(self.store.load_signing_key)
        self.quarantine = await asyncio.to_thread(self.store.load_quarantine)
        await self._restore_code()
        for f in self.store.set_aside:
            self.metrics.corrupt_files.labels(f.kind).inc()
        self.validated = batches.versions_of(self.accepted)
        self.metrics.workers.set(len(self.accepted))
        self.metrics.quarantined.set(len(self.quarantine))
        self._restore_placement()
        await asyncio.to_thread(self._point_sites, dict(self.accepted))
        await self.dp.start(_statics(self.accepted))
        entries = {w: render.worker_entry(d, self.cells.of[w]) for w, d in self.accepted.items()}
        try:
            await self.dp.publish(entries, self._settings())
        except FrontDown as e:
            log.error("the front did not take the stored state: %s", e)
        self._loop_task = asyncio.create_task(self._loop())
        log.debug("cron schedules: %d", len(self.cron.schedules))  # its metric from the start

    async def _restore_code(self) -> None:
        """The code file of every accepted version, whole (an older agent kept none; one
        cut short would fail that version's every request)."""
        await self.store.repair_code(
            {b.version or "": _spec(b) for d in self.accepted.values() for b in d.versions}
        )

    def _restore_placement(self) -> None:
        """Where each Worker ran before the restart (each keeps its cell), else anew."""
        previous: dict[str, str] = {}
        turn = -1
        with contextlib.suppress(OSError, ValueError, AttributeError, KeyError, TypeError):
            raw = json.loads((self.run_dir / "placement.json").read_bytes())
            previous = {str(k): str(v) for k, v in raw["cells"].items()}
            turn = int(raw["turn"])
        self.cells = places.restore(_own_cells(self.accepted), previous, self.shared_cells, turn)
        self._placed = {w: json_member(w, c) for w, c in self.cells.of.items()}

    async def close(self) -> None:
        self.dp.closing = True
        await self.cron.close()
        if self._loop_task:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        for task in list(self._batches.tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.dp.close()
        await self.validator.close()
        await self._placement_file.flush()
        if self._session is not None:
            await self._session.close()
        for p in self.pending.values():
            p.answer(Result.error(503, "agent is shutting down"))

    def ready(self) -> bool:
        return self.dp.ready()

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
            batch = self._take()
            if not batch:
                continue
            await self._batches.room.acquire()
            task = asyncio.create_task(self._run(batch))
            self._batches.tasks.add(task)
            task.add_done_callback(self._batches.tasks.discard)

    def _take(self) -> dict[str, _Pending]:
        """The pending changes of Workers that no batch in flight holds: each Worker's
        changes are served in the order they came, other Workers' beside them."""
        batch = {w: p for w, p in self.pending.items() if w not in self._batches.busy}
        for w in batch:
            del self.pending[w]
        self._batches.busy |= batch.keys()
        return batch

    async def _run(self, batch: dict[str, _Pending]) -> None:
        try:
            await self._process(batch)
        except asyncio.CancelledError:
            for p in batch.values():
                p.answer(Result.error(503, "agent is shutting down"))
            raise
        except Exception as e:  # never leave a PUT waiting forever
            log.exception("a batch of changes failed")
            for p in batch.values():
                p.answer(Result.error(500, f"agent error: {e}"))
        finally:
            self._batches.busy -= batch.keys()
            self._batches.room.release()
            if any(w in self.pending for w in batch):
                self._wake.set()  # changes that came for its Workers meanwhile

    async def _quiet(self) -> None:
        # Let a burst (e.g. 1,000 Workers applied at once) gather: wait until no new
        # change arrived for `coalesce` seconds, at most COALESCE_MAX (or `coalesce`).
        deadline = time.monotonic() + max(COALESCE_MAX, self.coalesce)
        while time.monotonic() < deadline:
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.coalesce):
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
        found = await self.validator.validate(new)  # beside other batches' validations
        if found.unavailable:
            log.error(
                "could not check %d versions: %s",
                len(found.unavailable),
                next(iter(found.unavailable.values())),
            )
        async with self._batches.deciding:
            decision = batches.decide(
                self.accepted, wanted, found.errors, self.exclusions, found.unavailable
            )
            self.refused.update(decision.refused)
            self.metrics.validation_failures.inc(len(decision.refused))
            results = dict(decision.results)
            if decision.changes:
                results.update(await self._commit(decision))
        self._touch(batch)  # served, refused or both
        for w, p in batch.items():
            r = results[w]
            self.metrics.pushes.labels(_push_label(r.status)).inc()
            p.answer(r)

    async def _commit(self, decision: batches.Decision) -> dict[str, Result]:
        """Store and serve the decided changes: their code files, their own cells (Durable
        Object Workers), the front's new state. Returns the answers that change: Workers
        whose own cell did not start, all when the front did not take the state, and all
        when the store could not be written (then nothing changed, here or on disk)."""
        changes = dict(decision.changes)
        started = time.monotonic()
        async with self._serving:
            previous = {w: self.accepted.get(w) for w in changes}
            try:
                staged = await self._stage(changes)
            except OSError as e:
                status, message = self._store_failed("batch", len(changes), e)
                return {w: Result.error(status, message, worker=w) for w in changes}
            candidate = decision.candidate
            failed = await self._start_own_cells(changes, candidate)
            for w in failed:
                changes.pop(w)
                staged.drop(w)
                candidate.pop(w, None)
                if previous[w] is not None:
                    candidate[w] = previous[w]  # type: ignore[assignment]
            await self.store.commit(staged)
            down = await self._publish(changes, candidate)
            if any((previous[w] is None) != (w not in candidate) for w in changes):
                self._touch(None)  # a Worker came or went: others' missing services change
            self.accepted = candidate
            await self.dp.drop_statics(
                {places.own(w) for w, d in changes.items() if not d or not render.needs_own_cell(d)}
            )
            await self.store.remove_code(
                batches.versions_of(previous)
                - batches.versions_of({w: candidate.get(w) for w in previous})
            )
            await asyncio.to_thread(self._collect_sites, {w: candidate.get(w) for w in failed})
        for w in changes:
            self.refused.pop(w, None)
        self.refused.update({w: str(r.body["error"]) for w, r in failed.items() if r.status == 422})
        self.validated |= batches.versions_of(changes)
        self.metrics.workers.set(len(self.accepted))
        self.metrics.publish_time.observe(time.monotonic() - started)
        out = dict(failed)
        if down:
            out |= {w: Result.error(503, down, worker=w) for w in changes}
        return out

    async def _stage(self, changes: dict[str, Deployment | None]) -> Staged:
        """Every file the batch needs, written before anything serves it: the new code
        files, then the deployments as temp files. Raises OSError (a full disk, no fds)
        with none of the batch's new files left."""
        code = await asyncio.to_thread(_specs, changes)
        fresh = await asyncio.to_thread(self.store.missing_code, code)
        try:
            await self.store.save_code(code)
            await asyncio.to_thread(self._point_sites, changes)
            return await self.store.prepare(changes)
        except OSError:
            with contextlib.suppress(OSError):
                await self.store.remove_code(fresh - batches.versions_of(self.accepted))
            raise

    def _point_sites(self, deployments: Mapping[str, Deployment | None]) -> None:
        """Each Worker with assets serves its primary's site, built from blobs (a missing
        blob is an OSError, as a full disk: nothing of the batch serves)."""
        for w, d in deployments.items():
            site = d and site_of(d)
            if site:
                try:
                    self.sites.point(w, self.sites.build(site))
                except BlobError as e:
                    raise OSError(f"assets of {w}: {e}") from None

    def _collect_sites(self, restored: Mapping[str, Deployment | None]) -> None:
        """After a batch: the Workers whose change did not happen serve their previous site
        again; sites and blobs nothing serves or references any more are removed, at most
        every tenth of the blobs' grace (a sweep lists every blob: at 10,000 Workers, too
        much for each batch; an unreferenced one is kept for the grace anyway)."""
        self._point_sites(restored)
        if time.monotonic() - self._swept < self.blobs.grace / 10:
            return
        self._swept = time.monotonic()
        served = [w for w, d in self.accepted.items() if site_of(d)]
        self.sites.collect(served)
        self.blobs.collect(blobs_of(self.accepted.values()))

    def _store_failed(self, what: str, n: int, e: OSError) -> tuple[int, str]:
        """Count and log a change that could not be stored; its answer's status, message."""
        status, message = batches.store_failed(e)
        self.metrics.store_write_failures.labels(what).inc()
        log.error(
            "could not store the %s (%d changes: %s): answered %d, nothing changed, the last "
            "good versions keep serving",
            what,
            n,
            e,
            status,
        )
        return status, message

    async def _start_own_cells(
        self, changes: dict[str, Deployment | None], candidate: dict[str, Deployment]
    ) -> dict[str, Result]:
        """Start the own cells of the changed Durable Object Workers; Worker → the answer
        when its cell did not start (its last good version keeps serving)."""
        statics = {
            places.own(w): d
            for w, d in changes.items()
            if d is not None and render.needs_own_cell(d)
        }
        errors = await self.dp.set_statics(statics)
        return {
            w: batches.own_cell_failure(w, *errors[places.own(w)])
            for w in changes
            if places.own(w) in errors
        }

    async def _publish(
        self, changes: Mapping[str, Deployment | None], candidate: Mapping[str, Deployment]
    ) -> str:
        """The front serves `candidate`, of which `changes` changed; "" once it does, else
        why not (the change is stored: the front gets it when it is back)."""
        entries: dict[str, dict[str, object] | None] = {}
        for w in changes:
            if (d := candidate.get(w)) is None:
                self.cells.drop(w)
                self._placed.pop(w, None)
                entries[w] = None
            else:
                cell = self.cells.put(w, render.needs_own_cell(d))
                self._placed[w] = json_member(w, cell)
                entries[w] = render.worker_entry(d, cell)
        placed, turn = list(self._placed.values()), self.cells.turn  # a copy: written later
        self._placement_file.write_soon(lambda: json_object({"turn": turn}, "cells", placed))
        try:
            await self.dp.publish(entries, None)
            self.metrics.publishes.labels("ok").inc()
            return ""
        except FrontDown as e:
            self.metrics.publishes.labels("failed").inc()
            log.error("%s", e)
            return f"stored, but this location's front is not serving it yet: {e}"

    def _settings(self) -> dict[str, object]:
        router = render.RouterSettings(
            self.exclusions, self.bypass_status, self.signing_key, self.trust_forwarded_proto
        )
        return render.front_settings(self.quarantine, router)

    async def _publish_settings(self) -> str:
        try:
            await self.dp.publish({}, self._settings())
            return ""
        except FrontDown as e:
            return str(e)

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
            try:  # stored first: memory never holds what the disk does not
                await self.store.save_exclusions(new)
            except OSError as e:
                status, message = self._store_failed("exclusions", 1, e)
                return Result.error(status, message, namespace=namespace)
            self.exclusions = new
            down = await self._publish_settings()
            if down:
                return Result.error(503, f"stored, but the front did not take it: {down}")
            return Result(200, {"changed": True, "namespace": namespace})

    async def use_signing_key(self, key: str) -> Result:
        """Sign override headers with the operator's key from now on (it goes into the
        front's state)."""
        async with self._serving:
            if key == self.signing_key:
                return Result(200, {"changed": False})
            try:
                await self.store.save_signing_key(key)
            except OSError as e:
                return Result.error(*self._store_failed("signing-key", 1, e))
            self.signing_key = key
            down = await self._publish_settings()
            if down:
                msg = redact(down, [*secrets_of(self.accepted.values()), key])
                return Result.error(503, f"stored, but the front did not take it: {msg}")
            return Result(200, {"changed": True})

    # ---- the watchdog's findings -----------------------------------------------------
    async def _hung(self, cell: str, suspect: watch.Suspect | None) -> None:
        """A cell hung and was replaced: count it against the version it was running, and
        quarantine that version here once it keeps doing so."""
        if suspect is None:
            log.error("cell %s hung with no request in flight", cell)
            return
        now = time.monotonic()
        times = self.hangs[suspect.version] = [
            *watch.recent(self.hangs.get(suspect.version, []), now),
            now,
        ]
        log.error(
            "cell %s hung in a request to Worker %s version %s (%d in the window)",
            cell,
            suspect.worker,
            suspect.version[:12],
            len(times),
        )
        reason = watch.quarantine_reason(times, now, suspect)
        if reason is None or suspect.version in self.quarantine:
            return
        async with self._serving:
            self.quarantine[suspect.version] = reason
            try:  # quarantined here even if the disk is full: forgotten at a restart then
                await self.store.save_quarantine(self.quarantine)
            except OSError as e:
                self.metrics.store_write_failures.labels("quarantine").inc()
                log.error("could not store the quarantine of %s: %s", suspect.version[:12], e)
            self.metrics.quarantined.set(len(self.quarantine))
            await self._publish_settings()
        log.error(
            "quarantined Worker %s version %s: %s", suspect.worker, suspect.version[:12], reason
        )

    # ---- request counts, probes, inventory -------------------------------------------
    async def refresh_counts(self) -> None:
        """Read the front's counts now (callers that arrive while a read is under way share
        it)."""
        asked = time.monotonic()
        async with self._refresh_lock:
            if self._refreshed >= asked:
                return  # a read that started after this call finished meanwhile
            started = time.monotonic()
            if await self.dp.read_counts():
                self._refreshed = started
            self.metrics.export_requests(self.dp.counts.totals())

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
            base = probes.base_url(self.dp.http_address)
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

    def _inventory(self, workers: Iterable[str] | None = None, requests: bool = True) -> Inventory:
        """The inventory, its cells' facts for `workers` only if given, its request counts
        only if asked."""
        of = self.cells.of
        if workers is not None:
            of = {w: c for w in workers if (c := self.cells.of.get(w))}
        return Inventory(
            self.accepted,
            self.refused,
            self.ready(),
            self.crash_message,
            self.dp.counts.totals() if requests else {},
            self.quarantine,
            {w: self.dp.unhealthy.get(c, "") for w, c in of.items()},
            {w: self.dp.start_failed.get(c, "") for w, c in of.items()},
            self.accepted.identities,
        )

    def _touch(self, workers: Iterable[str] | None) -> None:
        """Their inventory items may have changed (None: anyone's)."""
        if workers is None or self._touched is None:
            self._touched = None
        else:
            self._touched |= set(workers)

    def _shared_facts(self) -> tuple[object, ...]:
        """What items show beside their own Worker's: the front, the cells, the quarantine
        (each dict keyed by process or version: small, however many Workers)."""
        return (
            self.ready(),
            self.crash_message,
            dict(self.quarantine),
            dict(self.dp.unhealthy),
            dict(self.dp.start_failed),
        )

    def item(self, worker: str) -> dict[str, object] | None:
        return self._with_cron(self._inventory().item(worker))

    def inventory(self, requests: bool = True) -> list[dict[str, object]]:
        items = self._inventory(requests=requests).items(requests)
        return [i for i in map(self._with_cron, items) if i is not None]

    def inventory_since(self, cursor: str) -> dict[str, object]:
        """What changed in the inventory since `cursor` (request counts left out). Only the
        items of Workers touched since the last answer are built again, unless what every
        item shows changed: building all 10,000 at each health check was most of an idle
        agent's CPU."""
        touched, self._touched = self._touched, set()
        touched = None if touched is None else touched | self.cron.ran
        self.cron.ran = set()
        facts = self._shared_facts()
        if touched is None or facts != self._facts:
            self._facts = facts
            self.changes.observe(self.inventory(requests=False))
        else:
            inventory = self._inventory(touched, requests=False)
            self.changes.update(
                {w: self._with_cron(inventory.item(w, requests=False)) for w in touched}
            )
        return self.changes.since(cursor)

    def _with_cron(self, item: dict[str, object] | None) -> dict[str, object] | None:
        """The item, with the last cron run of its Worker at this location, if any."""
        last = self.cron.last.get(str(item["worker"])) if item else None
        return item if item is None or last is None else {**item, "cron": last.wire()}


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
                body = raw.decode("utf-8", errors="replace")[: probes.BODY_CHARS]
    except TimeoutError:
        error = f"no complete answer within {seconds:g}s"
    except (aiohttp.ClientError, OSError) as e:
        error = f"{type(e).__name__}: {e}".strip()
    elapsed = time.monotonic() - started
    return probes.answer(t, path, status=status, body=body, elapsed=elapsed, error=error)
