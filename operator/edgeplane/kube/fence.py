"""The fence: with several replicas, a write is sent only while this replica holds the
bucket of the work it is done for.

The bucket is a ContextVar, set by the controller for the handling of one work key (and
bucket 0 for location-wide work), so it follows the work into the tasks it starts and no
signature changes. Every write verb of kube/client.py and every mutation of an agent in
distribute/ calls `check()` first. Outside any scope (one replica, or reads) it passes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_current: ContextVar[tuple[Fence, int] | None] = ContextVar("edgeplane_bucket", default=None)


class Fenced(Exception):
    """A write refused before it was sent: this replica no longer holds the bucket."""


class Fence:
    """Which buckets this replica may write for. `held(bucket)` is the elector's answer;
    without one (a single replica) every bucket is held."""

    def __init__(self, held: Callable[[int], bool] | None = None) -> None:
        self._held = held

    def holds(self, bucket: int) -> bool:
        return self._held is None or self._held(bucket)

    @contextmanager
    def scope(self, bucket: int) -> Iterator[None]:
        """The writes of the work done inside are fenced on `bucket`."""
        token = _current.set((self, bucket))
        try:
            yield
        finally:
            _current.reset(token)


def current_bucket() -> int | None:
    cur = _current.get()
    return None if cur is None else cur[1]


def check(what: str) -> None:
    """Raise Fenced, before `what` is sent, if the current work's bucket is not held."""
    cur = _current.get()
    if cur is not None and not cur[0].holds(cur[1]):
        raise Fenced(f"{what} not sent: bucket {cur[1]} is no longer held by this replica")
