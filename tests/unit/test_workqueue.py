"""The work queue coalesces keys and never runs one key twice at the same time; its lanes
(plan/lanes.py) take urgent work first, never starve background work, and give
namespaces turns."""

from __future__ import annotations

import asyncio
import random

import pytest
from prometheus_client import REGISTRY

from edgeplane.plan.lanes import LANES, Lane, Lanes
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


# -- the pure choice: plan/lanes.py ----------------------------------------------------

Add = tuple[str, str, Lane]  # key, namespace, lane


def drain(adds: list[Add], background_ok: bool = True) -> list[str]:
    lanes: Lanes[str] = Lanes()
    for key, ns, lane in adds:
        lanes.add(key, ns, lane)
    out = []
    while (picked := lanes.pop(background_ok)) is not None:
        out.append(picked[0])
    return out


def keys(prefix: str, n: int, lane: Lane, ns: str = "") -> list[Add]:
    return [(f"{prefix}{i}", ns, lane) for i in range(n)]


@pytest.mark.parametrize(
    ("adds", "order"),
    [
        # One lane, one namespace: first in, first out.
        (keys("b", 3, "background"), "b0 b1 b2"),
        # An urgent key added last runs first.
        ([*keys("b", 3, "background"), ("u", "", "urgent")], "u b0 b1 b2"),
        ([*keys("n", 2, "normal"), ("u", "", "urgent")], "u n0 n1"),
        # Namespaces take turns within a lane, whatever order they were queued in.
        ([("a0", "a", "normal"), ("a1", "a", "normal"), ("a2", "a", "normal"),
          ("b0", "b", "normal"), ("c0", "c", "normal"), ("b1", "b", "normal")],
         "a0 b0 c0 a1 b1 a2"),
        # All three lanes waiting: 8 urgent, 2 normal, 1 background in every 11 turns, so
        # background work is not starved by a stream of urgent work.
        (keys("u", 10, "urgent") + keys("n", 4, "normal") + keys("b", 3, "background"),
         "u0 u1 n0 u2 u3 b0 u4 u5 n1 u6 u7 u8 u9 n2 n3 b1 b2"),
        # Added again in a higher lane: it moves there, once.
        ([*keys("b", 3, "background"), ("n", "", "normal"), ("b2", "", "urgent")],
         "b2 n b0 b1"),
        # Added again in a lower lane (or the same): it keeps its lane and place.
        ([("u", "", "urgent"), ("n", "", "normal"), ("u", "", "background"),
          ("n", "", "normal")], "u n"),
    ],
)
def test_which_key_runs_next(adds: list[Add], order: str) -> None:
    assert " ".join(drain(adds)) == order


def test_background_may_be_held_back() -> None:
    adds = [*keys("b", 2, "background"), ("n", "", "normal")]
    assert drain(adds, background_ok=False) == ["n"]
    assert drain(keys("b", 2, "background"), background_ok=False) == []


def test_an_urgent_key_goes_before_10000_background_keys() -> None:
    lanes: Lanes[str] = Lanes()
    for i in range(10_000):
        lanes.add(f"b{i}", f"ns{i % 7}", "background")
    for _ in range(100):  # the burst is under way
        lanes.pop()
    lanes.add("rollback", "ns3", "urgent")
    assert lanes.pop() == ("rollback", "urgent")


def test_memory_is_bounded_by_distinct_keys_and_none_is_lost() -> None:
    """200,000 adds of 2,000 keys in random lanes: at most 2,000 entries at any time, and
    draining returns each key exactly once, in the highest lane it was added with."""
    rng = random.Random(15)
    lanes: Lanes[int] = Lanes()
    highest: dict[int, Lane] = {}
    for _ in range(200_000):
        key, lane = rng.randrange(2000), rng.choice(LANES)
        lanes.add(key, f"ns{key % 13}", lane)
        if LANES.index(lane) < LANES.index(highest.get(key, "background")):
            highest[key] = lane
        highest.setdefault(key, lane)
        assert len(lanes) <= 2000
    assert len(lanes) == sum(lanes.depth(la) for la in LANES) == len(highest)
    popped = []
    while (picked := lanes.pop()) is not None:
        popped.append(picked)
    assert sorted(k for k, _ in popped) == sorted(highest)
    assert dict(popped) == highest
    assert all(lanes.namespaces(la) == 0 and lanes.depth(la) == 0 for la in LANES)


# -- the queue that runs them --------------------------------------------------------


async def test_an_urgent_key_runs_before_a_burst_of_10000_background_keys() -> None:
    runs: list[str] = []
    under_way = asyncio.Event()

    async def handle(key: str) -> None:
        runs.append(key)
        if len(runs) == 50:
            under_way.set()
        await asyncio.sleep(0)

    q: WorkQueue[str] = WorkQueue("t6", handle, concurrency=4, namespace=lambda k: k[:2])
    q.start()
    for i in range(10_000):
        q.add(f"n{i % 5}-{i}", lane="background")
    await under_way.wait()
    before = len(runs)
    q.add("n3-rollback", lane="urgent")
    await q.wait_idle()
    await q.stop()
    # Only keys already running (3 background slots of 4) start before it.
    assert runs.index("n3-rollback") - before <= 3
    assert len(runs) == 10_001


async def test_namespaces_take_turns() -> None:
    runs: list[str] = []

    async def handle(key: str) -> None:
        runs.append(key)

    q: WorkQueue[str] = WorkQueue("t7", handle, concurrency=1, namespace=lambda k: k[0])
    for i in range(100):
        q.add(f"a{i}")  # one busy namespace
    q.add("b0")
    q.add("c0")
    q.start()
    await q.wait_idle()
    await q.stop()
    assert runs[:4] == ["a0", "b0", "c0", "a1"]


