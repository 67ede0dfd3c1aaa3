"""The work queue coalesces keys and never runs one key twice at the same time."""

from __future__ import annotations

import asyncio

import pytest

from edgeplane.reconcile.workqueue import WorkQueue


async def test_many_adds_of_one_key_coalesce_and_never_overlap() -> None:
    runs: list[str] = []
    running: set[str] = set()
    overlap = False

    async def handle(key: str) -> None:
        nonlocal overlap
        overlap |= key in running
        running.add(key)
        runs.append(key)
        await asyncio.sleep(0.05)
        running.discard(key)

    q: WorkQueue[str] = WorkQueue("t1", handle, concurrency=4)
    q.start()
    for _ in range(50):
        q.add("a")
    q.add("b")
    await asyncio.sleep(0.01)  # "a" is running now: the next adds mark it dirty
    for _ in range(50):
        q.add("a")
    await asyncio.sleep(0.3)
    await q.wait_idle()
    await q.stop()
    assert not overlap
    assert runs.count("a") == 2  # once, then once more for the adds made while it ran
    assert runs.count("b") == 1


async def test_a_delay_returned_by_the_handler_retries_the_key() -> None:
    attempts = 0

    async def handle(key: str) -> float | None:
        nonlocal attempts
        attempts += 1
        return 0.01 if attempts < 3 else None

    q: WorkQueue[str] = WorkQueue("t2", handle, concurrency=1)
    q.start()
    q.add("k")
    for _ in range(100):
        if attempts >= 3:
            break
        await asyncio.sleep(0.01)
    await q.stop()
    assert attempts == 3


async def test_errors_are_retried_with_growing_backoff() -> None:
    q: WorkQueue[str] = WorkQueue("t3", lambda k: asyncio.sleep(0), concurrency=1, rand=lambda: 0.5)
    assert [q.backoff("k") for _ in range(8)] == [0.5, 1, 2, 4, 8, 16, 30, 30]
    low: WorkQueue[str] = WorkQueue("t3", lambda k: asyncio.sleep(0), rand=lambda: 0.0)
    assert [low.backoff("k") for _ in range(3)] == pytest.approx([0.4, 0.8, 1.6])


async def test_keys_failing_together_do_not_retry_together() -> None:
    """1,000 keys failing at the same instant: their retries spread over most of the
    ±20 % band of each step instead of landing on the same tick."""
    q: WorkQueue[int] = WorkQueue("t3b", lambda k: asyncio.sleep(0))
    for step in (0.5, 1, 2, 4):
        delays = [q.backoff(k) for k in range(1000)]
        assert all(0.8 * step <= d <= 1.2 * step for d in delays)
        assert max(delays) - min(delays) >= 0.3 * step


async def test_a_sooner_add_after_brings_a_pending_retry_forward() -> None:
    runs: list[str] = []

    async def handle(key: str) -> None:
        runs.append(key)

    q: WorkQueue[str] = WorkQueue("t5", handle, concurrency=1)
    q.start()
    q.add_after("k", 30)  # e.g. a backoff while its location is down
    q.add_after("k", 0.05)  # the location answers again: sooner wins
    q.add_after("k", 20)  # a later one does not push it back
    await asyncio.sleep(0.3)
    await q.stop()
    assert runs == ["k"]
