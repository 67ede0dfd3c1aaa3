"""The inventory the agent reports (pure): per Worker what it serves, in which state, and
the requests each of its versions answered."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from edgeplane.edge import counts
from edgeplane.wire import Deployment


def requests_of(d: Deployment, totals: counts.Snapshot) -> dict[str, dict[str, int]]:
    out = {}
    for b in d.versions:
        codes = totals.get((d.worker, b.version or ""), [0] * len(counts.CODES))
        out[b.version or ""] = {"total": sum(codes), "errors": codes[3]}
    return out


@dataclass(frozen=True)
class Inventory:
    accepted: Mapping[str, Deployment]
    refused: Mapping[str, str]  # Worker -> message of its last refused push
    ready: bool  # a workerd generation is serving
    crash_message: str  # why workerd is not serving, or ""
    totals: counts.Snapshot

    def item(self, worker: str) -> dict[str, object] | None:
        """`worker`'s inventory item; None if it is neither served nor refused."""
        d = self.accepted.get(worker)
        if d is None:
            if worker not in self.refused:
                return None
            return {
                "worker": worker,
                "primary": "",
                "versions": [],
                "identity": "",
                "state": "failed",
                "message": self.refused[worker],
                "requests": {},
            }
        msg = self.refused.get(worker)
        if msg:
            message = f"last push refused: {msg}"
        else:
            message = self.crash_message or "serving the accepted deployment"
        return {
            "worker": worker,
            "primary": d.primary,
            "versions": [b.version for b in d.versions],
            "identity": d.identity(),
            "state": "serving" if self.ready else "starting",
            "message": message,
            "requests": requests_of(d, self.totals),
        }

    def items(self) -> list[dict[str, object]]:
        names = sorted(set(self.accepted) | set(self.refused))
        return [i for w in names if (i := self.item(w)) is not None]
