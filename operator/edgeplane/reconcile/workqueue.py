"""A keyed, coalescing work queue with bounded concurrency (controller-runtime's model).

A key is queued at most once; adding a key that is being processed marks it dirty so it
runs once more afterwards, never twice at the same time. Many events for one Worker
therefore collapse into one reconcile, and a slow Worker never blocks the others beyond
the concurrency limit.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

from edgeplane.plan.retry import backoff_delay
from edgeplane.report import metrics

K = TypeVar("K", bound=Hashable)
log = logging.getLogger(__name__)


class WorkQueue(Generic[K]):
    def __init__(
        self,
        name: str,
        handler: Callable[[K], Awaitable[float | None]],
        concurrency: int = 16,
        rand: Callable[[], float] = random.random,
    ) -> None:
        """`handler(key)` returns None when done, or a delay in seconds to retry after;
        `rand` (uniform in [0, 1)) jitters the backoff."""
        self._rand = rand
        self.name = name
        self._handler = handler
        self._concurrency = concurrency
        self._queue: asyncio.Queue[K] = asyncio.Queue()
        self._queued: dict[K, float] = {}  # key -> time it was queued
        self._active: set[K] = set()
        self._dirty: set[K] = set()
        self._timers: dict[K, asyncio.TimerHandle] = {}
        self._retries: dict[K, int] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._idle = asyncio.Event()
        self._idle.set()

    def add(self, key: K) -> None:
        metrics.WORKQUEUE_ADDS.labels(self.name).inc()
        timer = self._timers.pop(key, None)
        if timer:
            timer.cancel()
        if key in self._active:
            self._dirty.add(key)
            return
        if key in self._queued:
            return
        self._queued[key] = time.monotonic()
        self._idle.clear()
        self._queue.put_nowait(key)
        metrics.WORKQUEUE_DEPTH.labels(self.name).set(len(self._queued))

    def add_after(self, key: K, delay: float) -> None:
        """Queue `key` after `delay` seconds unless something queues it sooner: a timer of
        its that fires earlier is kept, one that fires later (e.g. a 30 s backoff, when a
        location it waits for answers again) is brought forward."""
        if key in self._queued:
            return
        loop = asyncio.get_running_loop()
        timer = self._timers.get(key)
        if timer is not None:
            if timer.when() <= loop.time() + delay:
                return
            timer.cancel()
        self._timers[key] = loop.call_later(delay, self._fire, key)

    def _fire(self, key: K) -> None:
        self._timers.pop(key, None)
        self.add(key)

    def start(self) -> None:
        for i in range(self._concurrency):
            self._tasks.append(asyncio.create_task(self._run(), name=f"{self.name}-{i}"))

    async def stop(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    async def wait_idle(self) -> None:
        """Until nothing is queued or running (delayed retries do not count)."""
        await self._idle.wait()

    async def _run(self) -> None:
        while True:
            key = await self._queue.get()
            queued_at = self._queued.pop(key)
            metrics.WORKQUEUE_DEPTH.labels(self.name).set(len(self._queued))
            metrics.WORKQUEUE_QUEUE_DURATION.labels(self.name).observe(time.monotonic() - queued_at)
            self._active.add(key)
            started = time.monotonic()
            retry_after: float | None = None
            try:
                retry_after = await self._handler(key)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s: handling %s failed", self.name, key)
                retry_after = self.backoff(key)
            finally:
                metrics.WORKQUEUE_WORK_DURATION.labels(self.name).observe(
                    time.monotonic() - started
                )
                self._active.discard(key)
            if retry_after is None:
                self._retries.pop(key, None)
            else:
                metrics.WORKQUEUE_RETRIES.labels(self.name).inc()
            if key in self._dirty:
                self._dirty.discard(key)
                self.add(key)
            elif retry_after is not None:
                self.add_after(key, retry_after)
            if not self._queued and not self._active:
                self._idle.set()

    def backoff(self, key: K) -> float:
        """Exponential per-key backoff, 0.5 s doubling up to 30 s, ±20 % jitter; reset by a
        success."""
        n = self._retries.get(key, 0)
        self._retries[key] = n + 1
        return backoff_delay(n, self._rand())
