"""Writes what `report.status` decided: a Worker's status (only when it changed), its
Events, and the operator's Worker and rollout metrics."""

from __future__ import annotations

import logging
from typing import Any

from edgeplane.api import WorkerStatus, get_condition
from edgeplane.kube.client import Kube
from edgeplane.plan.targets import WorkerKey
from edgeplane.report import metrics
from edgeplane.report.status import Event, rollout_result

log = logging.getLogger("edgeplane.report")


class StatusWriter:
    def __init__(self, kube: Kube, workers: dict[WorkerKey, dict[str, Any]]) -> None:
        self.kube = kube
        self.workers = workers  # the cache, kept current with what was written
        self.ready: dict[WorkerKey, bool] = {}  # for the Workers-by-readiness gauge
        self._ready_count = 0  # of True in `ready`: not summed at each write (10,000 of them)

    async def worker(
        self,
        body: dict[str, Any],
        before: WorkerStatus | None,
        written: dict[str, Any],
        status: WorkerStatus,
        events: list[Event],
    ) -> dict[str, Any]:
        """Write the status if it differs from `written` (the wire form last written);
        returns the wire form now written."""
        ns, name = body["metadata"]["namespace"], body["metadata"]["name"]
        wire = status.to_wire()
        if wire != written:
            updated = await self.kube.patch_status("workers", ns, name, wire, written)
            if updated is not None:
                self.workers[(ns, name)] = updated
        if (result := rollout_result(before, status)) is not None:
            metrics.ROLLOUTS.labels(result).inc()
        for event in events:
            log.info("worker %s/%s: %s: %s", ns, name, event.reason, event.message)
            await self.kube.event(body, event)
        ready = get_condition(status.conditions, "Ready")
        self._count((ns, name), bool(ready and ready.status == "True"))
        return wire

    def forget(self, key: WorkerKey) -> None:
        self._count(key, None)

    def _count(self, key: WorkerKey, ready: bool | None) -> None:
        """Record whether the Worker is Ready (None: gone) and set the gauge."""
        self._ready_count -= self.ready.pop(key, False)
        if ready is not None:
            self.ready[key] = ready
            self._ready_count += ready
        metrics.WORKERS.labels("true").set(self._ready_count)
        metrics.WORKERS.labels("false").set(len(self.ready) - self._ready_count)
