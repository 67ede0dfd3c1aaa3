"""The edge locations as the operator sees them (I/O): their endpoints and credentials,
reachability and inventory from health checks, pushes and removals, Workers left behind
(orphans), and each EdgeTarget's status. Decisions come from `plan.targets` and
`report.target`; this module only asks agents and records what they answered."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
import uuid
from collections.abc import Awaitable, Callable, Collection, Iterable
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, TypeVar

from edgeplane.api import EdgeTarget, EdgeTargetStatus, SecretKeySelector
from edgeplane.api.common import now as api_now
from edgeplane.api.target import (
    TLS_CERT_KEY,
    TLS_KEY_KEY,
    SecretReference,
    endpoint_refusal,
)
from edgeplane.distribute.client import (
    HEALTH_TIMEOUT,
    AgentClient,
    Endpoint,
    Refused,
    ServerError,
    Unreachable,
)
from edgeplane.distribute.tls import ClientCertificate
from edgeplane.kube.client import Kube
from edgeplane.kube.fence import Fence
from edgeplane.plan import cron as crons
from edgeplane.plan.buckets import LOCATION_WIDE
from edgeplane.plan.retry import spread
from edgeplane.plan.targets import (
    Refusal,
    TargetView,
    WorkerKey,
    actions,
    affected_workers,
    credentials_refusal,
    full_name,
    orphan_candidates,
    orphan_scan,
    refusal,
    workers_with_news,
)
from edgeplane.report import metrics
from edgeplane.report.status import Stall, TargetFacts
from edgeplane.report.target import Health, heartbeat_age, target_status, write_due
from edgeplane.wire import (
    CronRun,
    Deployment,
    InventoryChanges,
    MissingService,
    body_limit,
    key_fingerprint,
    redact,
)

log = logging.getLogger("edgeplane.fleet")
# A cron lease sent and not answered may still be taken by the agent later (one frozen
# mid-request takes it when it resumes): its Workers stay with that location until it
# answers a later lease, or for this many leases, past which a resumed agent is assumed
# gone rather than frozen.
UNANSWERED_LEASES = 10
# Seconds between looks at every Worker a location serves for orphans; between them a
# health check looks only at what its answer changed (10,000 Workers, every check, was the
# operator's largest cost while idle).
ORPHAN_SCAN_EVERY = 30.0
T = TypeVar("T")


class Abandoned(Exception):
    """A call to a location given up because its health check marked it down meanwhile."""


@dataclass
class Location:
    """What the operator knows about one location, refreshed by health checks and pushes."""

    endpoint: Endpoint | None = None
    reachable: bool | None = None
    reason: str = ""  # why it is not reachable: Unreachable, CredentialsNotFound, ...
    message: str = ""
    inventory: dict[str, str] | None = None  # worker -> deployment identity
    cursor: str = ""  # the agent's, for the next inventory answer: only what changed since
    primaries: dict[str, str] = field(default_factory=dict)  # worker -> version it serves
    # worker -> version -> why the location refuses to run it (answering 502 for it)
    quarantined: dict[str, dict[str, str]] = field(default_factory=dict)
    # worker -> service bindings of the primary it serves whose Worker is not there
    missing: dict[str, tuple[MissingService, ...]] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    # worker -> (identity, why) of the deployment the agent refused
    refused: dict[str, tuple[str, Stall]] = field(default_factory=dict)
    exclusions: dict[str, tuple[str, ...]] | None = None  # namespace -> patterns it serves
    # namespace -> (patterns, why) of the exclusions the agent refused
    exclusions_refused: dict[str, tuple[tuple[str, ...], str]] = field(default_factory=dict)
    last_status_write: float = 0.0
    orphans_scanned: float = -math.inf  # when every Worker there was last looked at
    # Cron triggers: worker -> its last run here; the Workers its lease gives it (as last
    # answered); per Worker, until when (operator's clock) it may hold a lease on it; and
    # whether it answered a lease since this operator started (before: it may hold any).
    cron_runs: dict[str, CronRun] = field(default_factory=dict)
    cron_granted: frozenset[str] = frozenset()
    cron_held: dict[str, float] = field(default_factory=dict)
    cron_known: bool = False
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    down: asyncio.Event = field(default_factory=asyncio.Event)  # set while not reachable


@dataclass
class FleetSettings:
    heartbeat_interval: float  # EdgeTarget status is written at least this often
    namespaces: tuple[str, ...]  # watched; only Workers of these are collected as orphans
    orphan_grace: float  # after start, before the caches are trusted to know every Worker
    credentials_namespaces: tuple[str, ...]  # where EdgeTarget credential Secrets may live
    # The cluster's key for signed version override headers ("": each location keeps its own).
    signing_key: str = field(default="", repr=False)
    # Seconds a location runs cron triggers after its last lease renewal (each health check).
    cron_lease: float = 15.0


class Fleet:
    def __init__(
        self,
        kube: Kube,
        settings: FleetSettings,
        workers: Callable[[], Collection[WorkerKey]],
        requeue: Callable[[WorkerKey], None],
        requeue_exclusions: Callable[[Iterable[str]], None],
        requeue_after: Callable[[WorkerKey, float], None] | None = None,
        concurrency: int = 32,
    ) -> None:
        """`requeue_after(key, delay)` queues a Worker later (spreading the many a
        reachability flip requeues); `concurrency` is how many the queue runs at once."""
        self.kube = kube
        self.settings = settings
        self.client = AgentClient()
        self._workers = workers  # the Workers the operator caches
        self._requeue = requeue
        self._requeue_exclusions = requeue_exclusions  # namespaces whose exclusions may differ
        self._requeue_after = requeue_after
        self._concurrency = concurrency
        self.targets: dict[str, dict[str, Any]] = {}  # EdgeTarget bodies, from the watch
        self.locations: dict[str, Location] = {}
        # worker full name -> target -> deployment identity it should have (None: none)
        self.desired: dict[str, dict[str, str | None]] = {}
        self.crons: dict[str, tuple[str, ...]] = {}  # worker full name -> its cron triggers
        # With several replicas, location-wide writes are the holder's of bucket 0, and
        # `desired` lacks the Workers other replicas reconcile (`shared` then).
        self.fence = Fence()
        self.shared = False
        self.cron_holder = uuid.uuid4().hex  # this process, in the cron leases it sends
        self.started = time.monotonic()
        self._cron_settled_told = False  # the Workers with crons were requeued once settled
        self._collecting: dict[str, asyncio.Task[None]] = {}  # orphan removals, per location

    async def close(self) -> None:
        for task in self._collecting.values():
            task.cancel()
        await asyncio.gather(*self._collecting.values(), return_exceptions=True)
        await self.client.close()

    def at(self, target: str) -> Location:
        return self.locations.setdefault(target, Location())

    def seen(self, body: dict[str, Any], deleted: bool) -> bool:
        """An EdgeTarget event; True when Workers must be planned again."""
        name = body["metadata"]["name"]
        old = self.targets.get(name)
        if deleted:
            self.targets.pop(name, None)
            self.locations.pop(name, None)
            with contextlib.suppress(KeyError):  # never checked: no sample to remove
                metrics.TARGET_UP.remove(name)  # a deleted location is not "up"
            return True
        self.targets[name] = body
        if old is not None and _spec_key(old) == _spec_key(body):
            return False  # only its status changed
        self.at(name).endpoint = None
        return True

    def credentials_changed(self, namespace: str, name: str) -> None:
        """A Secret changed: targets whose token or client certificate it holds must read
        it again."""
        for tname, tbody in self.targets.items():
            spec = tbody["spec"]
            refs = (spec["credentialsSecretRef"], spec.get("clientCertificateSecretRef") or {})
            if any((r.get("namespace"), r.get("name")) == (namespace, name) for r in refs):
                self.at(tname).endpoint = None

    def forget_credentials(self) -> None:
        """Every target reads its Secrets again (after a relist of Secrets: one deleted
        during a watch gap brought no event)."""
        for name in self.targets:
            self.at(name).endpoint = None

    # -- what the planner sees -----------------------------------------------------------

    async def views(self) -> list[TargetView]:
        views = []
        for name, body in list(self.targets.items()):
            loc = self.at(name)
            if loc.inventory is None and loc.reachable is None:
                await self.check(name)
            views.append(
                TargetView(
                    name=name,
                    labels=body["metadata"].get("labels") or {},
                    reachable=loc.reachable,
                    message=loc.message,
                    # Read-only, not a copy: copying each location's inventory for every
                    # reconcile cost time in proportion to all the Workers.
                    inventory=None if loc.inventory is None else MappingProxyType(loc.inventory),
                )
            )
        return views

    def body_limits(self, targets: Iterable[str]) -> dict[str, int]:
        """The largest push each location takes, as its agent says in /v1/info; one not
        asked yet is taken to have the default."""
        return {t: int(self.at(t).info.get("maxBody") or body_limit()) for t in targets}

    def has(self, target: str, worker: str) -> str | None:
        return (self.at(target).inventory or {}).get(worker)

    def refused(self, target: str, worker: str, identity: str | None) -> Stall | None:
        entry = self.at(target).refused.get(worker)
        return entry[1] if entry and identity and entry[0] == identity else None

    def quarantined(self, target: str, worker: str) -> dict[str, str]:
        """The versions of `worker` that `target` refuses to run, each with why."""
        return dict(self.at(target).quarantined.get(worker) or {})

    def facts(self, target: str, worker: str) -> TargetFacts:
        loc = self.locations.get(target) or Location()
        refused = loc.refused.get(worker)
        return TargetFacts(
            reachable=loc.reachable,
            message=loc.message,
            reason=loc.reason,
            has=(loc.inventory or {}).get(worker),
            serving=loc.primaries.get(worker),
            refused=(refused[0], refused[1].message) if refused else None,
            quarantined=dict(loc.quarantined.get(worker) or {}),
            missing_services=loc.missing.get(worker, ()),
        )

    # -- asking agents -------------------------------------------------------------------

    async def endpoint(self, target: str) -> Endpoint | None:
        loc = self.at(target)
        if loc.endpoint is not None:
            return loc.endpoint
        body = self.targets.get(target)
        if body is None:
            return None
        refusal = endpoint_refusal(str((body.get("spec") or {}).get("endpoint", "")))
        if refusal is not None:  # admitted before the rule: no credentials go there
            self._set_reachable(target, False, refusal, reason="InsecureEndpoint")
            return None
        spec = EdgeTarget.model_validate(body).spec
        ref = spec.credentials_secret_ref
        token = await self._credentials(target, "spec.credentialsSecretRef", ref, (ref.key,))
        if token is None:
            return None
        client = None
        if (cref := spec.client_certificate_secret_ref) is not None:
            pair = await self._credentials(
                target, "spec.clientCertificateSecretRef", cref, (TLS_CERT_KEY, TLS_KEY_KEY)
            )
            if pair is None:
                return None
            client = ClientCertificate(*pair)
        loc.endpoint = Endpoint(target, spec.endpoint, token[0], spec.ca_bundle, client)
        return loc.endpoint

    async def _credentials(
        self, target: str, field: str, ref: SecretReference | SecretKeySelector,
        keys: tuple[str, ...],
    ) -> list[str] | None:
        """The values of `keys` in the Secret `ref` names, or None (and the location is
        unreachable, saying why) when it may not be read, or is missing or incomplete."""
        allowed = self.settings.credentials_namespaces
        refusal = credentials_refusal(ref.namespace, allowed, field)
        if refusal is not None:  # never read, let alone sent
            self._set_reachable(target, False, refusal, reason="CredentialsNotAllowed")
            return None
        secret = await self.kube.secret(ref.namespace, ref.name) or {}
        values = [secret.get(k, b"").decode().strip() for k in keys]
        if not all(values):
            message = (
                f"{field}: Secret {ref.namespace}/{ref.name} or its "
                f"{'key' if len(keys) == 1 else 'keys'} {', '.join(map(repr, keys))} not found"
            )
            self._set_reachable(target, False, message, reason="CredentialsNotFound")
            return None
        return values

    async def check(self, name: str) -> None:
        """Health check and inventory of one location; requeues the Workers it affects.
        Every replica checks (its Workers need the inventory); only the holder of the
        location-wide bucket writes the location's status, hands over the signing key,
        renews the cron lease and removes orphans."""
        with self.fence.scope(LOCATION_WIDE):
            await self._check(name)

    async def _check(self, name: str) -> None:
        loc = self.at(name)
        async with loc.lock:
            # A new reason is news too: a token fixed and a CA now wrong is still "down".
            was = (loc.reachable, loc.reason)
            excluded, news = loc.exclusions, _news(loc)
            moved = False
            if (ep := await self.endpoint(name)) is not None:
                moved = await self._ask(name, ep)
            # What the status shows: whether it answers and why not (write_due compares
            # the count). Which identity each Worker has there is not in it, and a first
            # check (this process knew nothing) changed nothing of what was written.
            changed = was[0] is not None and was != (loc.reachable, loc.reason)
        if moved:
            self._requeue_for(name, reachability_changed=False)
        for key in workers_with_news(self._workers(), news, _news(loc)):
            self._requeue(key)  # a quarantine or a missing service came or went
        if not self._cron_settled_told and self.cron_settled():
            self._cron_settled_told = True  # each shows where its crons run now
            for key in self._workers():
                if full_name(key) in self.crons:
                    self._requeue(key)
        if excluded != loc.exclusions:
            self._requeue_exclusions(set(excluded or {}) | set(loc.exclusions or {}))
        if self.fence.holds(LOCATION_WIDE):
            await self.write_status(name, changed)

    async def _ask(self, name: str, ep: Endpoint) -> bool:
        """Ask the location how it is and what it serves; True when a Worker's deployment
        there changed (or is new, or gone) since it was last asked."""
        loc = self.at(name)
        try:
            info = await self.client.info(ep)
            # Only what changed since the last answer: a location with thousands of
            # Workers would otherwise send (and this decode) every one at each check.
            since = loc.cursor if loc.inventory is not None else ""
            inventory = await self.client.inventory(ep, since)
            exclusions = await self.client.exclusions(ep)
        except Unreachable as e:
            self._set_reachable(name, False, str(e), reason=e.reason)
        except Refused as e:
            reason, kind = refusal(e.status)
            if kind is not Refusal.CREDENTIALS:
                reason = "Unreachable"
            message = f"agent refused the operator's credentials ({e.status}): {e}"
            self._set_reachable(name, False, message, reason=reason)
        else:
            location_wide = self.fence.holds(LOCATION_WIDE)
            if location_wide:
                await self._hand_signing_key(name, ep, str(info.get("signingKey", "")))
            loc.info.update(info)
            self._count_cron_runs(name, inventory)
            moved = _take_inventory(loc, inventory)
            loc.exclusions = exclusions
            came_back = loc.reachable is not True
            self._set_reachable(name, True)
            if location_wide:
                since = time.monotonic() - loc.orphans_scanned
                among = orphan_scan(
                    inventory.items.keys(), inventory.complete, came_back, since, ORPHAN_SCAN_EVERY
                )
                self._collect_orphans_soon(name, among)
                await self._lease_cron(name, ep)
            return moved
        return False

    async def _hand_signing_key(self, name: str, ep: Endpoint, held: str) -> None:
        """Give the location the cluster's signing key if it holds another (by fingerprint:
        the key itself is never read back)."""
        key = self.settings.signing_key
        if not key or held == key_fingerprint(key):
            return
        try:
            await self.client.put_signing_key(ep, key)
        except Refused as e:  # e.g. an agent too old to know signed headers
            log.warning("%s did not take the signing key (%s): %s", name, e.status, e)
        except Unreachable as e:  # the next health check tries again
            log.warning("%s: could not hand over the signing key: %s", name, e)
        else:
            log.info("%s: signing key handed over", name)

    async def push(self, target: str, deployment: Deployment) -> Stall | None:
        """Push to one target; returns why the agent refused it, if it did. Nothing is sent
        to a location its health check marks down: the Worker's status says so, and the
        health check requeues the Worker when the location answers again."""
        loc = self.at(target)
        if loc.reachable is False or (ep := await self.endpoint(target)) is None:
            return None
        identity = deployment.identity()
        secrets = [secret for v in deployment.versions for secret in v.secrets()]
        try:
            by_reference = bool(loc.info.get("moduleBlobs"))  # an agent of this release
            await self._unless_down(target, self.client.put(ep, deployment, by_reference))
        except Abandoned:
            return None
        except ServerError as e:  # up, but failed this one: the Worker retries with backoff
            log.warning("push of %s failed: %s", deployment.worker, redact(str(e), secrets))
            return None
        except Unreachable as e:
            self._set_reachable(target, False, redact(str(e), secrets), reason=e.reason)
            return None
        except Refused as e:
            return self._refused(target, deployment.worker, identity, e, secrets)
        self._set_reachable(target, True)
        loc.refused.pop(deployment.worker, None)
        if loc.inventory is not None:
            loc.inventory[deployment.worker] = identity
        if loc.primaries.get(deployment.worker) != deployment.primary:
            # Those were the old primary's bindings; the next health check tells the new's.
            loc.missing.pop(deployment.worker, None)
        loc.primaries[deployment.worker] = deployment.primary
        return None

    def _refused(
        self, target: str, worker: str, identity: str, e: Refused, secrets: list[str]
    ) -> Stall | None:
        """Record an agent's refusal of a push. Rejected credentials are the location's
        problem (unreachable, retried by its health check); a route conflict is retried with
        backoff; only a final refusal is remembered for the deployment refused."""
        reason, kind = refusal(e.status)
        message = redact(f"{target}: {e}", secrets)
        if kind is Refusal.CREDENTIALS:
            message = f"agent refused the operator's credentials ({e.status}): {message}"
            self._set_reachable(target, False, message, reason=reason)
            return None
        stall = Stall(reason, message, retry=kind is Refusal.RETRY)
        if kind is Refusal.FINAL:
            self.at(target).refused[worker] = (identity, stall)
        return stall

    async def exclude(self, target: str, namespace: str, patterns: tuple[str, ...]) -> bool:
        """Make `patterns` the namespace's routes without a Worker at `target`; False if the
        location did not answer (its reachability says why)."""
        loc = self.at(target)
        if loc.reachable is False or (ep := await self.endpoint(target)) is None:
            return False
        try:
            await self._unless_down(target, self.client.put_exclusions(ep, namespace, patterns))
        except Abandoned:
            return False
        except ServerError as e:
            log.warning("exclusions of %s failed: %s", namespace, e)
            return False
        except Unreachable as e:
            self._set_reachable(target, False, str(e), reason=e.reason)
            return False
        except Refused as e:
            loc.exclusions_refused[namespace] = (patterns, f"{target}: {e}")
            return True
        self._set_reachable(target, True)
        loc.exclusions_refused.pop(namespace, None)
        if loc.exclusions is not None:
            loc.exclusions = {ns: ps for ns, ps in loc.exclusions.items() if ns != namespace}
            if patterns:
                loc.exclusions[namespace] = patterns
        return True

    def exclusion_state(
        self, namespace: str, patterns: tuple[str, ...]
    ) -> tuple[list[str], list[str]]:
        """Where the namespace's exclusions are not these yet (locations), and why locations
        refused exactly these."""
        pending, refused = [], []
        for name in sorted(self.targets):
            loc = self.at(name)
            entry = loc.exclusions_refused.get(namespace)
            if entry is not None and entry[0] == patterns:
                refused.append(entry[1])
            elif loc.exclusions is None or loc.exclusions.get(namespace, ()) != patterns:
                pending.append(name)
        return pending, refused

    async def remove(self, target: str, worker: str) -> None:
        loc = self.at(target)
        if loc.reachable is False or (ep := await self.endpoint(target)) is None:
            return  # a location that is down is cleaned when it answers again
        try:
            await self._unless_down(target, self.client.delete(ep, worker))
        except Abandoned:
            return
        except ServerError as e:
            log.warning("removal of %s failed: %s", worker, e)
            return
        except Unreachable as e:
            self._set_reachable(target, False, str(e), reason=e.reason)
            return
        if loc.inventory is not None:
            loc.inventory.pop(worker, None)
        loc.primaries.pop(worker, None)
        loc.quarantined.pop(worker, None)
        loc.missing.pop(worker, None)

    async def _unless_down(self, target: str, call: Awaitable[T]) -> T:
        """`call`'s answer, unless the location's health check marks it down first: then
        Abandoned (the agent may still apply it; its inventory tells). A location that
        accepts connections and never answers must not hold a Worker's reconcile, and one
        of the queue's slots, for the whole PUT timeout."""
        down = self.at(target).down
        task = asyncio.ensure_future(call)
        watch = asyncio.ensure_future(down.wait())
        try:
            done, _ = await asyncio.wait((task, watch), return_when=asyncio.FIRST_COMPLETED)
        except BaseException:  # the reconcile itself was cancelled
            task.cancel()
            raise
        finally:
            watch.cancel()
        if task not in done:
            task.cancel()
            raise Abandoned(f"{target}: given up, its health check marks it down")
        return task.result()

    async def remove_everywhere(self, worker: str, views: Iterable[TargetView]) -> list[str]:
        """Remove the Worker wherever it is known to be; returns the locations that still
        have it because they did not answer or are marked down."""
        gone = actions(worker, {}, views)
        await asyncio.gather(*(self.remove(t, worker) for t in gone.remove))
        left = [t for t in gone.remove if worker in (self.at(t).inventory or {})]
        return sorted([*left, *gone.down])

    def _collect_orphans_soon(self, target: str, among: Collection[str] | None) -> None:
        """Outside the health check: a location that hangs on a removal must still be
        checked, and marked down (which gives the removal up)."""
        if target not in self._collecting:
            task = asyncio.create_task(self._collect_orphans(target, among))
            self._collecting[target] = task
            task.add_done_callback(lambda _: self._collecting.pop(target, None))

    async def _collect_orphans(self, target: str, among: Collection[str] | None) -> None:
        """Remove Workers a location serves (of `among`; None: all) that no longer exist,
        e.g. deleted while the location was down."""
        if time.monotonic() - self.started < self.settings.orphan_grace:
            return
        loc = self.at(target)
        if among is None:
            loc.orphans_scanned = time.monotonic()
        inventory = loc.inventory or {}
        workers, namespaces = self._workers(), self.settings.namespaces
        try:
            for full in orphan_candidates(inventory, workers, self.desired, namespaces, among):
                ns, _, name = full.partition(".")
                if await self.kube.get("workers", ns, name) is None:
                    log.info("removing %s from %s: the Worker no longer exists", full, target)
                    await self.remove(target, full)
        except Exception as e:  # e.g. the apiserver is down: the next health check retries
            log.warning("collecting orphans at %s failed: %s", target, e)

    # -- cron triggers -------------------------------------------------------------------

    def cron_location(self, worker: str) -> str | None:
        """The location whose lease gives it `worker`'s schedule: one that took it in its
        last answer and whose lease has not run out (a location that went down keeps
        what it last took, but not for longer than that)."""
        now = time.monotonic()
        live = [
            (until, t) for t, loc in self.locations.items()
            if worker in loc.cron_granted and (until := loc.cron_held.get(worker, 0.0)) > now
        ]
        return max(live)[1] if live else None

    def cron_settled(self) -> bool:
        """Whether this operator's own leases now say where crons run. Until the leases of
        an operator before may have run out (a lease's length from start), none is granted,
        yet the location that held one still runs the schedule; a round after that grants
        them (twice the length leaves time for it)."""
        return time.monotonic() >= self.started + 2 * self.settings.cron_lease

    def cron_runs(self, worker: str) -> dict[str, CronRun]:
        """Each location's last run of `worker`."""
        return {t: r for t, loc in self.locations.items() if (r := loc.cron_runs.get(worker))}

    def _cron_owners(self) -> dict[str, str | None]:
        """Per Worker with cron triggers, the location that should run them: one of those
        that answer and serve what they should (plan.cron.owner)."""
        owners = {}
        for worker in self.crons:
            desired = self.desired.get(worker)
            if desired is None and self.shared:
                # Another replica reconciles it: what each location serves is known.
                desired = {t: loc.inventory.get(worker) for t, loc in self.locations.items()
                           if loc.inventory is not None}
            ready = [
                t for t, identity in (desired or {}).items()
                if identity and self.at(t).reachable and self.has(t, worker) == identity
            ]
            owners[worker] = crons.owner(worker, ready)
        return owners

    def _cron_held(self) -> dict[str, dict[str, float]]:
        """Until when each location may run each Worker's schedule. One that has not
        answered a lease since this operator started may run any, for a lease's length."""
        unknown = dict.fromkeys(self.crons, self.started + self.settings.cron_lease)
        return {t: loc.cron_held if loc.cron_known else unknown
                for t, loc in self.locations.items()}

    async def _lease_cron(self, name: str, ep: Endpoint) -> None:
        """Renew `name`'s cron lease with the Workers it runs now. Recorded as held before
        it is sent (for a lease's length past the call's end), so no other location is
        given them meanwhile; on an answer, only what it was given stays held."""
        loc, ttl = self.at(name), self.settings.cron_lease
        now = time.monotonic()
        granted = frozenset(crons.grants(self._cron_owners(), self._cron_held(), name, now))
        for w in granted:
            loc.cron_held[w] = max(loc.cron_held.get(w, 0.0), now + ttl + HEALTH_TIMEOUT)
        schedules = {w: self.crons[w] for w in sorted(granted)}
        try:
            await self.client.put_cron(ep, ttl, schedules, self.cron_holder, time.monotonic_ns())
        except (Unreachable, Refused) as e:
            log.warning("%s: cron lease not renewed: %s", name, e)
            if isinstance(e, Unreachable) and e.sent:
                until = time.monotonic() + UNANSWERED_LEASES * ttl
                for w in granted:
                    loc.cron_held[w] = max(loc.cron_held.get(w, 0.0), until)
            return
        done = time.monotonic()
        loc.cron_held = dict.fromkeys(granted, done + ttl)
        loc.cron_known = True
        moved, loc.cron_granted = granted ^ loc.cron_granted, granted
        for key in self._workers() if moved else ():
            if full_name(key) in moved:
                self._requeue(key)  # its status.cron.location changed

    def _count_cron_runs(self, name: str, inventory: InventoryChanges) -> None:
        """Record each Worker's last cron run at `name`, counting the new ones (not those
        in its first answer since this operator started, before `loc.inventory` is set:
        an operator before may have counted them)."""
        loc = self.at(name)
        runs = {} if inventory.complete else dict(loc.cron_runs)
        for worker in inventory.removed:
            runs.pop(worker, None)
        for worker, item in inventory.items.items():
            run, before = item.cron, loc.cron_runs.get(worker)
            if run is None:
                runs.pop(worker, None)
                continue
            runs[worker] = run
            if loc.inventory is not None and run != before:
                ns, _, wname = worker.partition(".")
                metrics.CRON_RUNS.labels(ns, wname, run.outcome).inc()
        loc.cron_runs = runs

    # -- reachability and status ---------------------------------------------------------

    def _set_reachable(
        self, target: str, reachable: bool, message: str = "", reason: str = "Unreachable"
    ) -> None:
        """Record whether a location answers; when that changes, the Workers that select it
        or that it holds report it (spread over a short window when they are many)."""
        loc = self.at(target)
        flipped = loc.reachable is not reachable
        loc.reachable, loc.message = reachable, message
        loc.reason = "" if reachable else reason
        if reachable:
            loc.down.clear()
        else:
            loc.down.set()  # calls in flight to it are given up
        if flipped:
            metrics.TARGET_UP.labels(target).set(1 if reachable else 0)
            self._requeue_for(target, reachability_changed=True)
            self._requeue_exclusions(set(loc.exclusions or {}))

    def _requeue_for(self, target: str, reachability_changed: bool) -> None:
        inventory = self.at(target).inventory
        keys = affected_workers(
            self._workers(), self.desired, inventory, target, reachability_changed
        )
        delays = spread(len(keys), self._concurrency) if self._requeue_after else [0.0] * len(keys)
        for key, delay in zip(keys, delays, strict=True):
            if delay > 0 and self._requeue_after is not None:
                self._requeue_after(key, delay)
            else:
                self._requeue(key)

    async def write_status(self, name: str, changed: bool) -> None:
        body, loc = self.targets.get(name), self.locations.get(name)
        if body is None or loc is None:
            return
        prev = EdgeTargetStatus.model_validate(body.get("status") or {})
        health = Health(
            reachable=loc.reachable,
            reason=loc.reason,
            message=loc.message,
            workers=None if loc.inventory is None else len(loc.inventory),
            info=dict(loc.info),
        )
        since = (time.monotonic() - loc.last_status_write if loc.last_status_write
                 else heartbeat_age(prev, api_now()))
        if not write_due(prev, health, changed, since, self.settings.heartbeat_interval):
            return
        status = target_status(prev, body["metadata"].get("generation"), health, api_now())
        updated = await self.kube.patch_status(
            "edgetargets", None, name, status.to_wire(), body.get("status")
        )
        loc.last_status_write = time.monotonic()
        if updated is not None:
            self.targets[name] = updated