async def test_a_queued_key_added_urgent_moves_up() -> None:
    runs: list[str] = []
    release = asyncio.Event()

    async def handle(key: str) -> None:
        runs.append(key)
        if key == "first":
            await release.wait()

    q: WorkQueue[str] = WorkQueue("t8", handle, concurrency=1)
    q.start()
    q.add("first")
    await asyncio.sleep(0.01)
    for key in ("x", "y", "z"):
        q.add(key, lane="background")
    q.add("z", lane="urgent")
    assert q.depth() == 3 and q.depth("urgent") == 1
    release.set()
    await q.wait_idle()
    await q.stop()
    assert runs == ["first", "z", "x", "y"]


async def test_slow_background_work_leaves_slots_for_urgent_work() -> None:
    """Background keys never hold the last quarter of the slots: an urgent key starts at
    once even while background handlers hang (e.g. on a location that does not answer)."""
    hang = asyncio.Event()
    started: list[str] = []

    async def handle(key: str) -> None:
        started.append(key)
        if key.startswith("b"):
            await hang.wait()

    q: WorkQueue[str] = WorkQueue("t9", handle, concurrency=4)
    q.start()
    for i in range(20):
        q.add(f"b{i}", lane="background")
    await asyncio.sleep(0.05)
    assert started == ["b0", "b1", "b2"]
    q.add("urgent", lane="urgent")
    await asyncio.sleep(0.05)
    assert "urgent" in started
    gauge = REGISTRY.get_sample_value(
        "edgeplane_workqueue_longest_running_processor_seconds", {"name": "t9"}
    )
    unfinished = REGISTRY.get_sample_value(
        "edgeplane_workqueue_unfinished_work_seconds", {"name": "t9"}
    )
    assert gauge is not None and unfinished is not None
    assert 0.05 <= gauge <= unfinished  # three hung handlers, each at least 0.05 s
    depth = REGISTRY.get_sample_value(
        "edgeplane_workqueue_depth", {"name": "t9", "lane": "background"}
    )
    assert depth == 17
    hang.set()
    await q.wait_idle()
    await q.stop()
    assert sorted(started) == sorted([f"b{i}" for i in range(20)] + ["urgent"])


async def test_no_key_is_lost_or_run_twice_at_once_across_lanes() -> None:
    """Random adds in random lanes while keys run: never two runs of a key at once, and
    every add is followed by a run of its key that started after it."""
    rng = random.Random(3)
    running: set[int] = set()
    overlap = False
    last_add: dict[int, int] = {}
    last_start: dict[int, int] = {}
    clock = 0

    async def handle(key: int) -> None:
        nonlocal overlap, clock
        overlap |= key in running
        running.add(key)
        clock += 1
        last_start[key] = clock
        await asyncio.sleep(rng.random() * 0.002)
        running.discard(key)

    q: WorkQueue[int] = WorkQueue("t10", handle, concurrency=8, namespace=lambda k: str(k % 3))
    q.start()
    for _ in range(3000):
        key = rng.randrange(60)
        clock += 1
        last_add[key] = clock
        q.add(key, lane=rng.choice(LANES))
        if rng.random() < 0.3:
            await asyncio.sleep(0)
    await q.wait_idle()
    await q.stop()
    assert not overlap
    assert all(last_start[k] > last_add[k] for k in last_add)


async def test_a_failed_key_retries_in_the_background_lane() -> None:
    async def handle(key: str) -> None:
        raise RuntimeError("boom")

    q: WorkQueue[str] = WorkQueue("t11", handle, concurrency=1, rand=lambda: 0.0)
    q.start()
    q.add("k", lane="urgent")
    await asyncio.sleep(0.6)  # the first backoff is 0.4 s
    await q.stop()
    assert REGISTRY.get_sample_value(
        "edgeplane_workqueue_adds_total", {"name": "t11", "lane": "background"}
    ) == 1


async def test_a_key_added_urgent_while_it_runs_reruns_urgent() -> None:
    runs: list[str] = []
    release = asyncio.Event()

    async def handle(key: str) -> None:
        runs.append(key)
        if len(runs) == 1:
            await release.wait()

    q: WorkQueue[str] = WorkQueue("t12", handle, concurrency=1)
    q.start()
    q.add("k")
    await asyncio.sleep(0.01)
    for i in range(3):
        q.add(f"n{i}")
    q.add("k", lane="urgent")  # e.g. a rollback while its previous spec deploys
    release.set()
    await q.wait_idle()
    await q.stop()
    assert runs == ["k", "k", "n0", "n1", "n2"]


async def test_a_retry_the_handler_asks_for_is_never_urgent() -> None:
    """A retry after a delay (a rollout's hold, a location still busy) is follow-up work:
    an urgent key comes back in the normal lane, a background key in the background."""
    runs: list[str] = []

    async def handle(key: str) -> float | None:
        runs.append(key)
        return 0.01 if runs.count(key) == 1 else None

    q: WorkQueue[str] = WorkQueue("t13", handle, concurrency=2)
    q.start()
    q.add("u", lane="urgent")
    q.add("b", lane="background")
    await asyncio.sleep(0.2)
    await q.wait_idle()
    await q.stop()
    assert sorted(runs) == ["b", "b", "u", "u"]
    adds = {
        lane: REGISTRY.get_sample_value(
            "edgeplane_workqueue_adds_total", {"name": "t13", "lane": lane}
        )
        for lane in LANES
    }
    assert adds == {"urgent": 1, "normal": 1, "background": 2}
