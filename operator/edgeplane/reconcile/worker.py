"""The Worker loop: resolve and compile (or rebuild a pinned version), record the version,
walk the rollout's state machine, push to the locations, report. Every decision is a
pure function of `compile`, `plan` and `report`; this module only calls them in order
and does the I/O between them."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from pydantic import ValidationError

from edgeplane.api import RolloutPhase, RolloutStatus, Worker, WorkerRoute, WorkerStatus
from edgeplane.api.common import now as api_now
from edgeplane.compile import CompileError, compile_version
from edgeplane.distribute.client import Unreachable
from edgeplane.distribute.fleet import Fleet
from edgeplane.fieldpath import describe
from edgeplane.kube.client import Conflict, Kube
from edgeplane.plan.rollout import (
    Need,
    Observed,
    PlannedStep,
    ProbeResult,
    Progress,
    assignment,
    begin,
    pass_limit,
    plan_steps,
    progress,
    read_actions,
)
from edgeplane.plan.targets import TargetView, WorkerKey, actions, select
from edgeplane.plan.traffic import (
    Contents,
    RouteSplit,
    contents,
    named_versions,
    serving_versions,
)
from edgeplane.reconcile.cache import Cache
from edgeplane.report.cron import cron_status, shown_location
from edgeplane.report.status import (
    BACKOFF,
    Event,
    Requeue,
    Stall,
    TargetOutcome,
    invalid_spec,
    requeue_after,
    target_outcome,
    worker_status,
)
from edgeplane.report.writer import StatusWriter
from edgeplane.resolve.sources import Resolver
from edgeplane.versions.store import VersionIndex, VersionStore
from edgeplane.wire import Bundle, Deployment, redact, rollout_size_refusal

log = logging.getLogger("edgeplane.reconcile.worker")

FINALIZER = "edgeplane.io/cleanup"
# After a fenced write lost to another writer: go again soon, from a fresh read.
CONFLICT_RETRY = 0.2


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


@dataclass(frozen=True)
class _Pass:
    """One pass over the rollout: what it assigned, where it moved, what the locations say."""

    assign: dict[str, str | None]
    moved: Progress
    outcomes: list[TargetOutcome]
    refusal: Stall | None
    retry: bool  # a location did not answer a gate's question


class WorkerReconciler:
    def __init__(
        self,
        cache: Cache,
        kube: Kube,
        fleet: Fleet,
        versions: VersionStore,
        resolver: Resolver,
        writer: StatusWriter,
        backoff: Callable[[WorkerKey], float],
    ) -> None:
        self.cache, self.kube, self.fleet = cache, kube, fleet
        self.versions, self.resolver, self.writer = versions, resolver, writer
        self.backoff = backoff
        self._json_sizes: dict[str, int] = {}  # version -> its bundle's JSON length

    async def reconcile(self, ns: str, name: str) -> float | None:
        try:
            return await self._reconcile(ns, name)
        except Conflict:
            # Read again before writing finalizers again: the watch may be behind.
            fresh = await self.kube.get("workers", ns, name)
            if fresh is None:
                self.cache.workers.pop((ns, name), None)
                return None
            self.cache.workers[(ns, name)] = fresh
            return CONFLICT_RETRY

    async def _reconcile(self, ns: str, name: str) -> float | None:
        body = self.cache.workers.get((ns, name))
        if body is None:
            self.fleet.crons.pop(f"{ns}.{name}", None)
            return None
        if body["metadata"].get("deletionTimestamp"):
            self.fleet.crons.pop(f"{ns}.{name}", None)
            return await self._finalize(body)
        try:
            worker = Worker.model_validate(body)
        except ValidationError as e:
            return await self._invalid(body, e)
        self._track_crons(worker)
        if not await self._ensure_finalizer(body):
            return None
        views = await self.fleet.views()
        selected = select(worker.spec.targets, views)
        report = _Report(worker, body)
        prev = worker.status or WorkerStatus()
        if not selected:
            return await self._no_targets(report, views, prev)
        index = VersionIndex(self.versions, worker)
        try:
            bundle = await self._desired_bundle(worker, index)
            await self._check_rollout_size(bundle, [t.name for t in selected])
            splits = await self._route_splits(worker, index)
            if not worker.spec.version:
                in_use = {v for v in (prev.ready_version, *named_versions(splits)) if v}
                first = prev.latest_version is None and worker.metadata.generation == 1
                # A version registry that is down: ArtifactUnavailable, retried.
                await self.versions.record(worker, bundle, keep=in_use, first=first)
        except CompileError as e:
            # The last good version keeps serving; report what the targets still have.
            outcomes = [self._outcome(t.name, worker, None, None, None) for t in selected]
            stall = Stall(e.reason, e.message, retry=e.retry)
            return await self._finish(report, prev.latest_version, outcomes, stall, prev.rollout)
        return await self._roll_out(report, bundle.version or "", splits, selected, views)

    def _track_crons(self, worker: Worker) -> None:
        """The fleet leases a Worker's cron triggers to one location while it has them (and
        is not being deleted)."""
        crons = tuple(worker.spec.triggers.crons) if worker.spec.triggers else ()
        if crons:
            self.fleet.crons[worker.full_name] = crons
        else:
            self.fleet.crons.pop(worker.full_name, None)

    async def _ensure_finalizer(self, body: dict[str, Any]) -> bool:
        """False when the Worker is gone."""
        finalizers = body["metadata"].get("finalizers") or []
        if FINALIZER in finalizers:
            return True
        meta = body["metadata"]
        updated = await self.kube.set_finalizers("workers", body, [*finalizers, FINALIZER])
        if updated is not None:
            self.cache.workers[(meta["namespace"], meta["name"])] = updated
        return updated is not None

    async def _no_targets(
        self, report: _Report, views: list[TargetView], prev: WorkerStatus
    ) -> float | None:
        full = report.worker.full_name
        self.fleet.desired.pop(full, None)
        await self.fleet.remove_everywhere(full, views)
        stall = Stall(
            "NoTargets",
            "spec.targets: no EdgeTarget matches the selector; label an EdgeTarget to "
            "match it or change the selector",
        )
        return await self._finish(report, None, [], stall, prev.rollout)

    async def _roll_out(
        self,
        report: _Report,
        desired: str,
        splits: list[RouteSplit],
        selected: list[TargetView],
        views: list[TargetView],
    ) -> float | None:
        """Walk the rollout as far as it goes now. A pass that moves it to a state that
        changes what locations serve records that state first, so a restarted operator
        resumes from it and never runs a gate twice or skips one."""
        worker, prev = report.worker, report.worker.status or WorkerStatus()
        names = [t.name for t in selected]
        steps = plan_steps(worker.spec.rollout, selected)
        state = begin(desired, prev.ready_version, prev.rollout, len(steps))
        retry = False
        for n in range(pass_limit(len(steps))):
            if n:
                views = await self.fleet.views()  # the last pass's pushes changed them
            done = await self._pass(worker, state, steps, names, splits, views)
            retry = retry or done.retry
            if done.moved.state == state:
                break
            acts = assignment(done.moved.state, steps, names) != done.assign
            state = done.moved.state
            if acts:
                await self._finish(report, desired, done.outcomes, None, state, requeue=False)
        self.versions.keep_only(worker, {desired, state.from_version, *named_versions(splits)})
        stall = done.refusal if state.phase is not RolloutPhase.ROLLED_BACK else None
        wait = BACKOFF if retry else done.moved.wait
        return await self._finish(report, desired, done.outcomes, stall, state, wait=wait)

    async def _pass(
        self,
        worker: Worker,
        state: RolloutStatus,
        steps: list[PlannedStep],
        names: list[str],
        splits: list[RouteSplit],
        views: list[TargetView],
    ) -> _Pass:
        full = worker.full_name
        assign = assignment(state, steps, names)
        wants = {t: contents(v, splits) if v else None for t, v in assign.items()}
        identities = {t: c.identity if c else None for t, c in wants.items()}
        self.fleet.desired[full] = identities
        refusal = await self._apply(worker, wants, identities, views)
        in_sync = {t for t in names if self.fleet.has(t, full) == identities[t]}
        refused = {
            t: s.message for t in names if (s := self.fleet.refused(t, full, identities[t]))
        }
        hung = {t: self._quarantined(t, worker) for t in names}
        # Promote and abort come as annotations (RBAC, audit and Argo CD see who asked).
        acts = read_actions(worker.metadata.annotations)
        moved = progress(state, steps, in_sync, refused, api_now(), None, hung, acts)
        retry = False
        if moved.need is not None:
            observed = await self._observe(worker, moved, steps[state.step - 1])
            if observed is None:
                retry = True  # a location did not answer; the backoff retries
            else:
                moved = progress(state, steps, in_sync, refused, api_now(), observed, hung, acts)
        outcomes = [
            self._outcome(t, worker, identities[t], assign[t], moved.state, wants[t]) for t in names
        ]
        return _Pass(assign, moved, outcomes, refusal, retry)

    def _outcome(
        self,
        target: str,
        worker: Worker,
        identity: str | None,
        assigned: str | None,
        state: RolloutStatus | None,
        want: Contents | None = None,
    ) -> TargetOutcome:
        facts = self.fleet.facts(target, worker.full_name)
        if facts.quarantined:
            facts = replace(facts, quarantined=self._quarantined(target, worker))
        live = serving_versions(want) if want is not None else frozenset()
        return target_outcome(target, facts, identity, assigned, state, live)

    def _quarantined(self, target: str, worker: Worker) -> dict[str, str]:
        """What `target` quarantined of the Worker, each with the location's reason. The
        agent redacts its reasons; a secret of the Worker's is taken out here all the same,
        as from everything else an agent echoes."""
        secrets = self.versions.secrets(worker)
        return {
            v: redact(why, secrets)
            for v, why in self.fleet.quarantined(target, worker.full_name).items()
        }

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
        todo = actions(full, identities, views)
        pushes: dict[str, Deployment] = {}
        unbuildable: list[Stall] = []
        for t in todo.push:
            want = wants[t]
            if want is None or self.fleet.refused(t, full, want.identity):
                continue  # an agent that refused this exact deployment would refuse again
            try:
                bundles = [
                    self.versions.pullable(worker, await self.versions.bundle(worker, v))
                    for v in sorted(want.versions)
                ]
            except CompileError as e:
                unbuildable.append(Stall(e.reason, f"{t}: {e.message}"))
                continue  # the location keeps what it serves
            pushes[t] = Deployment(
                worker=full, primary=want.primary, versions=tuple(bundles), routes=want.routes
            )
        stalls = await asyncio.gather(*(self.fleet.push(t, d) for t, d in pushes.items()))
        await asyncio.gather(*(self.fleet.remove(t, full) for t in todo.remove))
        refusals = [*stalls, *(self.fleet.refused(t, full, identities[t]) for t in todo.push)]
        found = [s for s in [*refusals, *unbuildable] if s is not None]
        return min(found, key=lambda s: s.retry, default=None)  # one the user must fix first

    async def _observe(self, worker: Worker, moved: Progress, step: PlannedStep) -> Observed | None:
        """What a step's gate needs from its new locations, asked of them all at once;
        None if one did not answer (the gate waits for it rather than failing)."""
        gate, version, full = step.gate, moved.state.version, worker.full_name
        assert gate is not None
        secrets = self.versions.secrets(worker)

        async def ask(target: str) -> tuple[tuple[int, int] | None, ProbeResult | None]:
            ep = await self.fleet.endpoint(target)
            if ep is None:
                raise Unreachable(f"{target}: no credentials")
            counts = probe = None
            if gate.max_error_percent is not None:
                counts = await self.fleet.client.requests(ep, full, version)
            if moved.need is Need.GATE and gate.probe is not None:
                r = await self.fleet.client.probe(ep, full, version, gate.probe)
                body, error = redact(r.body, secrets), redact(r.error, secrets)
                probe = ProbeResult(r.url, r.status, body, error)
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

    async def _invalid(self, body: dict[str, Any], e: ValidationError) -> float | None:
        """Say why the operator refuses the spec; nothing else changes, and the next look is
        the next edit (or resync)."""
        try:
            prev = WorkerStatus.model_validate(body.get("status") or {})
        except ValidationError:
            prev = WorkerStatus()
        generation = int(body["metadata"].get("generation") or 0)
        status, events = invalid_spec(prev, generation, describe(e), api_now())
        await self.writer.worker(body, prev, body.get("status") or {}, status, events)
        return None

    async def _finalize(self, body: dict[str, Any]) -> float | None:
        """Remove a deleted Worker everywhere (its spec need not be valid: it is going)."""
        ns, name = body["metadata"]["namespace"], body["metadata"]["name"]
        full = f"{ns}.{name}"
        self.fleet.desired.pop(full, None)
        left = await self.fleet.remove_everywhere(full, await self.fleet.views())
        if any(self.fleet.at(t).reachable is not False for t in left):
            return self.backoff((ns, name))  # answered, yet still has it
        if left:
            # A location that is down must not hold the deletion (or an Argo CD prune) for
            # good: its inventory check removes the Worker once it answers again.
            message = (
                f"{', '.join(left)} did not answer; the Worker is removed there when it "
                "answers again"
            )
            log.info("worker %s/%s: CleanupDeferred: %s", ns, name, message)
            await self.kube.event(body, Event("Warning", "CleanupDeferred", message))
        await self.versions.drop_artifacts(ns, name)
        finalizers = [f for f in body["metadata"].get("finalizers") or [] if f != FINALIZER]
        await self.kube.set_finalizers("workers", body, finalizers)
        return None

    async def _finish(
        self,
        report: _Report,
        latest: str | None,
        outcomes: list[TargetOutcome],
        stall: Stall | None,
        rollout: RolloutStatus | None,
        wait: Requeue = None,
        requeue: bool = True,
    ) -> float | None:
        """Write the Worker's status and its Events; returns when to look again."""
        worker, body = report.worker, report.body
        generation = int(body["metadata"].get("generation") or 0)
        status, events = worker_status(
            report.status, generation, latest, outcomes, stall, api_now(), rollout
        )
        status = self._with_cron(worker, status)
        report.wire = await self.writer.worker(body, report.status, report.wire, status, events)
        report.status = status
        if not requeue:
            return None
        again = requeue_after(outcomes, stall, wait)
        if again == BACKOFF:
            return self.backoff((worker.metadata.namespace or "", worker.metadata.name))
        assert not isinstance(again, str)
        return again

    def _with_cron(self, worker: Worker, status: WorkerStatus) -> WorkerStatus:
        full, crons = worker.full_name, worker.spec.triggers.crons if worker.spec.triggers else []
        written = worker.status.cron.location if worker.status and worker.status.cron else None
        where = shown_location(self.fleet.cron_location(full), self.fleet.cron_settled(), written)
        runs = self.fleet.cron_runs(full)
        return status.model_copy(update={"cron": cron_status(crons, where, runs, api_now())})

    async def _desired_bundle(self, worker: Worker, index: VersionIndex) -> Bundle:
        """The pinned version, rebuilt from its archive, or what the spec compiles to."""
        if worker.spec.version:
            version = await index.resolve(worker.spec.version, "spec.version")
            return await self.versions.bundle(worker, version)
        bundle, blobs = compile_version(worker, await self.resolver.resolve(worker))
        self.fleet.client.hold_blobs(worker.full_name, blobs)  # assets' files, sent apart
        self.versions.remember(worker, bundle)
        return bundle

    async def _check_rollout_size(self, bundle: Bundle, targets: list[str]) -> None:
        """CompileError if a rollout of `bundle` would push more than a location takes: said
        now, before the rollout starts, not by an agent's 413 half-way through it."""
        version = bundle.version or ""
        size = self._json_sizes.get(version)
        if size is None:
            size = await asyncio.to_thread(_json_length, bundle)
            if len(self._json_sizes) >= 4096:
                self._json_sizes.pop(next(iter(self._json_sizes)))
            self._json_sizes[version] = size
        why = rollout_size_refusal(size, self.fleet.body_limits(targets))
        if why is not None:
            raise CompileError("ScriptTooLarge", why)

    async def _route_splits(self, worker: Worker, index: VersionIndex) -> list[RouteSplit]:
        """The Worker's served routes (host claimed, pattern held) with their traffic
        resolved to version ids."""
        key = (worker.metadata.namespace or "", worker.metadata.name)
        standing = self.cache.standing()
        out = []
        for rkey in self.cache.routes_of(key):
            if not standing.served(rkey):
                continue
            route = WorkerRoute.model_validate(self.cache.routes[rkey])
            split = []
            for i, t in enumerate(route.spec.traffic):
                where = f"WorkerRoute {rkey[0]}/{rkey[1]} spec.traffic[{i}].version"
                version = None if t.version == "latest" else await index.resolve(t.version, where)
                split.append((version, t.percent))
            out.append(RouteSplit(route.spec.pattern, tuple(split)))
        return out


def _json_length(bundle: Bundle) -> int:
    """The bundle's length in bytes as a push carries it (UTF-8 JSON)."""
    return len(bundle.model_dump_json(by_alias=True, exclude_none=True).encode())
