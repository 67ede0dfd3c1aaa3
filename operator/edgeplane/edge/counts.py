"""Requests per Worker version and status class, cumulative since the agent started.

Each workerd generation's router counts in memory (see `edgeplane.routing.router_js`); the agent
reads those counts from the generation's stats socket. A generation's counts join `base`
when it ends: its final counts (read while it drains) or else the last ones read. So the
totals only ever grow, and a reload neither resets nor double counts them."""

from __future__ import annotations

import json
from collections.abc import Hashable, Mapping

CODES = ("2xx", "3xx", "4xx", "5xx")
Key = tuple[str, str]  # (worker, version)
Snapshot = dict[Key, list[int]]


def parse(body: bytes) -> Snapshot:
    """The router's stats JSON → {(worker, version): [2xx, 3xx, 4xx, 5xx]}; ValueError if
    it is not that."""
    doc = json.loads(body)
    out: Snapshot = {}
    for c in doc["counts"]:
        codes = [int(x) for x in c["codes"]]
        if len(codes) != len(CODES) or any(x < 0 for x in codes):
            raise ValueError(f"bad codes {codes!r}")
        out[(str(c["worker"]), str(c["version"]))] = codes
    return out


def _add(into: Snapshot, more: Mapping[Key, list[int]]) -> None:
    for k, codes in more.items():
        cur = into.setdefault(k, [0] * len(CODES))
        for i, n in enumerate(codes):
            cur[i] += n


class Counts:
    def __init__(self) -> None:
        self.base: Snapshot = {}  # generations that ended
        self.live: dict[Hashable, Snapshot] = {}  # generation → its last counts read

    def start(self, gen: Hashable) -> None:
        self.live.setdefault(gen, {})

    def update(self, gen: Hashable, snap: Snapshot) -> None:
        """Counts read from a running generation; ignored once it has ended (its final
        counts are in `base` already)."""
        last = self.live.get(gen)
        if last is None:
            return
        for k, codes in snap.items():
            cur = last.setdefault(k, [0] * len(CODES))
            for i, n in enumerate(codes):
                cur[i] = max(cur[i], n)  # a generation's counters never go down

    def finish(self, gen: Hashable, final: Snapshot | None) -> None:
        """A generation ended: keep its final counts, or the last ones read."""
        if gen not in self.live:
            return
        if final is not None:
            self.update(gen, final)
        _add(self.base, self.live.pop(gen))

    def totals(self) -> Snapshot:
        out: Snapshot = {k: list(v) for k, v in self.base.items()}
        for snap in self.live.values():
            _add(out, snap)
        return out
