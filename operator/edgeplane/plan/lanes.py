"""Which queued key runs next: three lanes with a weighted pick between them, and a round
robin across namespaces inside each, so that a burst in one lane or one namespace delays
the others but never starves them. Pure: the work queue (reconcile/workqueue.py) keeps
its keys here and runs what `pop` returns."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Mapping
from typing import Generic, Literal, TypeVar

K = TypeVar("K", bound=Hashable)
Lane = Literal["urgent", "normal", "background"]
LANES: tuple[Lane, ...] = ("urgent", "normal", "background")  # highest first
# Turns out of every 11 while all three lanes wait: an urgent key (a rollback) is almost
# always the next one taken, and background work (a resync) still gets one turn in 11.
WEIGHTS: Mapping[Lane, int] = {"urgent": 8, "normal": 2, "background": 1}


def higher(a: Lane, b: Lane) -> Lane:
    return a if LANES.index(a) <= LANES.index(b) else b


class Lanes(Generic[K]):
    """The queued keys. A key is in at most one lane, once, so memory is bounded by the
    number of distinct keys however often they are added."""

    def __init__(self, weights: Mapping[Lane, int] = WEIGHTS) -> None:
        self._weights = weights
        self._where: dict[K, tuple[Lane, str]] = {}  # key -> its lane and namespace
        # Per lane, namespaces in turn order, each with its keys in the order queued.
        self._lanes: dict[Lane, OrderedDict[str, OrderedDict[K, None]]] = {
            lane: OrderedDict() for lane in LANES
        }
        self._depth: dict[Lane, int] = dict.fromkeys(LANES, 0)
        # Smooth weighted round robin (as nginx balances upstreams): deterministic, and a
        # lane never waits more than about total/weight turns.
        self._credit: dict[Lane, int] = dict.fromkeys(LANES, 0)

    def __len__(self) -> int:
        return len(self._where)

    def __contains__(self, key: object) -> bool:
        return key in self._where

    def lane_of(self, key: K) -> Lane | None:
        where = self._where.get(key)
        return where[0] if where else None

    def depth(self, lane: Lane) -> int:
        return self._depth[lane]

    def namespaces(self, lane: Lane) -> int:
        """How many namespaces have keys waiting in `lane`."""
        return len(self._lanes[lane])

    def add(self, key: K, namespace: str, lane: Lane) -> bool:
        """Queue `key` in `lane`. A key already queued keeps its place, unless `lane` is
        higher: then it moves there (to the back of its namespace). Returns whether the
        key was not queued before."""
        where = self._where.get(key)
        if where is not None:
            if higher(lane, where[0]) == where[0]:
                return False
            self._take_out(key, *where)
        spaces = self._lanes[lane]
        spaces.setdefault(namespace, OrderedDict())[key] = None
        self._where[key] = (lane, namespace)
        self._depth[lane] += 1
        return where is None

    def pop(self, background_ok: bool = True) -> tuple[K, Lane] | None:
        """The next key and the lane it waited in, or None when nothing (that may run
        now: `background_ok` False holds background keys back) waits."""
        ready = [
            lane for lane in LANES
            if self._depth[lane] and (background_ok or lane != "background")
        ]
        if not ready:
            return None
        for lane in LANES:
            # A lane with nothing waiting banks no turns for later.
            self._credit[lane] = self._credit[lane] + self._weights[lane] if lane in ready else 0
        lane = max(ready, key=lambda la: self._credit[la])  # a tie goes to the higher lane
        self._credit[lane] -= sum(self._weights[la] for la in ready)
        spaces = self._lanes[lane]
        namespace, keys = next(iter(spaces.items()))
        key, _ = keys.popitem(last=False)
        if keys:
            spaces.move_to_end(namespace)  # the next key of this lane is another namespace's
        else:
            del spaces[namespace]
        del self._where[key]
        self._depth[lane] -= 1
        return key, lane

    def _take_out(self, key: K, lane: Lane, namespace: str) -> None:
        keys = self._lanes[lane][namespace]
        del keys[key]
        if not keys:
            del self._lanes[lane][namespace]
        del self._where[key]
        self._depth[lane] -= 1