def _take_inventory(loc: Location, answer: InventoryChanges) -> bool:
    """Apply an inventory answer (every item, or what changed) to what the operator knows
    of the location; True when a Worker's deployment there changed, came or went."""
    if answer.complete or loc.inventory is None:
        before, items = loc.inventory or {}, answer.items
        loc.inventory = {w: i.identity for w, i in items.items()}
        loc.primaries = {w: i.primary for w, i in items.items()}
        loc.quarantined = {w: dict(i.quarantined) for w, i in items.items() if i.quarantined}
        loc.missing = {w: i.missing_services for w, i in items.items() if i.missing_services}
        loc.cursor = answer.cursor
        return before != loc.inventory
    inventory = loc.inventory
    moved = any(w in inventory for w in answer.removed) or any(
        inventory.get(w) != i.identity for w, i in answer.items.items()
    )
    for w in answer.removed:
        for known in (inventory, loc.primaries, loc.quarantined, loc.missing):
            known.pop(w, None)
    for w, i in answer.items.items():
        inventory[w], loc.primaries[w] = i.identity, i.primary
        _set_or_drop(loc.quarantined, w, dict(i.quarantined))
        _set_or_drop(loc.missing, w, i.missing_services)
    loc.cursor = answer.cursor
    return moved


def _set_or_drop(facts: dict[str, Any], worker: str, value: Any) -> None:
    if value:
        facts[worker] = value
    else:
        facts.pop(worker, None)


def _news(loc: Location) -> dict[str, tuple[Any, ...]]:
    """Per Worker, what a health check may say about it besides its deployment."""
    names = set(loc.quarantined) | set(loc.missing) | set(loc.cron_runs)
    return {
        w: (loc.quarantined.get(w), loc.missing.get(w), loc.cron_runs.get(w)) for w in names
    }


def _spec_key(body: dict[str, Any]) -> tuple[Any, ...]:
    """What of an EdgeTarget matters to the Workers it serves (not its status)."""
    return (body.get("spec"), body["metadata"].get("labels"), body["metadata"].get("generation"))
