"""A cap on bytes in flight (asyncio): the operator's pushes wait for their share, the agent
turns a request away (503) when the bodies it is reading would go over it."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


def share(size: int, capacity: int) -> int:
    """What a body of `size` bytes takes of the budget: itself, or all of it when it is larger
    (so it goes alone rather than never)."""
    return min(max(size, 1), capacity)


class ByteBudget:
    """At most `capacity` bytes taken at once; waiters are served in arrival order, so a large
    body is not starved by a stream of small ones."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.used = 0
        self.peak = 0  # the most ever taken at once, for metrics and tests
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()

    def try_take(self, size: int) -> int | None:
        """Take `size`'s share now, or None if it does not fit (or others wait first)."""
        n = share(size, self.capacity)
        if any(not f.cancelled() for _, f in self._waiters) or self.used + n > self.capacity:
            return None
        self._grant(n)
        return n

    async def take(self, size: int) -> int:
        """Wait for `size`'s share; returns it (what `give` must return)."""
        got = self.try_take(size)
        if got is not None:
            return got
        n = share(size, self.capacity)
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((n, fut))
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.give(n)  # granted, then cancelled before it could be used
            else:
                fut.cancel()
                self._wake()  # it may have been first in line
            raise
        return n

    def give(self, n: int) -> None:
        self.used -= n
        self._wake()

    @asynccontextmanager
    async def holding(self, size: int) -> AsyncIterator[int]:
        got = await self.take(size)
        try:
            yield got
        finally:
            self.give(got)

    def _grant(self, n: int) -> None:
        self.used += n
        self.peak = max(self.peak, self.used)

    def _wake(self) -> None:
        while self._waiters:
            n, fut = self._waiters[0]
            if fut.cancelled():
                self._waiters.popleft()
                continue
            if self.used + n > self.capacity:
                return
            self._waiters.popleft()
            self._grant(n)
            fut.set_result(None)
