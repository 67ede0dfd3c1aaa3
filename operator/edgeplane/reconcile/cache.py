"""The latest Worker and WorkerRoute bodies the watches delivered (an informer cache)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from edgeplane.plan.routes import RouteKey
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
            if key[0] == worker[0] and body["spec"]["worker"] == worker[1]
        )

    def patterns(self) -> dict[RouteKey, str]:
        return {key: body["spec"]["pattern"] for key, body in self.routes.items()}
