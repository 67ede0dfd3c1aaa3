"""The inventory the agent reports (pure): per Worker what it serves, in which state, the
requests each of its versions answered, its versions quarantined here, and its service
bindings whose Worker is not at this location."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

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
    identities: Mapping[str, str] = field(default_factory=dict)  # worker -> d.identity()

    def item(self, worker: str, requests: bool = True) -> dict[str, object] | None:
        """`worker`'s inventory item; None if it is neither served nor refused. Without
        `requests`, the item leaves out its request counts (they change with traffic)."""
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
                **({"requests": {}} if requests else {}),
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
            "identity": self.identities.get(worker) or d.identity(),
            "state": state,
            "message": message,
            **({"requests": requests_of(d, self.totals)} if requests else {}),
            "quarantined": {
                v: self.quarantine[v]
                for b in d.versions
                if (v := b.version or "") in self.quarantine
            },
            "missingServices": missing_services(d, self.accepted),
        }

    def items(self, requests: bool = True) -> list[dict[str, object]]:
        names = sorted(set(self.accepted) | set(self.refused))
        return [i for w in names if (i := self.item(w, requests)) is not None]


# Removed Workers remembered for cursors; a cursor older than the oldest forgotten one gets
# the whole inventory again.
MAX_REMOVALS = 4096


@dataclass
class ChangeLog:
    """What changed in the inventory, so a caller with a cursor is sent only the items that
    changed since it (and the Workers gone), not every Worker at each health check. Items
    are compared without their request counts. A cursor names this process (`epoch`): one
    from before a restart gets everything."""

    epoch: str = field(default_factory=lambda: secrets.token_hex(6))
    seq: int = 0
    last: dict[str, dict[str, Any]] = field(default_factory=dict)  # worker -> item
    changed: dict[str, int] = field(default_factory=dict)  # worker -> seq it changed at
    removed: dict[str, int] = field(default_factory=dict)  # worker -> seq it went at
    forgotten: int = 0  # removals up to this seq are no longer remembered

    def observe(self, items: list[dict[str, Any]]) -> None:
        """Record the inventory as it is now (items without request counts)."""
        now = {str(i["worker"]): i for i in items}
        self.update({**dict.fromkeys(self.last.keys() - now.keys()), **now})

    def update(self, items: Mapping[str, dict[str, Any] | None]) -> None:
        """Record these Workers' items as they are now (None: gone); the others' stand."""
        new = {w: i for w, i in items.items() if self.last.get(w) != i}
        if not new:
            return
        self.seq += 1
        # Only what changed is stored: the items kept stay the old objects, and the new
        # equal ones die young (kept, 10,000 of them each time would be promoted to the
        # oldest GC generation and make full collections frequent).
        for w, i in new.items():
            self.removed.pop(w, None)  # to the end if gone again: oldest first
            if i is None:
                del self.last[w]
                self.changed.pop(w, None)
                self.removed[w] = self.seq
            else:
                self.last[w] = i
                self.changed[w] = self.seq
        while len(self.removed) > MAX_REMOVALS:
            oldest = next(iter(self.removed))
            self.forgotten = max(self.forgotten, self.removed.pop(oldest))

    def cursor(self) -> str:
        return f"{self.epoch}.{self.seq}"

    def since(self, cursor: str | None) -> dict[str, Any]:
        """The answer to a caller at `cursor`: the items changed since, the Workers gone
        since, and the new cursor; the whole inventory ("complete") for no cursor, one of
        another process, or one older than the removals remembered."""
        after = self._seq_of(cursor)
        if after is None:
            return {"workers": list(self.last.values()), "removed": [],
                    "cursor": self.cursor(), "complete": True}
        return {
            "workers": [self.last[w] for w, n in self.changed.items() if n > after],
            "removed": sorted(w for w, n in self.removed.items() if n > after),
            "cursor": self.cursor(),
            "complete": False,
        }

    def _seq_of(self, cursor: str | None) -> int | None:
        epoch, _, seq = (cursor or "").partition(".")
        if epoch != self.epoch or not seq.isdigit():
            return None
        n = int(seq)
        return n if self.forgotten <= n <= self.seq else None
