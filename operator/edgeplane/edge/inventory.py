"""The inventory the agent reports (pure): per Worker what it serves, in which state, the
requests each of its versions answered, its versions quarantined here, and its service
bindings whose Worker is not at this location."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from edgeplane.edge import counts
from edgeplane.wire import Deployment


def requests_of(d: Deployment, totals: counts.Snapshot) -> dict[str, dict[str, int]]:
    out = {}
    for b in d.versions:
        codes = totals.get((d.worker, b.version or ""), [0] * len(counts.CODES))
        out[b.version or ""] = {"total": sum(codes), "errors": codes[3]}
    return out


def missing_services(d: Deployment, served: Mapping[str, Deployment]) -> list[dict[str, str]]:
    """The primary's service bindings whose Worker is not at this location: calls through
    them answer 503, so the Worker is not fully serving."""
    primary = next(b for b in d.versions if b.version == d.primary)
    return [
        {"binding": bd.name, "worker": bd.service}
        for bd in primary.bindings
        if bd.service is not None and bd.service not in served
    ]


@dataclass(frozen=True)
class Inventory:
    accepted: Mapping[str, Deployment]
    refused: Mapping[str, str]  # Worker -> message of its last refused push
    ready: bool  # the front is serving
    crash_message: str  # why the front is not serving, or ""
    totals: counts.Snapshot
    quarantine: Mapping[str, str] = field(default_factory=dict)  # version -> reason
    cell_trouble: Mapping[str, str] = field(default_factory=dict)  # worker -> why its cell
    # is not answering ("" or absent: it is)
    cell_failed: Mapping[str, str] = field(default_factory=dict)  # worker -> why its own
    # cell does not start (a stored Durable Object Worker that no longer loads here)

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
        failed = self.cell_failed.get(worker, "")
        trouble = failed or self.cell_trouble.get(worker, "")
        if msg:
            message = f"last push refused: {msg}"
        else:
            message = self.crash_message or trouble or "serving the accepted deployment"
        state = "failed" if failed else "serving" if self.ready and not trouble else "starting"
        return {
            "worker": worker,
            "primary": d.primary,
            "versions": [b.version for b in d.versions],
            "identity": d.identity(),
            "state": state,
            "message": message,
            "requests": requests_of(d, self.totals),
            "quarantined": {
                v: self.quarantine[v]
                for b in d.versions
                if (v := b.version or "") in self.quarantine
            },
            "missingServices": missing_services(d, self.accepted),
        }

    def items(self) -> list[dict[str, object]]:
        names = sorted(set(self.accepted) | set(self.refused))
        return [i for w in names if (i := self.item(w)) is not None]
