"""The exclusions loop: each namespace's routes without a Worker, at every location. A
location holds one set per namespace, replaced whole, so this loop is keyed by namespace."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from edgeplane.distribute.fleet import Fleet
from edgeplane.reconcile.cache import Cache


class ExclusionReconciler:
    def __init__(self, cache: Cache, fleet: Fleet, backoff: Callable[[str], float]) -> None:
        self.cache, self.fleet, self.backoff = cache, fleet, backoff

    async def reconcile(self, namespace: str) -> float | None:
        """Send the namespace's set where a location holds another (or may: not asked yet);
        with backoff while a location that should change it does not answer."""
        want = self.cache.exclusions().get(namespace, ())
        await self.fleet.views()  # asks the locations not asked yet
        stale = [
            name
            for name in sorted(self.fleet.targets)
            if (held := self.fleet.at(name).exclusions) is None
            or held.get(namespace, ()) != want
        ]
        answered = await asyncio.gather(*(self.fleet.exclude(t, namespace, want) for t in stale))
        return self.backoff(namespace) if not all(answered) else None
