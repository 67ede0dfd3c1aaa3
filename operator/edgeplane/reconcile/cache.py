"""The latest Worker and WorkerRoute bodies the watches delivered (an informer cache)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from edgeplane.plan.routes import RouteKey, exclusions, route_conflicts
from edgeplane.plan.targets import WorkerKey


@dataclass
class Cache:
    workers: dict[WorkerKey, dict[str, Any]] = field(default_factory=dict)
    routes: dict[RouteKey, dict[str, Any]] = field(default_factory=dict)

    def routes_of(self, worker: WorkerKey) -> list[RouteKey]:
        """The WorkerRoutes that send requests to the Worker."""
        return sorted(
            key
            for key, body in self.routes.items()
            if key[0] == worker[0] and body["spec"].get("worker") == worker[1]
        )

    def patterns(self) -> dict[RouteKey, str]:
        return {key: body["spec"]["pattern"] for key, body in self.routes.items()}

    def exclusions(self) -> dict[str, tuple[str, ...]]:
        """Namespace -> the patterns its routes without a Worker exclude."""
        routes = {
            key: (body["spec"]["pattern"], body["spec"].get("worker"))
            for key, body in self.routes.items()
        }
        return exclusions(routes, route_conflicts(self.patterns()))

    def routes_without_worker(self, namespace: str | None = None) -> list[RouteKey]:
        """Routes without a Worker, of one namespace or all."""
        return sorted(
            key
            for key, body in self.routes.items()
            if not body["spec"].get("worker") and namespace in (None, key[0])
        )
