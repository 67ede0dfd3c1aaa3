"""A keyed, coalescing work queue with bounded concurrency (controller-runtime's model),
with lanes.

A key is queued at most once; adding a key that is being processed marks it dirty so it
runs once more afterwards, never twice at the same time. Many events for one Worker
therefore collapse into one reconcile, and a slow Worker never blocks the others beyond
the concurrency limit. Which queued key runs next is plan/lanes.py's choice: urgent work
(a rollback) goes before a burst of normal or background work, background (a resync) is
never starved, and namespaces take turns within a lane. Background keys never take the
last quarter of the slots, so urgent work starts even while slow background work fills
the rest.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

from edgeplane.plan.lanes import LANES, Lane, Lanes, higher
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
        namespace: Callable[[K], str] = lambda key: "",
    ) -> None:
        """`handler(key)` returns None when done, or a delay in seconds to retry after;
        `rand` (uniform in [0, 1)) jitters the backoff; `namespace(key)` is whose turn a
        key waits for."""
        self._rand = rand
        self.name = name
        self._handler = handler
        self._concurrency = concurrency
        # A quarter of the slots (at least one) is kept for urgent and normal keys.
        self._background_slots = max(1, concurrency - max(1, concurrency // 4))
        self._namespace = namespace
        self._lanes: Lanes[K] = Lanes()
        self._queued: dict[K, float] = {}  # key -> time it was queued
        self._running: dict[K, float] = {}  # key -> time it started
        self._background_running = 0
        self._dirty: dict[K, Lane] = {}  # running keys added again, and the lane to rerun in
        self._timers: dict[K, tuple[asyncio.TimerHandle, Lane]] = {}
        self._retries: dict[K, int] = {}
        self._dispatcher: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()  # something was queued, or a slot came free
        self._idle = asyncio.Event()
        self._idle.set()
        # Children looked up once: a burst adds thousands of keys.
        self._depth = {la: metrics.WORKQUEUE_DEPTH.labels(name, la) for la in LANES}
        self._adds = {la: metrics.WORKQUEUE_ADDS.labels(name, la) for la in LANES}
        metrics.WORKQUEUE_LONGEST_RUNNING.labels(name).set_function(self.longest_running)
        metrics.WORKQUEUE_UNFINISHED_WORK.labels(name).set_function(self.unfinished_work)
        self._set_depth()

    def add(self, key: K, lane: Lane = "normal") -> None:
        """Queue `key` in `lane`, or move it up to `lane` if it waits in a lower one."""
        self._adds[lane].inc()
        timer = self._timers.pop(key, None)
        if timer:
            timer[0].cancel()
        if key in self._running:
            self._dirty[key] = higher(lane, self._dirty.get(key, lane))
            return
        if self._lanes.add(key, self._namespace(key), lane):
            self._queued[key] = time.monotonic()
        self._idle.clear()
        self._wake.set()
        self._set_depth()

    def add_after(self, key: K, delay: float, lane: Lane = "normal") -> None:
        """Queue `key` after `delay` seconds unless something queues it sooner: a timer of
        its that fires earlier is kept, one that fires later (e.g. a 30 s backoff, when a
        location it waits for answers again) is brought forward; either way it fires into
        the higher of the two lanes."""
        if key in self._lanes:
            return
        loop = asyncio.get_running_loop()
        timer = self._timers.get(key)
        if timer is not None:
            lane = higher(lane, timer[1])
            if timer[0].when() <= loop.time() + delay:
                self._timers[key] = (timer[0], lane)
                return
            timer[0].cancel()
        self._timers[key] = (loop.call_later(delay, self._fire, key), lane)

    def _fire(self, key: K) -> None:
        _, lane = self._timers.pop(key)
        self.add(key, lane)

    def start(self) -> None:
        self._dispatcher = asyncio.create_task(self._dispatch(), name=f"{self.name}-dispatch")

    async def stop(self) -> None:
        for timer, _ in self._timers.values():
            timer.cancel()
        self._timers.clear()
        tasks = [*self._tasks, *([self._dispatcher] if self._dispatcher else [])]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
        self._dispatcher = None

    async def wait_idle(self) -> None:
        """Until nothing is queued or running (delayed retries do not count)."""
        await self._idle.wait()

    def depth(self, lane: Lane | None = None) -> int:
        """Keys waiting, in one lane or in all."""
        return len(self._lanes) if lane is None else self._lanes.depth(lane)

    def longest_running(self) -> float:
        """Seconds the longest-running handler has run (client-go's
        longest_running_processor)."""
        started = tuple(self._running.values())  # read from the metrics thread too
        return time.monotonic() - min(started) if started else 0.0

    def unfinished_work(self) -> float:
        """Seconds of work in progress not yet observed in the work duration: a stuck
        handler shows here long before it ends (client-go's unfinished_work)."""
        started = tuple(self._running.values())
        now = time.monotonic()
        return sum(now - s for s in started)

    async def _dispatch(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while len(self._running) < self._concurrency:
                picked = self._lanes.pop(self._background_running < self._background_slots)
                if picked is None:
                    break
                self._begin(*picked)

    def _begin(self, key: K, lane: Lane) -> None:
        queued_at = self._queued.pop(key)
        self._set_depth()
        metrics.WORKQUEUE_QUEUE_DURATION.labels(self.name, lane).observe(
            time.monotonic() - queued_at
        )
        self._running[key] = time.monotonic()
        self._background_running += lane == "background"
        task = asyncio.create_task(self._work(key, lane), name=f"{self.name}-{key}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _work(self, key: K, lane: Lane) -> None:
        retry_after: float | None = None
        # A retry is never urgent; one after an error waits behind the other work.
        retry_lane: Lane = "background" if lane == "background" else "normal"
        try:
            retry_after = await self._handler(key)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s: handling %s failed", self.name, key)
            retry_after, retry_lane = self.backoff(key), "background"
        finally:
            metrics.WORKQUEUE_WORK_DURATION.labels(self.name).observe(
                time.monotonic() - self._running.pop(key)
            )
            self._background_running -= lane == "background"
            self._wake.set()
        if retry_after is None:
            self._retries.pop(key, None)
        else:
            metrics.WORKQUEUE_RETRIES.labels(self.name).inc()
        if key in self._dirty:
            self.add(key, self._dirty.pop(key))
        elif retry_after is not None:
            self.add_after(key, retry_after, retry_lane)
        if not self._lanes and not self._running:
            self._idle.set()

    def _set_depth(self) -> None:
        for lane, gauge in self._depth.items():
            gauge.set(self._lanes.depth(lane))

    def backoff(self, key: K) -> float:
        """Exponential per-key backoff, 0.5 s doubling up to 30 s, ±20 % jitter; reset by a
        success."""
        n = self._retries.get(key, 0)
        self._retries[key] = n + 1
        return backoff_delay(n, self._rand())
