"""The WorkerRoute loop: its Ready condition from the cached routes and Workers and the
Worker's retained versions; serving the route is the Worker loop's job."""

from __future__ import annotations

from edgeplane.api import (
    HostClaim,
    HostClaimStatus,
    Worker,
    WorkerRoute,
    WorkerRouteStatus,
    set_condition,
)
from edgeplane.compile import CompileError
from edgeplane.distribute.fleet import Fleet
from edgeplane.kube.client import Kube
from edgeplane.reconcile.cache import Cache
from edgeplane.report.route import (
    Blocked,
    claim_condition,
    exclusion_condition,
    route_condition,
)
from edgeplane.report.status import ConditionFields
from edgeplane.versions.store import VersionIndex, VersionStore


class RouteReconciler:
    def __init__(
        self, cache: Cache, kube: Kube, versions: VersionStore, fleet: Fleet
    ) -> None:
        self.cache, self.kube, self.versions, self.fleet = cache, kube, versions, fleet

    async def reconcile(self, ns: str, name: str) -> None:
        body = self.cache.routes.get((ns, name))
        if body is None:
            return
        route = WorkerRoute.model_validate(body)
        worker = self.cache.workers.get((ns, route.spec.worker or ""))
        standing = self.cache.standing()
        blocked = Blocked(standing.unclaimed.get((ns, name)), standing.conflicts.get((ns, name)))
        shares: list[str] = []
        failure = None
        if route.spec.worker is None:
            failure = self._exclusion_failure(ns)
        elif worker is not None and standing.served((ns, name)):
            shares, failure = await self._shares(route, Worker.model_validate(worker))
        spec = route.spec
        exists = worker is not None
        cond = route_condition(spec.pattern, ns, spec.worker, blocked, exists, shares, failure)
        generation = int(body["metadata"].get("generation") or 0)
        prev = route.status or WorkerRouteStatus()
        status = WorkerRouteStatus(
            observed_generation=generation,
            conditions=set_condition(
                list(prev.conditions), "Ready", *cond, observed_generation=generation
            ),
        )
        if status.to_wire() != (body.get("status") or {}):
            updated = await self.kube.patch_status(
                "workerroutes", ns, name, status.to_wire(), body.get("status")
            )
            if updated is not None:
                self.cache.routes[(ns, name)] = updated

    def _exclusion_failure(self, namespace: str) -> ConditionFields | None:
        """Why the namespace's routes without a Worker are not excluded everywhere yet."""
        want = self.cache.exclusions().get(namespace, ())
        pending, refused = self.fleet.exclusion_state(namespace, want)
        return exclusion_condition(pending, refused)

    async def _shares(
        self, route: WorkerRoute, worker: Worker
    ) -> tuple[list[str], ConditionFields | None]:
        """The route's split with version references resolved, or why one does not resolve."""
        index = VersionIndex(self.versions, worker)
        shares = []
        for i, t in enumerate(route.spec.traffic):
            if t.version == "latest":
                shares.append(f"{t.percent}% latest")
                continue
            try:
                version = await index.resolve(t.version, f"spec.traffic[{i}].version")
            except CompileError as e:
                return [], (False, e.reason, e.message)
            shares.append(f"{t.percent}% {version[:12]}")
        return shares, None

    async def reconcile_claim(self, name: str) -> None:
        """A HostClaim's status: it takes effect on the routes as soon as it is seen."""
        body = self.cache.claims.get(name)
        if body is None:
            return
        claim = HostClaim.model_validate(body)
        generation = int(body["metadata"].get("generation") or 0)
        prev = claim.status or HostClaimStatus()
        cond = claim_condition(claim.spec.hosts, claim.spec.namespaces)
        status = HostClaimStatus(
            observed_generation=generation,
            conditions=set_condition(
                list(prev.conditions), "Ready", *cond, observed_generation=generation
            ),
        )
        if status.to_wire() != (body.get("status") or {}):
            updated = await self.kube.patch_status(
                "hostclaims", None, name, status.to_wire(), body.get("status")
            )
            if updated is not None:
                self.cache.claims[name] = updated
