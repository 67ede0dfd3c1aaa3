"""The operator's I/O around the pure steps: read what a Worker needs, compile, plan,
push to the agents, write status. kopf handlers (handlers.py) only feed its caches and
its work queue; everything that talks to the apiserver or an agent happens here.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
from kubernetes_asyncio import client as kclient
from kubernetes_asyncio.client.rest import ApiException

from edgeplane.api import (
    GROUP,
    VERSION,
    EdgeTarget,
    EdgeTargetStatus,
    RolloutPhase,
    RolloutStatus,
    Worker,
    WorkerRoute,
    WorkerRouteStatus,
    WorkerStatus,
    WorkerVersion,
    get_condition,
    set_condition,
)
from edgeplane.api.common import now as api_now
from edgeplane.api.version import BindingSummary, ModuleSummary, WorkerVersionSpec
from edgeplane.compile import CompileError, Sources, assemble, compile_worker, references
from edgeplane.distribute.client import AgentClient, Endpoint, Refused, Unreachable
from edgeplane.plan.rollout import (
    Need,
    Observed,
    PlannedStep,
    ProbeResult,
    Progress,
    assignment,
    begin,
    plan_steps,
    progress,
)
from edgeplane.plan.targets import TargetView, plan, select
from edgeplane.plan.traffic import Contents, RouteSplit, contents, named_versions
from edgeplane.reconcile.workqueue import WorkQueue
from edgeplane.report import metrics
from edgeplane.report.status import Event, Stall, TargetOutcome, TargetState, worker_status
from edgeplane.routing import conflict_key
from edgeplane.versions.archive import PART_KEY, ArchiveError, pack, part_name, unpack
from edgeplane.wire import Bundle, Deployment, redact

log = logging.getLogger("edgeplane.controller")

FINALIZER = "edgeplane.io/cleanup"
WORKER_LABEL = "edgeplane.io/worker"
MAX_URL_BYTES = 64 * 1000 * 1000

# Keys of the work queue: ("Worker" | "WorkerRoute", namespace, name).
Key = tuple[str, str, str]


@dataclass
class Settings:
    versions_retained: int = 10
    concurrency: int = 32
    # Level-triggered safety net: every Worker is reconciled at least this often.
    resync_interval: float = 300.0
    # EdgeTarget status is written when something changes, and at least this often.
    heartbeat_interval: float = 30.0
    # Namespaces watched; empty: all. Only Workers of these are collected from agents.
    namespaces: tuple[str, ...] = ()
    # After start, the watches need a moment to list every Worker; until then a Worker an
    # agent serves but the cache lacks is not even checked as an orphan.
    orphan_grace: float = 30.0


@dataclass
class TargetRuntime:
    """What the operator knows about one location, refreshed by health checks and pushes."""

    endpoint: Endpoint | None = None
    reachable: bool | None = None
    reason: str = ""  # why it is not reachable: Unreachable or CredentialsNotFound
    message: str = ""
    inventory: dict[str, str] | None = None  # worker -> deployment identity
    primaries: dict[str, str] = field(default_factory=dict)  # worker -> version it serves
    info: dict[str, Any] = field(default_factory=dict)
    # worker -> (identity, why) of the deployment the agent refused
    refused: dict[str, tuple[str, Stall]] = field(default_factory=dict)
    last_status_write: float = 0.0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class Controller:
    def __init__(self, api: kclient.ApiClient, settings: Settings | None = None) -> None:
        self.settings = settings or Settings()
        self.api = api
        self.custom = kclient.CustomObjectsApi(api)
        self.core = kclient.CoreV1Api(api)
        self.agents = AgentClient()
        self.http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60))
        # Latest bodies seen by the watches (an informer cache).
        self.workers: dict[tuple[str, str], dict[str, Any]] = {}
        self.routes: dict[tuple[str, str], dict[str, Any]] = {}
        self.targets: dict[str, dict[str, Any]] = {}
        self.runtime: dict[str, TargetRuntime] = {}
        # worker full name -> target -> deployment identity it should have (None: none),
        # for drift checks.
        self.desired: dict[str, dict[str, str | None]] = {}
        # (namespace, worker) -> version id -> bundle, for the versions in use.
        self.bundles: dict[tuple[str, str], dict[str, Bundle]] = {}
        # (namespace, worker) -> version id -> servingTargets last written on its version.
        self.serving: dict[tuple[str, str], dict[str, int]] = {}
        self.url_cache: dict[str, bytes] = {}
        self.known_versions: set[tuple[str, str]] = set()  # (namespace, WorkerVersion name)
        self.ready: dict[tuple[str, str], bool] = {}  # for the Workers-by-readiness gauge
        self.queue: WorkQueue[Key] = WorkQueue("worker", self._handle, self.settings.concurrency)
        self.started = time.monotonic()

    async def start(self) -> None:
        self.queue.start()
        self._resync = asyncio.create_task(self._resync_loop())

    async def stop(self) -> None:
        self._resync.cancel()
        await asyncio.gather(self._resync, return_exceptions=True)
        await self.queue.stop()
        await self.agents.close()
        await self.http.close()

    # -- events from the watches (handlers.py) ------------------------------------------

    def worker_seen(self, body: dict[str, Any], deleted: bool) -> None:
        ns, name = body["metadata"]["namespace"], body["metadata"]["name"]
        if deleted:
            self.workers.pop((ns, name), None)
            self.desired.pop(f"{ns}.{name}", None)
            self.bundles.pop((ns, name), None)
            self.serving.pop((ns, name), None)
            self.ready.pop((ns, name), None)
            self._count_workers()
            self._enqueue_routes_of(ns, name)
            return
        old = self.workers.get((ns, name))
        self.workers[(ns, name)] = body
        if old is None:
            self._enqueue_routes_of(ns, name)  # they may have said WorkerNotFound
        # Our own status writes come back as events too; they need no reconcile.
        if old is None or _worker_identity(old) != _worker_identity(body):
            self.queue.add(("Worker", ns, name))

    def _enqueue_routes_of(self, ns: str, worker: str) -> None:
        for rns, rname in self.routes:
            if rns == ns and self.routes[(rns, rname)]["spec"]["worker"] == worker:
                self.queue.add(("WorkerRoute", rns, rname))

    def route_seen(self, body: dict[str, Any], deleted: bool) -> None:
        ns, name = body["metadata"]["namespace"], body["metadata"]["name"]
        old = self.routes.pop((ns, name), None)
        if not deleted:
            self.routes[(ns, name)] = body
        affected = {b["spec"]["worker"] for b in (old, None if deleted else body) if b}
        for worker in affected:
            self.queue.add(("Worker", ns, worker))
        # A pattern shared with other routes changes their conflict status too.
        patterns = {b["spec"]["pattern"] for b in (old, body) if b}
        for (rns, rname), rbody in self.routes.items():
            if rbody["spec"]["pattern"] in patterns:
                self.queue.add(("WorkerRoute", rns, rname))
                self.queue.add(("Worker", rns, rbody["spec"]["worker"]))

    def target_seen(self, body: dict[str, Any], deleted: bool) -> None:
        name = body["metadata"]["name"]
        old = self.targets.get(name)
        if deleted:
            self.targets.pop(name, None)
            self.runtime.pop(name, None)
        else:
            self.targets[name] = body
            if old is not None and _target_identity(old) == _target_identity(body):
                return  # only its status changed: nothing for Workers to do
            self.runtime.setdefault(name, TargetRuntime()).endpoint = None
        self.enqueue_all_workers()

    def credentials_changed(self, namespace: str, name: str) -> None:
        """A Secret changed: targets whose token it holds must read it again."""
        for tname, tbody in self.targets.items():
            ref = tbody["spec"]["credentialsSecretRef"]
            if (ref["namespace"], ref["name"]) == (namespace, name):
                self.runtime.setdefault(tname, TargetRuntime()).endpoint = None

    def enqueue_all_workers(self) -> None:
        for ns, name in self.workers:
            self.queue.add(("Worker", ns, name))

    async def _resync_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.resync_interval)
            self.enqueue_all_workers()
            for ns, name in self.routes:
                self.queue.add(("WorkerRoute", ns, name))

    # -- the queue's handler -------------------------------------------------------------

    async def _handle(self, key: Key) -> float | None:
        kind, ns, name = key
        started = time.monotonic()
        result = "success"
        try:
            if kind == "Worker":
                delay = await self.reconcile_worker(ns, name)
            else:
                delay = await self.reconcile_route(ns, name)
            if delay is not None:
                result = "requeue_after"
            return delay
        except ApiException as e:
            if _namespace_terminating(e):
                # Everything in it is being deleted; the deletions bring their own events.
                log.debug("%s %s/%s: namespace is being terminated", kind, ns, name)
                return None
            result = "error"
            metrics.RECONCILE_ERRORS.labels(kind.lower()).inc()
            raise
        except Exception:
            result = "error"
            metrics.RECONCILE_ERRORS.labels(kind.lower()).inc()
            raise
        finally:
            metrics.RECONCILE_TOTAL.labels(kind.lower(), result).inc()
            metrics.RECONCILE_TIME.labels(kind.lower()).observe(time.monotonic() - started)

    # -- Worker --------------------------------------------------------------------------

    async def reconcile_worker(self, ns: str, name: str) -> float | None:
        body = self.workers.get((ns, name))
        if body is None:
            return None
        worker = Worker.model_validate(body)
        full = worker.full_name
        if body["metadata"].get("deletionTimestamp"):
            return await self._finalize(worker, body)
        if FINALIZER not in (body["metadata"].get("finalizers") or []):
            await self._patch_worker(
                ns,
                name,
                {
                    "metadata": {
                        "finalizers": [*(body["metadata"].get("finalizers") or []), FINALIZER]
                    }
                },
            )

        views = await self._target_views()
        selected = select(worker.spec.targets, views)
        names = [t.name for t in selected]
        report = _Report(worker, body)
        prev = worker.status or WorkerStatus()

        if not selected:
            self.desired.pop(full, None)
            await self._remove_everywhere(full, views)
            stall = Stall(
                "NoTargets",
                "spec.targets: no EdgeTarget matches the selector; label an EdgeTarget to "
                "match it or change the selector",
            )
            return await self._finish(report, None, [], stall, prev.rollout)

        index = _VersionIndex()
        try:
            bundle = await self._desired_bundle(worker, index)
            splits = await self._route_splits(worker, index)
        except CompileError as e:
            # The last good version keeps serving; report what the targets still have.
            outcomes = [self._outcome(t, full, None, None, None) for t in names]
            stall = Stall(e.reason, e.message)
            return await self._finish(report, prev.latest_version, outcomes, stall, prev.rollout)
        desired = bundle.version or ""
        in_use = {v for v in (prev.ready_version, *named_versions(splits)) if v}
        if not worker.spec.version:
            await self._ensure_version(worker, bundle, keep=in_use)

        steps = plan_steps(worker.spec.rollout, selected)
        state = begin(desired, prev.ready_version, prev.rollout, len(steps))
        outcomes: list[TargetOutcome] = []
        refusal: Stall | None = None
        moved = Progress(state)
        retry = False
        # Each pass acts on one state of the rollout. A pass that moves it to a state that
        # changes what locations serve records that state first, so a restarted operator
        # resumes from it and never runs a gate twice or skips one.
        for n in range(2 * len(steps) + 4):
            if n:
                views = await self._target_views()  # the last pass's pushes changed them
            assign = assignment(state, steps, names)
            wants = {t: contents(v, splits) if v else None for t, v in assign.items()}
            identities = {t: c.identity if c else None for t, c in wants.items()}
            self.desired[full] = identities
            refusal = await self._apply(worker, wants, identities, views)
            in_sync = {t for t in names if self._has(t, full) == identities[t]}
            refused = {t: s.message for t in names if (s := self._refused(t, full, identities[t]))}
            moved = progress(state, steps, in_sync, refused, api_now())
            if moved.need is not None:
                observed = await self._observe(worker, moved, steps[state.step - 1])
                if observed is None:
                    retry = True  # a location did not answer; the backoff retries
                else:
                    moved = progress(state, steps, in_sync, refused, api_now(), observed)
            outcomes = [
                self._outcome(t, full, identities[t], assign[t], moved.state) for t in names
            ]
            if moved.state == state:
                break
            acts = assignment(moved.state, steps, names) != assign
            state = moved.state
            if acts:
                await self._finish(report, desired, outcomes, None, state, requeue=False)
        self._keep_bundles(worker, {desired, state.from_version, *named_versions(splits)})
        stall = refusal if state.phase is not RolloutPhase.ROLLED_BACK else None
        wait = self.queue.backoff(("Worker", ns, name)) if retry else moved.wait
        return await self._finish(report, desired, outcomes, stall, state, wait=wait)

    async def _apply(
        self,
        worker: Worker,
        wants: dict[str, Contents | None],
        identities: dict[str, str | None],
        views: list[TargetView],
    ) -> Stall | None:
        """Push each location what it should serve and remove the Worker where it should
        not be; returns why an agent refused, if one did."""
        full = worker.full_name
        actions = plan(full, identities, views)
        pushes = {}
        unbuildable: list[Stall] = []
        for t in actions.push:
            want = wants[t]
            if want is None or self._refused(t, full, want.identity):
                continue  # an agent that refused this exact deployment would refuse again
            try:
                bundles = [await self._bundle(worker, v) for v in sorted(want.versions)]
            except CompileError as e:
                unbuildable.append(Stall(e.reason, f"{t}: {e.message}"))
                continue  # the location keeps what it serves
            pushes[t] = Deployment(
                worker=full, primary=want.primary, versions=tuple(bundles), routes=want.routes
            )
        stalls = await asyncio.gather(*(self._push(t, d) for t, d in pushes.items()))
        await asyncio.gather(*(self._remove(t, full) for t in actions.remove))
        refusals = [*stalls, *(self._refused(t, full, identities[t]) for t in actions.push)]
        return next((s for s in [*refusals, *unbuildable] if s is not None), None)

    def _has(self, target: str, worker: str) -> str | None:
        return (self.runtime[target].inventory or {}).get(worker)

    async def _observe(self, worker: Worker, moved: Progress, step: PlannedStep) -> Observed | None:
        """What a step's gate needs from its new locations, asked of them all at once;
        None if one did not answer (the gate waits for it rather than failing)."""
        gate, version, full = step.gate, moved.state.version, worker.full_name
        assert gate is not None
        secrets = self._secret_values(worker)

        async def ask(target: str) -> tuple[tuple[int, int] | None, ProbeResult | None]:
            ep = await self._endpoint(target)
            if ep is None:
                raise Unreachable(f"{target}: no credentials")
            counts = probe = None
            if gate.max_error_percent is not None:
                counts = await self.agents.requests(ep, full, version)
            if moved.need is Need.GATE and gate.probe is not None:
                r = await self.agents.probe(ep, full, version, gate.probe)
                probe = ProbeResult(
                    r.url, r.status, redact(r.body, secrets), redact(r.error, secrets)
                )
            return counts, probe

        try:
            answers = await asyncio.gather(*(ask(t) for t in moved.gate_targets))
        except Unreachable as e:
            log.info("gate of %s waits: %s", full, e)
            return None
        pairs = list(zip(moved.gate_targets, answers, strict=True))
        return Observed(
            counters={t: c for t, (c, _) in pairs if c is not None},
            probes={t: p for t, (_, p) in pairs if p is not None},
        )

    def _refused(self, target: str, worker: str, identity: str | None) -> Stall | None:
        entry = self.runtime[target].refused.get(worker)
        return entry[1] if entry and identity and entry[0] == identity else None

    def _outcome(
        self,
        target: str,
        worker: str,
        identity: str | None,
        assigned: str | None,
        state: RolloutStatus | None,
    ) -> TargetOutcome:
        rt = self.runtime.get(target) or TargetRuntime()
        serving = rt.primaries.get(worker)
        if rt.reachable is False:
            return TargetOutcome(target, TargetState.UNREACHABLE, serving, rt.message)
        has = (rt.inventory or {}).get(worker)
        if state is not None and has == identity:
            if assigned == state.version:
                return TargetOutcome(target, TargetState.READY, serving)
            if state.phase is RolloutPhase.ROLLED_BACK:
                return TargetOutcome(target, TargetState.ROLLED_BACK, serving)
            return TargetOutcome(target, TargetState.PENDING, serving)
        refused = rt.refused.get(worker)
        if refused and identity and refused[0] == identity:
            return TargetOutcome(target, TargetState.FAILED, serving, refused[1].message)
        return TargetOutcome(target, TargetState.DEPLOYING, serving)

    async def _push(self, target: str, deployment: Deployment) -> Stall | None:
        """Push to one target; returns why the agent refused it, if it did."""
        rt = self.runtime.setdefault(target, TargetRuntime())
        ep = await self._endpoint(target)
        if ep is None:
            return None
        identity = deployment.identity()
        secrets = [secret for v in deployment.versions for secret in v.secrets()]
        try:
            await self.agents.put(ep, deployment)
        except Unreachable as e:
            self._set_reachable(target, False, redact(str(e), secrets))
            return None
        except Refused as e:
            message = redact(f"{target}: {e}", secrets)
            stall = Stall(_REFUSAL_REASONS.get(e.status, "ScriptInvalid"), message)
            rt.refused[deployment.worker] = (identity, stall)
            return stall
        self._set_reachable(target, True)
        rt.refused.pop(deployment.worker, None)
        if rt.inventory is not None:
            rt.inventory[deployment.worker] = identity
        rt.primaries[deployment.worker] = deployment.primary
        return None

    async def _remove(self, target: str, worker: str) -> None:
        rt = self.runtime.setdefault(target, TargetRuntime())
        ep = await self._endpoint(target)
        if ep is None:
            return
        try:
            await self.agents.delete(ep, worker)
        except Unreachable as e:
            self._set_reachable(target, False, str(e))
            return
        if rt.inventory is not None:
            rt.inventory.pop(worker, None)
        rt.primaries.pop(worker, None)

    async def _remove_everywhere(self, worker: str, views: Iterable[TargetView]) -> list[str]:
        """Remove the Worker wherever it is known to be; returns the locations that still
        have it because they did not answer."""
        actions = plan(worker, {}, views)
        await asyncio.gather(*(self._remove(t, worker) for t in actions.remove))
        return [t for t in actions.remove if worker in (self.runtime[t].inventory or {})]

    async def _finalize(self, worker: Worker, body: dict[str, Any]) -> float | None:
        full = worker.full_name
        self.desired.pop(full, None)
        views = await self._target_views()
        ns, name = body["metadata"]["namespace"], body["metadata"]["name"]
        left = await self._remove_everywhere(full, views)
        if any(self.runtime[t].reachable is not False for t in left):
            return self.queue.backoff(("Worker", ns, name))  # answered, yet still has it
        if left:
            # A location that is down must not hold the deletion (or an Argo CD prune) for
            # good: its inventory check removes the Worker once it answers again.
            message = (
                f"{', '.join(left)} did not answer; the Worker is removed there when it "
                "answers again"
            )
            log.info("worker %s/%s: CleanupDeferred: %s", ns, name, message)
            await self._event(body, Event("Warning", "CleanupDeferred", message))
        finalizers = [f for f in body["metadata"].get("finalizers") or [] if f != FINALIZER]
        try:
            await self._patch_worker(ns, name, {"metadata": {"finalizers": finalizers or None}})
        except ApiException as e:
            if e.status != 404:
                raise
        return None

    async def _finish(
        self,
        report: _Report,
        latest: str | None,
        outcomes: list[TargetOutcome],
        stall: Stall | None,
        rollout: RolloutStatus | None,
        wait: float | None = None,
        requeue: bool = True,
    ) -> float | None:
        """Write the Worker's status and its Events; returns when to look again."""
        worker, body = report.worker, report.body
        generation = int(body["metadata"].get("generation") or 0)
        status, events = worker_status(
            report.status, generation, latest, outcomes, stall, api_now(), rollout
        )
        ns, name = worker.metadata.namespace or "", worker.metadata.name
        wire = status.to_wire()
        if wire != report.wire:
            updated = await self._patch_status("workers", ns, name, wire, report.wire)
            if updated is not None:
                self.workers[(ns, name)] = updated
        _count_rollout_end(report.status, status)
        report.status, report.wire = status, wire
        for event in events:
            log.info("worker %s/%s: %s: %s", ns, name, event.reason, event.message)
            await self._event(body, event)
        ready = get_condition(status.conditions, "Ready")
        self.ready[(ns, name)] = bool(ready and ready.status == "True")
        self._count_workers()
        await self._record_serving(ns, name, outcomes, seen_before=worker.status is not None)
        if not requeue or stall is not None:
            return None  # a stall waits for a change from the user (watched) instead
        if any(o.state not in _SETTLED for o in outcomes):
            return self.queue.backoff(("Worker", ns, name))
        return wait

    async def _record_serving(
        self, ns: str, name: str, outcomes: list[TargetOutcome], seen_before: bool
    ) -> None:
        """Keep each WorkerVersion's servingTargets equal to the locations where it is the
        primary version, writing only the counts that changed."""
        now = Counter(o.version for o in outcomes if o.version)
        before = self.serving.get((ns, name))
        if before is None:
            before = {}
            if seen_before:  # e.g. after a restart: what an earlier operator wrote
                for v in await self._list_versions(ns, name):
                    count = (v.get("status") or {}).get("servingTargets")
                    if count is not None:
                        before[v["spec"]["versionId"]] = count
        for version in sorted(set(now) | set(before)):
            count = now.get(version, 0)
            if before.get(version) == count:
                continue
            vname = WorkerVersion.name_for(name, version)
            await self._patch_status("workerversions", ns, vname, {"servingTargets": count}, {})
        self.serving[(ns, name)] = dict(now)

    def _count_workers(self) -> None:
        ready = sum(self.ready.values())
        metrics.WORKERS.labels("true").set(ready)
        metrics.WORKERS.labels("false").set(len(self.ready) - ready)

    async def _route_splits(self, worker: Worker, index: _VersionIndex) -> list[RouteSplit]:
        """The Worker's routes with their traffic resolved to version ids."""
        ns = worker.metadata.namespace
        conflicts = self._route_conflicts()
        out = []
        for (rns, rname), body in sorted(self.routes.items()):
            if rns != ns or body["spec"]["worker"] != worker.metadata.name:
                continue
            if (rns, rname) in conflicts:
                continue  # never a silent winner: a conflicting pattern is served by no one
            route = WorkerRoute.model_validate(body)
            split = []
            for i, t in enumerate(route.spec.traffic):
                where = f"WorkerRoute {rns}/{rname} spec.traffic[{i}].version"
                ref = None if t.version == "latest" else t.version
                version = await self._resolve_ref(worker, ref, where, index) if ref else None
                split.append((version, t.percent))
            out.append(RouteSplit(route.spec.pattern, tuple(split)))
        return out

    def _route_conflicts(self) -> dict[tuple[str, str], list[str]]:
        """Routes whose pattern another route also claims -> the other routes' names."""
        by_pattern: dict[str, list[tuple[str, str]]] = {}
        for key, body in self.routes.items():
            by_pattern.setdefault(conflict_key(body["spec"]["pattern"]), []).append(key)
        out: dict[tuple[str, str], list[str]] = {}
        for keys in by_pattern.values():
            if len(keys) > 1:
                for key in keys:
                    out[key] = sorted(f"{ns}/{n}" for ns, n in keys if (ns, n) != key)
        return out

    async def _resolve_ref(
        self, worker: Worker, ref: str, where: str, index: _VersionIndex
    ) -> str:
        """The retained version of the Worker that `ref` (an id or a prefix) names."""
        ns, name = worker.metadata.namespace or "", worker.metadata.name
        if index.ids is None:
            index.ids = sorted(o["spec"]["versionId"] for o in await self._list_versions(ns, name))
        hits = [v for v in index.ids if v.startswith(ref)]
        if len(hits) == 1:
            return hits[0]
        listing = f"`kubectl get workerversions -n {ns} -l {WORKER_LABEL}={name}` lists them"
        if not hits:
            raise CompileError(
                "VersionNotFound",
                f"{where}: no retained version of Worker {name} starts with {ref!r}; {listing}",
            )
        raise CompileError(
            "VersionNotFound",
            f"{where}: {ref!r} matches {len(hits)} versions of Worker {name}; give more "
            f"digits ({listing})",
        )

    async def _desired_bundle(self, worker: Worker, index: _VersionIndex) -> Bundle:
        """The pinned version, rebuilt from its archive, or what the spec compiles to."""
        if worker.spec.version:
            version = await self._resolve_ref(worker, worker.spec.version, "spec.version", index)
            return await self._bundle(worker, version)
        bundle = compile_worker(worker, await self._resolve(worker))
        key = (worker.metadata.namespace or "", worker.metadata.name)
        self.bundles.setdefault(key, {})[bundle.version or ""] = bundle
        return bundle

    async def _bundle(self, worker: Worker, version: str) -> Bundle:
        """One version's bundle: from memory, or rebuilt from its WorkerVersion's archive
        with the Secrets of today (which must still give the same version id)."""
        ns, name = worker.metadata.namespace or "", worker.metadata.name
        cached = self.bundles.get((ns, name), {}).get(version)
        if cached is not None:
            return cached
        vname = WorkerVersion.name_for(name, version)
        body = await self._read(
            self.custom.get_namespaced_custom_object(GROUP, VERSION, ns, "workerversions", vname)
        )
        if body is None:
            raise CompileError(
                "VersionNotFound",
                f"version {version[:12]} of Worker {name} is no longer retained (WorkerVersion "
                f"{vname} not found); name a retained version",
            )
        spec = WorkerVersion.model_validate(body).spec
        parts = []
        for i in range(spec.archive_parts):
            cm = await self._read(self.core.read_namespaced_config_map(part_name(vname, i), ns))
            data = (cm.binary_data or {}).get(PART_KEY) if cm is not None else None
            if data is None:
                raise CompileError(
                    "ArchiveUnavailable",
                    f"version {version[:12]}: ConfigMap {ns}/{part_name(vname, i)}, part of "
                    "its module archive, is missing; the version cannot be served again",
                )
            parts.append(base64.b64decode(data))
        if not parts:
            raise CompileError(
                "ArchiveUnavailable",
                f"version {version[:12]} was recorded without a module archive (by an older "
                "operator); it cannot be served again",
            )
        try:
            modules = unpack(parts, {m.name: m.sha256 for m in spec.modules})
        except ArchiveError as e:
            raise CompileError("ArchiveUnavailable", f"version {version[:12]}: {e}") from None
        source = worker.model_copy(update={"spec": spec.source})
        bundle = assemble(source, modules, await self._resolve(source, modules=False))
        if bundle.version != version:
            raise CompileError(
                "ArchiveUnavailable",
                f"version {version[:12]} cannot be rebuilt as recorded: a Secret it binds "
                "(spec.bindings[].secretKeyRef) has changed since; name a version built "
                "with the current Secret values",
            )
        self.bundles.setdefault((ns, name), {})[version] = bundle
        return bundle

    def _keep_bundles(self, worker: Worker, versions: set[str | None]) -> None:
        """Forget the bundles of versions nothing uses any more."""
        key = (worker.metadata.namespace or "", worker.metadata.name)
        cached = self.bundles.get(key, {})
        self.bundles[key] = {v: b for v, b in cached.items() if v in versions}

    def _secret_values(self, worker: Worker) -> list[str]:
        key = (worker.metadata.namespace or "", worker.metadata.name)
        bundles = self.bundles.get(key, {}).values()
        return [secret for bundle in bundles for secret in bundle.secrets()]

    async def _ensure_version(self, worker: Worker, bundle: Bundle, keep: set[str]) -> None:
        """Record the version as an immutable WorkerVersion owned by the Worker, with its
        modules archived in ConfigMaps owned by the WorkerVersion."""
        assert bundle.version is not None
        ns, name = worker.metadata.namespace or "", worker.metadata.name
        vname = WorkerVersion.name_for(name, bundle.version)
        if (ns, vname) in self.known_versions:
            return
        parts = pack(bundle.modules)
        spec = WorkerVersionSpec(
            worker=name,
            version_id=bundle.version,
            created=api_now(),
            worker_generation=worker.metadata.generation or 0,
            main_module=bundle.main_module,
            compatibility_date=bundle.compatibility_date,
            compatibility_flags=list(bundle.compatibility_flags),
            modules=[
                ModuleSummary(
                    name=m.name,
                    type=m.type,
                    sha256=hashlib.sha256(m.raw()).hexdigest(),
                    size=len(m.raw()),
                )
                for m in bundle.modules
            ],
            bindings=[BindingSummary(name=b.name, kind=b.kind) for b in worker.spec.bindings],
            source=worker.spec,
            archive_parts=len(parts),
        )
        obj = WorkerVersion(
            metadata={
                "name": vname,
                "namespace": ns,
                "labels": {WORKER_LABEL: name},
                "ownerReferences": [_owner("Worker", name, worker.metadata.uid)],
            },
            spec=spec,
        )
        try:
            created = await self.custom.create_namespaced_custom_object(
                GROUP, VERSION, ns, "workerversions", obj.to_wire()
            )
        except ApiException as e:
            if e.status != 409:
                raise
            created = await self.custom.get_namespaced_custom_object(
                GROUP, VERSION, ns, "workerversions", vname
            )
        # Also after a 409: an operator killed between the two writes left no archive.
        owner = _owner("WorkerVersion", vname, created["metadata"]["uid"])
        for i, part in enumerate(parts):
            cm = kclient.V1ConfigMap(
                metadata=kclient.V1ObjectMeta(
                    name=part_name(vname, i),
                    namespace=ns,
                    labels={WORKER_LABEL: name},
                    owner_references=[owner],
                ),
                binary_data={PART_KEY: base64.b64encode(part).decode()},
                immutable=True,
            )
            try:
                await self.core.create_namespaced_config_map(ns, cm)
            except ApiException as e:
                if e.status != 409:
                    raise
        self.known_versions.add((ns, vname))
        in_use = {vname, *(WorkerVersion.name_for(name, v) for v in keep)}
        await self._prune_versions(ns, name, keep=in_use)

    async def _list_versions(self, ns: str, worker: str) -> list[dict[str, Any]]:
        """The Worker's retained WorkerVersion objects."""
        listed = await self.custom.list_namespaced_custom_object(
            GROUP, VERSION, ns, "workerversions", label_selector=f"{WORKER_LABEL}={worker}"
        )
        return list(listed.get("items", []))

    async def _prune_versions(self, ns: str, worker: str, keep: set[str]) -> None:
        """Delete all but the newest versions, except those in use (`keep`)."""
        items = sorted(
            await self._list_versions(ns, worker),
            key=lambda o: (o["spec"]["created"], o["metadata"]["name"]),
            reverse=True,
        )
        for old in items[self.settings.versions_retained :]:
            if old["metadata"]["name"] in keep:
                continue
            try:
                await self.custom.delete_namespaced_custom_object(
                    GROUP, VERSION, ns, "workerversions", old["metadata"]["name"]
                )
            except ApiException as e:
                if e.status != 404:
                    raise
            self.known_versions.discard((ns, old["metadata"]["name"]))

    # -- sources -------------------------------------------------------------------------

    async def _resolve(self, worker: Worker, modules: bool = True) -> Sources:
        """Read what the Worker references; `modules=False` reads only its Secrets."""
        ns = worker.metadata.namespace or ""
        refs = references(worker)
        config_maps: dict[str, dict[str, str | bytes]] = {}
        secrets: dict[str, dict[str, bytes]] = {}
        for name in refs.config_maps if modules else ():
            cm = await self._read(self.core.read_namespaced_config_map(name, ns))
            if cm is not None:
                data: dict[str, str | bytes] = dict(cm.data or {})
                for k, v in (cm.binary_data or {}).items():
                    data[k] = base64.b64decode(v)
                config_maps[name] = data
        for name in refs.secrets:
            secret = await self._read(self.core.read_namespaced_secret(name, ns))
            if secret is not None:
                secrets[name] = {k: base64.b64decode(v) for k, v in (secret.data or {}).items()}
        urls = {}
        for url, sha in refs.urls if modules else ():
            content = await self._download(url, sha)
            if content is not None:
                urls[sha] = content
        return Sources(config_maps=config_maps, secrets=secrets, urls=urls)

    async def _download(self, url: str, sha256: str) -> bytes | None:
        if sha256 in self.url_cache:
            return self.url_cache[sha256]
        try:
            async with self.http.get(url) as resp:
                if resp.status != 200:
                    return None
                content = await resp.content.read(MAX_URL_BYTES + 1)
        except (aiohttp.ClientError, TimeoutError, OSError):
            return None
        if hashlib.sha256(content).hexdigest() == sha256:
            self.url_cache[sha256] = content  # content-addressed: never stale
        return content

    @staticmethod
    async def _read(call: Any) -> Any:
        try:
            return await call
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    # -- targets -------------------------------------------------------------------------

    async def _target_views(self) -> list[TargetView]:
        views = []
        for name, body in list(self.targets.items()):
            rt = self.runtime.setdefault(name, TargetRuntime())
            if rt.inventory is None and rt.reachable is None:
                await self.check_target(name)
            views.append(
                TargetView(
                    name=name,
                    labels=body["metadata"].get("labels") or {},
                    reachable=rt.reachable,
                    message=rt.message,
                    inventory=None if rt.inventory is None else dict(rt.inventory),
                )
            )
        return views

    async def _endpoint(self, target: str) -> Endpoint | None:
        rt = self.runtime.setdefault(target, TargetRuntime())
        if rt.endpoint is not None:
            return rt.endpoint
        body = self.targets.get(target)
        if body is None:
            return None
        spec = EdgeTarget.model_validate(body).spec
        ref = spec.credentials_secret_ref
        secret = await self._read(self.core.read_namespaced_secret(ref.name, ref.namespace))
        token = None
        if secret is not None and ref.key in (secret.data or {}):
            token = base64.b64decode(secret.data[ref.key]).decode().strip()
        if not token:
            message = (
                f"spec.credentialsSecretRef: Secret {ref.namespace}/{ref.name} or its key "
                f"{ref.key!r} not found"
            )
            self._set_reachable(target, False, message, reason="CredentialsNotFound")
            return None
        rt.endpoint = Endpoint(target, spec.endpoint, token, spec.ca_bundle)
        return rt.endpoint

    async def check_target(self, name: str) -> None:
        """Health check and inventory of one location; requeues Workers it affects."""
        rt = self.runtime.setdefault(name, TargetRuntime())
        async with rt.lock:
            was = (rt.reachable, dict(rt.inventory or {}))
            ep = await self._endpoint(name)
            if ep is not None:
                try:
                    info = await self.agents.info(ep)
                    inventory = await self.agents.inventory(ep)
                except Unreachable as e:
                    self._set_reachable(name, False, str(e))
                except Refused as e:
                    message = f"agent refused the operator's credentials ({e.status}): {e}"
                    self._set_reachable(name, False, message)
                else:
                    rt.info.update(info)
                    rt.inventory = {w: i.identity for w, i in inventory.items()}
                    rt.primaries = {w: i.primary for w, i in inventory.items()}
                    self._set_reachable(name, True)
                    await self._collect_orphans(name)
            changed = was != (rt.reachable, dict(rt.inventory or {}))
        if was[1] != dict(rt.inventory or {}):
            self._requeue_for_target(name, False)  # drift: re-push what the location lost
        await self._write_target_status(name, force=changed)

    async def _collect_orphans(self, target: str) -> None:
        """Remove Workers a location serves that no longer exist, e.g. deleted while the
        location was down. The apiserver, not the cache, decides that a Worker is gone."""
        if time.monotonic() - self.started < self.settings.orphan_grace:
            return
        rt = self.runtime[target]
        for full in sorted(rt.inventory or {}):
            ns, _, name = full.partition(".")
            if (ns, name) in self.workers or full in self.desired:
                continue
            if self.settings.namespaces and ns not in self.settings.namespaces:
                continue  # another operator's Worker, perhaps
            found = await self._read(
                self.custom.get_namespaced_custom_object(GROUP, VERSION, ns, "workers", name)
            )
            if found is None:
                log.info("removing %s from %s: the Worker no longer exists", full, target)
                await self._remove(target, full)

    def _set_reachable(
        self, target: str, reachable: bool, message: str = "", reason: str = "Unreachable"
    ) -> None:
        """Record whether a location answers; when that changes, every Worker there
        reports it."""
        rt = self.runtime[target]
        flipped = rt.reachable is not reachable
        rt.reachable, rt.message = reachable, message
        rt.reason = "" if reachable else reason
        if flipped:
            metrics.TARGET_UP.labels(target).set(1 if reachable else 0)
            self._requeue_for_target(target, True)

    def _requeue_for_target(self, target: str, reachability_changed: bool) -> None:
        rt = self.runtime[target]
        for ns, wname in list(self.workers):
            full = f"{ns}.{wname}"
            want = self.desired.get(full)
            has = (rt.inventory or {}).get(full)
            if reachability_changed or has != (want or {}).get(target):
                self.queue.add(("Worker", ns, wname))

    async def _write_target_status(self, name: str, force: bool) -> None:
        body = self.targets.get(name)
        rt = self.runtime.get(name)
        if body is None or rt is None:
            return
        target = EdgeTarget.model_validate(body)
        prev = target.status or EdgeTargetStatus()
        # Pushes change the count between health checks; status must follow them.
        count = len(rt.inventory) if rt.inventory is not None else prev.workers
        force = force or count != prev.workers
        if not force and time.monotonic() - rt.last_status_write < self.settings.heartbeat_interval:
            return
        if rt.reachable:
            cond = (True, "Reachable", "the agent answers and reports its inventory")
        else:
            cond = (False, rt.reason or "Unreachable", rt.message or "the agent does not answer")
        status = EdgeTargetStatus(
            observed_generation=body["metadata"].get("generation"),
            conditions=set_condition(
                list(prev.conditions),
                "Ready",
                *cond,
                observed_generation=body["metadata"].get("generation"),
            ),
            last_heartbeat=api_now() if rt.reachable else prev.last_heartbeat,
            agent_version=rt.info.get("agentVersion", prev.agent_version),
            runtime_version=rt.info.get("runtimeVersion", prev.runtime_version),
            workers=count,
        )
        updated = await self._patch_status(
            "edgetargets", None, name, status.to_wire(), body.get("status")
        )
        rt.last_status_write = time.monotonic()
        if updated is not None:
            self.targets[name] = updated

    # -- WorkerRoute ---------------------------------------------------------------------

    async def reconcile_route(self, ns: str, name: str) -> float | None:
        body = self.routes.get((ns, name))
        if body is None:
            return None
        route = WorkerRoute.model_validate(body)
        generation = int(body["metadata"].get("generation") or 0)
        others = self._route_conflicts().get((ns, name))
        prev = route.status or WorkerRouteStatus()
        if others:
            cond = (
                False,
                "RouteConflict",
                f"pattern {route.spec.pattern!r} is also claimed by {', '.join(others)}; "
                "neither route is served until one of them changes its pattern",
            )
        elif (ns, route.spec.worker) not in self.workers:
            cond = (False, "WorkerNotFound", f"Worker {ns}/{route.spec.worker} does not exist")
        else:
            cond = await self._route_traffic(ns, route)
        status = WorkerRouteStatus(
            observed_generation=generation,
            conditions=set_condition(
                list(prev.conditions), "Ready", *cond, observed_generation=generation
            ),
        )
        if status.to_wire() != (body.get("status") or {}):
            updated = await self._patch_status(
                "workerroutes", ns, name, status.to_wire(), body.get("status")
            )
            if updated is not None:
                self.routes[(ns, name)] = updated
        return None

    async def _route_traffic(self, ns: str, route: WorkerRoute) -> tuple[bool, str, str]:
        """The Ready condition of a route whose Worker exists: its split, resolved."""
        worker = Worker.model_validate(self.workers[(ns, route.spec.worker)])
        index = _VersionIndex()
        shares = []
        for i, t in enumerate(route.spec.traffic):
            if t.version == "latest":
                shares.append(f"{t.percent}% latest")
                continue
            where = f"spec.traffic[{i}].version"
            try:
                version = await self._resolve_ref(worker, t.version, where, index)
            except CompileError as e:
                return (False, e.reason, e.message)
            shares.append(f"{t.percent}% {version[:12]}")
        split = f" ({', '.join(shares)})" if shares else ""
        message = f"requests matching the pattern go to {worker.metadata.name}{split}"
        return (True, "Routed", message)

    # -- apiserver writes ----------------------------------------------------------------

    async def _patch_worker(self, ns: str, name: str, patch: dict[str, Any]) -> None:
        updated = await self.custom.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            ns,
            "workers",
            name,
            patch,
            _content_type="application/merge-patch+json",
        )
        self.workers[(ns, name)] = updated

    async def _patch_status(
        self, plural: str, ns: str | None, name: str, status: dict[str, Any], old: Any
    ) -> dict[str, Any] | None:
        # A merge patch with the full status; null clears fields no longer reported.
        cleared = {k: None for k in (old or {}) if k not in status}
        patch = {"status": {**cleared, **status}}
        try:
            if ns is None:
                return await self.custom.patch_cluster_custom_object_status(
                    GROUP,
                    VERSION,
                    plural,
                    name,
                    patch,
                    _content_type="application/merge-patch+json",
                )
            return await self.custom.patch_namespaced_custom_object_status(
                GROUP,
                VERSION,
                ns,
                plural,
                name,
                patch,
                _content_type="application/merge-patch+json",
            )
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    async def _event(self, body: dict[str, Any], event: Event) -> None:
        meta = body["metadata"]
        now = datetime.now(UTC)
        ev = kclient.CoreV1Event(
            metadata=kclient.V1ObjectMeta(
                generate_name=f"{meta['name']}.", namespace=meta["namespace"]
            ),
            involved_object=kclient.V1ObjectReference(
                api_version=body["apiVersion"],
                kind=body["kind"],
                name=meta["name"],
                namespace=meta["namespace"],
                uid=meta["uid"],
                resource_version=meta.get("resourceVersion"),
            ),
            reason=event.reason,
            message=event.message[:1024],
            type=event.type,
            first_timestamp=now,
            last_timestamp=now,
            count=1,
            source=kclient.V1EventSource(component="edgeplane-operator"),
            reporting_component="edgeplane.io/operator",
            reporting_instance="edgeplane-operator",
        )
        try:
            await self.core.create_namespaced_event(meta["namespace"], ev)
        except ApiException as e:
            if _namespace_terminating(e):
                return  # the namespace is going away with the Worker in it
            log.warning("could not record event %s on %s: %s", event.reason, meta["name"], e.reason)


