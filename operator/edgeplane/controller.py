"""The operator's wiring: watch events (from handlers.py) update the caches and feed one
keyed work queue; its handler calls the Worker or WorkerRoute loop; a resync and a
health check of every location run on timers. Nothing here decides or talks to an agent
itself."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from kubernetes_asyncio import client as kclient
from kubernetes_asyncio.client.rest import ApiException

from edgeplane.distribute.fleet import Fleet, FleetSettings
from edgeplane.kube.client import Kube, namespace_terminating
from edgeplane.kube.fence import Fence, Fenced
from edgeplane.kube.leases import Elector
from edgeplane.plan.buckets import DEFAULT_BUCKETS, LOCATION_WIDE, Timings, key_bucket
from edgeplane.plan.lanes import Lane
from edgeplane.plan.relist import gone
from edgeplane.plan.retry import spread
from edgeplane.plan.rollout import read_actions
from edgeplane.plan.targets import WorkerKey, full_name
from edgeplane.reconcile.cache import Cache
from edgeplane.reconcile.exclusions import ExclusionReconciler
from edgeplane.reconcile.route import RouteReconciler
from edgeplane.reconcile.worker import FINALIZER, WorkerReconciler
from edgeplane.reconcile.workqueue import WorkQueue
from edgeplane.report import metrics
from edgeplane.report.writer import StatusWriter
from edgeplane.resolve.policy import UrlSettings
from edgeplane.resolve.sources import Resolver
from edgeplane.routing import conflict_key
from edgeplane.versions.artifacts import RegistrySettings
from edgeplane.versions.registry import VersionRegistry
from edgeplane.versions.store import VersionStore
from edgeplane.wire import MAX_CRON_LEASE, derive_key

log = logging.getLogger("edgeplane.controller")

# Keys of the work queue: ("Worker" | "WorkerRoute", namespace, name),
# ("Exclusions", namespace, "") for a namespace's routes without a Worker, or
# ("HostClaim", "", name).
Key = tuple[str, str, str]


@dataclass(frozen=True)
class Settings:
    versions_retained: int = 10
    # Where versions' code is kept (--version-registry); None: ConfigMaps.
    version_registry: RegistrySettings | None = None
    concurrency: int = 32
    # Level-triggered safety net: every Worker is reconciled at least this often.
    resync_interval: float = 300.0
    # Seconds between health checks (and inventory reads) of each EdgeTarget.
    health_interval: float = 5.0
    # EdgeTarget status is written when something changes, and at least this often.
    heartbeat_interval: float = 30.0
    # Namespaces watched; empty: all. Only Workers of these are collected from agents.
    namespaces: tuple[str, ...] = ()
    # After start, the watches need a moment to list every Worker; until then a Worker an
    # agent serves but the cache lacks is not even checked as an orphan.
    orphan_grace: float = 30.0
    # The only namespaces EdgeTargets' credential Secrets are read from.
    credentials_namespaces: tuple[str, ...] = ("edgeplane-system",)
    # How url modules are downloaded: addresses, CA bundle, timeout, cache.
    urls: UrlSettings = field(default_factory=UrlSettings)
    # Signs version override and sticky headers at every location ("": none count).
    signing_key: str = field(default="", repr=False)
    # A watch that delivers nothing for this long is taken as dead and opened again (no
    # relist unless its resourceVersion is gone). A healthy one delivers the apiserver's
    # bookmark about every 60 s even when nothing changes, so this bounds how long a
    # silently stalled connection (a dropped NAT entry, a hung proxy) can hide changes.
    watch_idle_timeout: float = 70.0
    # Seconds between kopf starting to list a kind again and our own list that finds what
    # was deleted during the watch gap (kopf's list has no DELETED events).
    relist_settle: float = 2.0
    # Active-active replicas (--replicas): above 1, the keys are split into `buckets`, each
    # held through a Lease in `lease_namespace`; `identity` names this replica.
    replicas: int = 1
    buckets: int = DEFAULT_BUCKETS
    identity: str = ""
    lease_namespace: str = "edgeplane-system"
    lease_timings: Timings = field(default_factory=Timings)


def worker_changed(old: dict[str, Any] | None, new: dict[str, Any]) -> bool:
    """Whether a Worker event needs a reconcile: our own status writes come back as events
    too, and change none of these."""
    if old is None:
        return True
    keys = ("generation", "deletionTimestamp", "uid")
    if any(old["metadata"].get(k) != new["metadata"].get(k) for k in keys):
        return True
    # Our finalizer added is our own write coming back (often before its response, so the
    # cache does not have it yet); any other change to them (ours removed) needs a look.
    before, after = (set(b["metadata"].get("finalizers") or ()) for b in (old, new))
    if (before ^ after) - {FINALIZER} or FINALIZER in before - after:
        return True
    # A promote or abort (edgeplane rollout) changes only an annotation.
    before, after = (read_actions(b["metadata"].get("annotations")) for b in (old, new))
    return before != after


def worker_lane(old: dict[str, Any] | None, new: dict[str, Any]) -> Lane:
    """The queue lane of a Worker event that needs a reconcile: a change to a Worker
    already known (a new spec such as a rollback, a deletion, a promote or abort) is
    urgent; one seen for the first time (a burst of creations, every Worker at start) is
    normal, so such a burst cannot hold a rollback back."""
    if old is None or old["metadata"].get("uid") != new["metadata"].get("uid"):
        return "normal"
    if any(old["metadata"].get(k) != new["metadata"].get(k)
           for k in ("generation", "deletionTimestamp")):
        return "urgent"
    before, after = (read_actions(b["metadata"].get("annotations")) for b in (old, new))
    return "urgent" if before != after else "normal"


def route_event_keys(
    routes: dict[tuple[str, str], dict[str, Any]],
    old: dict[str, Any] | None,
    new: dict[str, Any] | None,
) -> list[Key]:
    """What a WorkerRoute event (`old` -> `new`; None: absent) makes stale: the Workers it
    sends to before and after (or its namespace's exclusions, without a Worker), and every
    route sharing either pattern (their conflict status changes too) with its Worker.
    `routes` is the cache after the event."""
    either = [b for b in (old, new) if b]
    keys = [_served_by(b) for b in either]
    # Conflicts are by canonical form: `example.com` and `Example.com/` claim the same.
    patterns = {conflict_key(b["spec"]["pattern"]) for b in either}
    for (rns, rname), body in sorted(routes.items()):
        if conflict_key(body["spec"]["pattern"]) in patterns:
            keys += [("WorkerRoute", rns, rname), _served_by(body)]
    return list(dict.fromkeys(keys))


def _served_by(route: dict[str, Any]) -> Key:
    """The key whose loop serves a route: its Worker's, or its namespace's exclusions."""
    ns, worker = route["metadata"]["namespace"], route["spec"].get("worker")
    return ("Worker", ns, worker) if worker else ("Exclusions", ns, "")


class Controller:
    def __init__(self, api: kclient.ApiClient, settings: Settings | None = None) -> None:
        self.settings = s = settings or Settings()
        self.api = api
        self.kube = Kube(api, s.identity if s.replicas > 1 else "")
        self.cache = Cache()
        self.queue: WorkQueue[Key] = WorkQueue(
            "worker", self._handle, s.concurrency, namespace=lambda key: key[1]
        )
        self.fleet = Fleet(
            self.kube,
            FleetSettings(
                s.heartbeat_interval,
                s.namespaces,
                s.orphan_grace,
                s.credentials_namespaces,
                s.signing_key,
                # Three checks: one lost renewal does not stop a location's crons.
                cron_lease=min(3 * s.health_interval, MAX_CRON_LEASE),
            ),
            workers=self.cache.workers.keys,  # a live view: read between awaits only
            requeue=lambda key: self.queue.add(("Worker", *key)),
            requeue_exclusions=self._requeue_exclusions,
            requeue_after=lambda key, delay: self.queue.add_after(
                ("Worker", *key), delay, "background"  # a reachability flip's spread
            ),
            concurrency=s.concurrency,
        )
        self.resolver = Resolver(
            self.kube, s.urls, digest_key=derive_key(s.signing_key, "version ids")
        )
        self.versions = VersionStore(
            self.kube, self.resolver, s.versions_retained,
            registry=VersionRegistry.configure(s.version_registry, s.urls.timeout)
            if s.version_registry else None,
        )
        self.versions.pool = self.fleet.client  # assets' files: archived, and rebuilt
        self.writer = StatusWriter(self.kube, self.cache.workers)
        self.worker_loop = WorkerReconciler(
            self.cache,
            self.kube,
            self.fleet,
            self.versions,
            self.resolver,
            self.writer,
            backoff=lambda key: self.queue.backoff(("Worker", *key)),
        )
        self.route_loop = RouteReconciler(self.cache, self.kube, self.versions, self.fleet)
        self.exclusion_loop = ExclusionReconciler(
            self.cache, self.fleet, backoff=lambda ns: self.queue.backoff(("Exclusions", ns, ""))
        )
        self.elector = self._elector()
        self.fence = self.fleet.fence = Fence(self.elector.holds if self.elector else None)
        self.fleet.shared = self.elector is not None
        self._timers: list[asyncio.Task[None]] = []
        self._tasks: set[asyncio.Task[None]] = set()  # one-off checks
        # Kinds whose deletions are looked for once their listing ends: the last time each
        # listed an object (monotonic).
        self._relisting: dict[str, float] = {}
        # Several replicas: the reconciles running per bucket, stopped when it is lost.
        self._working: dict[int, set[asyncio.Task[float | None]]] = {}

    def _elector(self) -> Elector | None:
        """One replica: no Leases, every bucket held, nothing fenced."""
        s = self.settings
        if s.replicas <= 1:
            return None
        return Elector(
            self.api, s.lease_namespace, s.identity, s.buckets, s.lease_timings,
            on_gain=self._bucket_gained, on_loss=self._bucket_lost,
        )

    async def start(self) -> None:
        failed = (ApiException, aiohttp.ClientError, TimeoutError)
        try:
            known = await self.versions.prime(self.settings.namespaces)
            log.info("%d WorkerVersions known at start", known)
        except failed as e:  # each Worker's first reconcile reads its own instead
            log.warning("WorkerVersions not listed at start (%s); read per Worker", e)
        try:
            await self._prime_cache()
        except failed as e:  # the watches bring them
            log.warning("objects not listed at start (%s); taken from the watches", e)
        self.queue.start()
        if self.elector is not None:
            self.elector.start()
        self._timers = [
            asyncio.create_task(self._every(self.settings.resync_interval, self.resync)),
            asyncio.create_task(self._every(self.settings.health_interval, self.check_targets)),
        ]

    async def _prime_cache(self) -> None:
        """Every location, HostClaim, route and Worker, read before the watches start and
        the queue runs: planned from what the watches had listed so far, a Worker would be
        given only some locations or routes, and a route find no Worker, and a restarted
        operator would report (or push) that, then the truth again."""
        seen = {"edgetargets": self.target_seen, "hostclaims": self.claim_seen,
                "workerroutes": self.route_seen, "workers": self.worker_seen}
        for plural, handle in seen.items():
            namespaces = self.settings.namespaces if plural in ("workers", "workerroutes") else ()
            async for page in self.kube.list_pages(plural, namespaces):
                for body in page:
                    handle(body, False)

    async def stop(self) -> None:
        tasks = [*self._timers, *self._tasks]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.queue.stop()
        if self.elector is not None:  # no work left in flight: the buckets go at once
            await self.elector.stop()
        await self.fleet.close()
        await self.resolver.close()
        if self.versions.registry is not None:
            await self.versions.registry.close()

    # -- events from the watches (handlers.py) ------------------------------------------

    def worker_seen(self, body: dict[str, Any], deleted: bool) -> None:
        key: WorkerKey = (body["metadata"]["namespace"], body["metadata"]["name"])
        old = self.cache.workers.pop(key, None)
        self.cache.reads(key, None if deleted else body)
        if deleted:
            self.fleet.desired.pop(full_name(key), None)
            if self.elector is not None:
                self.fleet.crons.pop(full_name(key), None)
            self.versions.forget(key)
            self.writer.forget(key)
            self._enqueue_routes_of(key, "urgent")
            return
        self.cache.workers[key] = body
        if self.elector is not None:  # the holder of bucket 0 leases every Worker's crons
            self._track_crons(key, body)
        if old is None:
            self._enqueue_routes_of(key)  # they may have said WorkerNotFound
        if worker_changed(old, body):
            self.queue.add(("Worker", *key), worker_lane(old, body))

    def route_seen(self, body: dict[str, Any], deleted: bool) -> None:
        key = (body["metadata"]["namespace"], body["metadata"]["name"])
        old = self.cache.routes.pop(key, None)
        if not deleted:
            self.cache.routes[key] = body
        changed = old is not None and (deleted or old.get("spec") != body.get("spec"))
        self._add(
            route_event_keys(self.cache.routes, old, None if deleted else body),
            "urgent" if changed else "normal",
        )

    def claim_seen(self, body: dict[str, Any], deleted: bool) -> None:
        """A HostClaim changes which routes may be served: every route is judged again."""
        name = body["metadata"]["name"]
        old = self.cache.claims.pop(name, None)
        if not deleted:
            self.cache.claims[name] = body
            self.queue.add(("HostClaim", "", name))
        if old is not None and not deleted and old.get("spec") == body.get("spec"):
            return  # only its status changed
        lane: Lane = "normal" if old is None else "urgent"  # a new one, or a change
        for key, route in sorted(self.cache.routes.items()):
            self._add([("WorkerRoute", *key), _served_by(route)], lane)

    def target_seen(self, body: dict[str, Any], deleted: bool) -> None:
        if not self.fleet.seen(body, deleted):
            return
        self._add(("Worker", *key) for key in self.cache.workers)
        self._requeue_exclusions(())
        if not deleted:  # a new or changed location is checked now, not at the next round
            self._spawn(self.fleet.check(body["metadata"]["name"]))

    def source_seen(self, kind: str, body: dict[str, Any], deleted: bool) -> None:
        """A ConfigMap or Secret event: the Workers that read it look again. A Secret may
        also hold a location's token."""
        namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
        readers = sorted(self.cache.readers.get((kind, namespace, name), ()))
        self.resolver.seen(kind, body, deleted, referenced=bool(readers))
        self._add(("Worker", *w) for w in readers)
        if kind == "Secret":
            self.fleet.credentials_changed(namespace, name)

    # -- relists: deletions a watch gap hid ----------------------------------------------

    def listing(self, plural: str) -> None:
        """kopf lists `plural` again (its watch (re)started): look for what was deleted
        while it was not watching, once, a moment after the listing's last object (each
        listed object calls this: 10,000 Workers take longer to list than the moment)."""
        if plural not in self._relisting:
            self._spawn(self._drop_deleted_later(plural))
        self._relisting[plural] = time.monotonic()

    async def _drop_deleted_later(self, plural: str) -> None:
        settle = self.settings.relist_settle
        try:
            left = settle
            while left > 0:  # until `settle` has passed with no object listed
                await asyncio.sleep(left)
                left = self._relisting[plural] + settle - time.monotonic()
        finally:
            self._relisting.pop(plural, None)
        try:
            await self.drop_deleted(plural)
        except Exception:  # the next relist or resync looks again
            log.exception("looking for deleted %s failed", plural)

    async def drop_deleted(self, plural: str) -> None:
        """Forget (as if a DELETED event had come) what a fresh read shows deleted."""
        if plural in ("configmaps", "secrets"):
            await self._drop_deleted_sources("ConfigMap" if plural == "configmaps" else "Secret")
            return
        cached, key, seen = self._cached(plural)
        namespaces = self.settings.namespaces if plural in ("workers", "workerroutes") else ()
        for k in gone(cached, await self.kube.list_all(plural, namespaces), key):
            if (body := cached.get(k)) is not None:
                log.info("%s %s was deleted during a watch gap; forgetting it", plural, k)
                seen(body, True)

    def _cached(self, plural: str) -> tuple[
        dict[Any, dict[str, Any]],
        Callable[[Mapping[str, Any]], Any],
        Callable[[dict[str, Any], bool], None],
    ]:
        """The cache of a kind, its key of a body, and its event handler."""
        by_name: Callable[[Mapping[str, Any]], Any] = lambda b: b["metadata"]["name"]  # noqa: E731
        namespaced: Callable[[Mapping[str, Any]], Any] = lambda b: (  # noqa: E731
            b["metadata"]["namespace"], b["metadata"]["name"])
        return {
            "workers": (self.cache.workers, namespaced, self.worker_seen),
            "workerroutes": (self.cache.routes, namespaced, self.route_seen),
            "hostclaims": (self.cache.claims, by_name, self.claim_seen),
            "edgetargets": (self.fleet.targets, by_name, self.target_seen),
        }[plural]

    async def _drop_deleted_sources(self, kind: str) -> None:
        for key, version in self.resolver.held(kind).items():
            _, ns, name = key
            if await self.kube.read(kind, ns, name) is None and self.resolver.gone(key, version):
                log.info("%s %s/%s was deleted during a watch gap; forgetting it", kind, ns, name)
                self._add(("Worker", *w) for w in sorted(self.cache.readers.get(key, ())))
        if kind == "Secret":
            self.fleet.forget_credentials()

    def _requeue_exclusions(self, namespaces: Iterable[str], lane: Lane = "normal") -> None:
        """The exclusions of these namespaces, and of every namespace that has some."""
        routes = {ns for ns, _ in self.cache.routes_without_worker()}
        self._add((("Exclusions", ns, "") for ns in sorted(routes | set(namespaces))), lane)

    def _enqueue_routes_of(self, key: WorkerKey, lane: Lane = "normal") -> None:
        self._add((("WorkerRoute", *rkey) for rkey in self.cache.routes_of(key)), lane)

    def _add(self, keys: Iterable[Key], lane: Lane = "normal") -> None:
        for key in keys:
            self.queue.add(key, lane)

    # -- timers --------------------------------------------------------------------------

    def _spawn(self, job: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(job)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _every(self, seconds: float, job: Callable[[], Awaitable[None]]) -> None:
        while True:
            await asyncio.sleep(seconds)
            try:
                await job()
            except Exception:  # a failed round must not end the timer
                log.exception("periodic %s failed", job.__name__)

    async def resync(self) -> None:
        # Background: a safety net that must not delay the changes users make meanwhile.
        # Spread out (at about `concurrency` keys a second, within the interval): 10,000
        # Workers queued at once filled every background slot with reconciles that mostly
        # hold the CPU, and a rollback's reconcile waited behind them at each await.
        keys: list[Key] = [("Worker", *k) for k in self.cache.workers]
        keys += [("WorkerRoute", *k) for k in self.cache.routes]
        s = self.settings
        for key, delay in zip(
            keys, spread(len(keys), s.concurrency, 0.9 * s.resync_interval), strict=True
        ):
            if delay:
                self.queue.add_after(key, delay, "background")
            else:
                self.queue.add(key, "background")
        self._requeue_exclusions((), "background")
        # A relist that finds nothing at all brings no event to notice the relist by.
        for plural in ("workers", "workerroutes", "hostclaims", "edgetargets",
                       "configmaps", "secrets"):
            await self.drop_deleted(plural)

    async def check_targets(self) -> None:
        await asyncio.gather(*(self.fleet.check(name) for name in list(self.fleet.targets)))

    # -- buckets (several replicas) ------------------------------------------------------

    def _track_crons(self, key: WorkerKey, body: dict[str, Any]) -> None:
        """Every Worker's cron triggers, from the watch (its reconcile may be another
        replica's); a Worker being deleted has none."""
        triggers = (body.get("spec") or {}).get("triggers") or {}
        schedules = tuple(triggers.get("crons") or ())
        if schedules and not body["metadata"].get("deletionTimestamp"):
            self.fleet.crons[full_name(key)] = schedules
        else:
            self.fleet.crons.pop(full_name(key), None)

    def bucket(self, key: Key) -> int:
        kind, ns, name = key
        route = self.cache.routes.get((ns, name)) if kind == "WorkerRoute" else None
        worker = None if route is None else route["spec"].get("worker") or ""
        return key_bucket(kind, ns, name, worker, self.settings.buckets)

    def _cached_keys(self) -> list[Key]:
        keys: list[Key] = [("Worker", *k) for k in sorted(self.cache.workers)]
        keys += [("WorkerRoute", *k) for k in sorted(self.cache.routes)]
        keys += [("Exclusions", ns, "") for ns in sorted(
            {ns for ns, _ in self.cache.routes_without_worker()})]
        return keys + [("HostClaim", "", name) for name in sorted(self.cache.claims)]

    def _bucket_gained(self, bucket: int) -> None:
        """Its keys were dropped while another replica held it: each is looked at again, in
        the background lane (after a takeover they are mostly in sync already)."""
        self._add((k for k in self._cached_keys() if self.bucket(k) == bucket), "background")
        if bucket == LOCATION_WIDE:
            self._spawn(self.check_targets())

    def _bucket_lost(self, bucket: int) -> None:
        """Its queued keys are dropped when their turn comes, and work in flight meets the
        fence at its next write. What this replica planned for its Workers goes: the next
        holder's plans may differ (the cron leases read the locations' inventory instead),
        and edgeplane_workers counts each Worker at its holder only."""
        log.info("bucket %d: no longer reconciled here", bucket)
        for work in self._working.pop(bucket, set()):
            work.cancel()
        for key in [k for k in self.cache.workers if self.bucket(("Worker", *k)) == bucket]:
            self.fleet.desired.pop(full_name(key), None)
            self.writer.forget(key)

    # -- the queue's handler -------------------------------------------------------------

    async def _handle(self, key: Key) -> float | None:
        bucket = self.bucket(key)
        if not self.fence.holds(bucket):
            return None  # another replica's
        try:
            if self.elector is None:
                with self.fence.scope(bucket):
                    delay = await self._reconcile(key, str(bucket))
            else:
                lost, delay = await self._stoppable(key, bucket)
                if lost:
                    log.info("%s %s/%s: stopped, bucket %d was lost", *key, bucket)
                    return None
        except Fenced as e:
            log.info("%s %s/%s: stopped, %s", *key, e)
            return None
        if key[0] == "Worker" and (body := self.cache.workers.get(key[1:])) is not None:
            (log.info if self.elector else log.debug)(
                "reconciled Worker %s/%s generation %s (bucket %d)",
                key[1], key[2], body["metadata"].get("generation"), bucket,
            )
        return delay

    async def _stoppable(self, key: Key, bucket: int) -> tuple[bool, float | None]:
        """The reconcile as a task of its own, which losing the bucket cancels (then: True,
        lost); the queue stopping still cancels the caller."""
        with self.fence.scope(bucket):  # the task starts with a copy of this context
            work = asyncio.ensure_future(self._reconcile(key, str(bucket)))
        self._working.setdefault(bucket, set()).add(work)
        try:
            return False, await work
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if work.cancelled() and task is not None and not task.cancelling():
                return True, None
            raise
        finally:
            self._working.get(bucket, set()).discard(work)

    async def _reconcile(self, key: Key, bucket: str) -> float | None:
        kind, ns, name = key
        controller = kind.lower()
        started = time.monotonic()
        result = "success"
        try:
            if kind == "Worker":
                delay = await self.worker_loop.reconcile(ns, name)
            elif kind == "HostClaim":
                delay = await self.route_loop.reconcile_claim(name)
            elif kind == "Exclusions":
                delay = await self.exclusion_loop.reconcile(ns)
                # A location's refusal shows on the routes.
                self._add(("WorkerRoute", *key) for key in self.cache.routes_without_worker(ns))
            else:
                delay = await self.route_loop.reconcile(ns, name)
            if delay is not None:
                result = "requeue_after"
            return delay
        except ApiException as e:
            if namespace_terminating(e):
                # Everything in it is being deleted; the deletions bring their own events.
                log.debug("%s %s/%s: namespace is being terminated", kind, ns, name)
                return None
            result = "error"
            metrics.RECONCILE_ERRORS.labels(controller).inc()
            raise
        except Fenced:
            result = "fenced"  # the bucket was lost meanwhile: not the reconcile's error
            raise
        except asyncio.CancelledError:
            result = "cancelled"  # its bucket lost (see _stoppable), or the operator stopping
            raise
        except Exception:
            result = "error"
            metrics.RECONCILE_ERRORS.labels(controller).inc()
            raise
        finally:
            metrics.RECONCILE_TOTAL.labels(controller, result, bucket).inc()
            metrics.RECONCILE_TIME.labels(controller).observe(time.monotonic() - started)
