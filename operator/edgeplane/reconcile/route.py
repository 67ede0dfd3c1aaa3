"""The WorkerRoute loop: its Ready condition from the cached routes and Workers and the
Worker's retained versions; serving the route is the Worker loop's job."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from edgeplane.api import (
    HostClaim,
    HostClaimStatus,
    Worker,
    WorkerRoute,
    WorkerRouteStatus,
)
from edgeplane.api.common import Wire
from edgeplane.compile import CompileError
from edgeplane.distribute.fleet import Fleet
from edgeplane.kube.client import Kube
from edgeplane.reconcile.cache import Cache
from edgeplane.report.route import (
    Blocked,
    claim_condition,
    exclusion_condition,
    ready_status,
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
            try:
                served = Worker.model_validate(worker)
            except ValidationError:  # the Worker's own status says why
                why = f"Worker {route.spec.worker}: its spec is refused; see its status"
                failure = (False, "InvalidSpec", why)
            else:
                shares, failure = await self._shares(route, served)
        spec = route.spec
        exists = worker is not None
        cond = route_condition(spec.pattern, ns, spec.worker, blocked, exists, shares, failure)
        status = ready_status(WorkerRouteStatus, route.status, body, cond)
        updated = await self._write("workerroutes", ns, name, body, status)
        if updated is not None:
            self.cache.routes[(ns, name)] = updated

    async def _write(
        self, plural: str, ns: str | None, name: str, body: dict[str, Any], status: Wire
    ) -> dict[str, Any] | None:
        """Write the status if it changed; the object as written, if it was."""
        if status.to_wire() == (body.get("status") or {}):
            return None
        return await self.kube.patch_status(plural, ns, name, status.to_wire(), body.get("status"))

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
        cond = claim_condition(claim.spec.hosts, claim.spec.namespaces)
        status = ready_status(HostClaimStatus, claim.status, body, cond)
        updated = await self._write("hostclaims", None, name, body, status)
        if updated is not None:
            self.cache.claims[name] = updated