@dataclass
class _Report:
    """A Worker being reconciled and its status as last written."""

    worker: Worker
    body: dict[str, Any]
    status: WorkerStatus | None = None
    wire: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.status = self.worker.status
        self.wire = self.body.get("status") or {}


@dataclass
class _VersionIndex:
    """The Worker's retained version ids, listed once per reconcile when first needed."""

    ids: list[str] | None = None


_SETTLED = frozenset({TargetState.READY, TargetState.PENDING, TargetState.ROLLED_BACK})


def _count_rollout_end(before: WorkerStatus | None, after: WorkerStatus) -> None:
    """Count a rollout once, when the status first records how it ended."""
    old, new = before.rollout if before else None, after.rollout
    if new is None or (old is not None and (old.version, old.phase) == (new.version, new.phase)):
        return
    if new.phase is RolloutPhase.COMPLETE:
        metrics.ROLLOUTS.labels("complete").inc()
    elif new.phase is RolloutPhase.ROLLED_BACK:
        metrics.ROLLOUTS.labels("rolled_back").inc()


def _namespace_terminating(e: ApiException) -> bool:
    return e.status == 403 and "NamespaceTerminating" in str(e.body)


def _owner(kind: str, name: str, uid: str | None) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": kind,
        "name": name,
        "uid": uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


# What an agent's refusal means for the Worker's conditions, by HTTP status.
_REFUSAL_REASONS = {409: "RouteConflict", 413: "ScriptTooLarge", 422: "ScriptInvalid"}


def _worker_identity(body: dict[str, Any]) -> tuple[Any, ...]:
    meta = body["metadata"]
    return (
        meta.get("generation"),
        meta.get("deletionTimestamp"),
        meta.get("finalizers"),
        meta.get("uid"),
    )


def _target_identity(body: dict[str, Any]) -> tuple[Any, ...]:
    return (body.get("spec"), body["metadata"].get("labels"), body["metadata"].get("generation"))


