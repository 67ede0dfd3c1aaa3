"""Which watch events need a reconcile, of what, and in which queue lane."""

from __future__ import annotations

import asyncio
import time

import pytest
from kubernetes_asyncio.client import ApiClient

from edgeplane.controller import (
    Controller,
    Settings,
    route_event_keys,
    worker_changed,
    worker_lane,
)
from edgeplane.kube.fence import current_bucket
from edgeplane.plan.buckets import bucket_of


def _worker(**meta: object) -> dict:
    return {"metadata": {"name": "w", "namespace": "a", "generation": 1, "uid": "u", **meta}}


@pytest.mark.parametrize(
    ("old", "new", "changed"),
    [
        (None, _worker(), True),  # first seen
        (_worker(), _worker(), False),  # our own status write coming back
        (_worker(), _worker(resourceVersion="9"), False),
        (_worker(), _worker(generation=2), True),  # spec changed
        (_worker(), _worker(deletionTimestamp="2026-11-01T00:00:00Z"), True),
        # Our finalizer added: our own write coming back; removed (by hand): a look.
        (_worker(), _worker(finalizers=["edgeplane.io/cleanup"]), False),
        (_worker(finalizers=["edgeplane.io/cleanup"]), _worker(), True),
        (_worker(), _worker(finalizers=["edgeplane.io/cleanup", "other.io/x"]), True),
        (_worker(finalizers=["other.io/x"]), _worker(), True),
        (_worker(), _worker(uid="u2"), True),  # deleted and created again
        # edgeplane rollout promote/abort: only an annotation changes.
        (_worker(), _worker(annotations={"edgeplane.io/promote": "abcdef12/1"}), True),
        (_worker(annotations={"edgeplane.io/abort": "abcdef12"}), _worker(), True),
        (_worker(), _worker(annotations={"kubectl.kubernetes.io/restartedAt": "x"}), False),
    ],
)
def test_worker_changed(old: dict | None, new: dict, changed: bool) -> None:
    assert worker_changed(old, new) is changed


def _route(ns: str, name: str, pattern: str, worker: str) -> dict:
    return {
        "metadata": {"namespace": ns, "name": name},
        "spec": {"pattern": pattern, "worker": worker},
    }


R1 = _route("a", "r1", "x.io/*", "w1")
R2 = _route("b", "r2", "x.io/*", "w2")  # same pattern, another namespace
R3 = _route("a", "r3", "y.io/*", "w3")
X = {"metadata": {"namespace": "c", "name": "x"}, "spec": {"pattern": "x.io/*"}}  # no Worker


@pytest.mark.parametrize(
    ("routes", "old", "new", "keys"),
    [
        # A new route: its Worker, itself, and the other claimant of its pattern.
        (
            [R1, R2, R3],
            None,
            R1,
            [("Worker", "a", "w1"), ("WorkerRoute", "a", "r1"), ("WorkerRoute", "b", "r2"),
             ("Worker", "b", "w2")],
        ),
        # Deleted: the other claimant may now be served.
        ([R2, R3], R1, None, [("Worker", "a", "w1"), ("WorkerRoute", "b", "r2"),
                              ("Worker", "b", "w2")]),
        # Another spelling of the same pattern (implied '/', host case) is the same claim.
        (
            [_route("a", "r1", "x.io", "w1"), _route("b", "r2", "X.io/", "w2")],
            None,
            _route("a", "r1", "x.io", "w1"),
            [("Worker", "a", "w1"), ("WorkerRoute", "a", "r1"), ("WorkerRoute", "b", "r2"),
             ("Worker", "b", "w2")],
        ),
        # Moved to another Worker and pattern: both Workers, both patterns' routes.
        (
            [R2, _route("a", "r1", "y.io/*", "w9"), R3],
            R1,
            _route("a", "r1", "y.io/*", "w9"),
            [("Worker", "a", "w1"), ("Worker", "a", "w9"), ("WorkerRoute", "a", "r1"),
             ("WorkerRoute", "a", "r3"), ("Worker", "a", "w3"), ("WorkerRoute", "b", "r2"),
             ("Worker", "b", "w2")],
        ),
        # A route without a Worker is served by its namespace's exclusions; one that takes
        # another's pattern makes both conflict.
        ([R1, R2, X], None, X, [("Exclusions", "c", ""), ("WorkerRoute", "a", "r1"),
                                ("Worker", "a", "w1"), ("WorkerRoute", "b", "r2"),
                                ("Worker", "b", "w2"), ("WorkerRoute", "c", "x")]),
        ([R3], X, None, [("Exclusions", "c", "")]),
    ],
)
def test_route_event_keys(routes: list, old: dict | None, new: dict | None, keys: list) -> None:
    cache = {(r["metadata"]["namespace"], r["metadata"]["name"]): r for r in routes}
    assert route_event_keys(cache, old, new) == keys


@pytest.mark.parametrize(
    ("old", "new", "lane"),
    [
        (None, _worker(), "normal"),  # first seen: a creation, or every Worker at start
        (_worker(), _worker(generation=2), "urgent"),  # a new spec, e.g. a rollback
        (_worker(), _worker(deletionTimestamp="2026-11-01T00:00:00Z"), "urgent"),
        (_worker(), _worker(annotations={"edgeplane.io/abort": "abcdef12"}), "urgent"),
        (_worker(), _worker(finalizers=["edgeplane.io/cleanup"]), "normal"),
        (_worker(), _worker(uid="u2", generation=2), "normal"),  # created again
    ],
)
def test_worker_lane(old: dict | None, new: dict, lane: str) -> None:
    assert worker_lane(old, new) == lane


async def test_the_controller_queues_changes_urgent_and_resyncs_in_the_background() -> None:
    """Lanes as the watch events choose them, on a controller that is not started (nothing
    runs and nothing is sent to the apiserver)."""
    async with ApiClient() as api:
        c = Controller(api)
        q = c.queue

        def depths() -> tuple[int, int, int]:
            return q.depth("urgent"), q.depth("normal"), q.depth("background")

        c.worker_seen(_worker(name="w1"), False)
        c.route_seen(R1, False)
        assert depths() == (0, 2, 0)  # both new
        c.worker_seen(_worker(name="w1", generation=2), False)  # e.g. a rollback
        assert depths() == (1, 1, 0)
        c.route_seen(R1 | {"spec": {"pattern": "z.io/*", "worker": "w1"}}, False)
        assert depths() == (2, 0, 0)

        await q.stop()

        async def nothing_deleted(plural: str) -> None:
            pass

        c = Controller(api)
        q = c.queue
        c.drop_deleted = nothing_deleted  # type: ignore[method-assign]
        c.cache.workers[("a", "w3")] = _worker(name="w3")
        c.cache.routes[("a", "r3")] = R3
        await c.resync()
        assert depths() == (0, 0, 2)
        claim = {"metadata": {"name": "h"}, "spec": {"hosts": ["x.io"]}}
        c.claim_seen(claim, False)  # new: the claim, and what it judges, move up to normal
        assert depths() == (0, 3, 0)
        c.claim_seen(claim | {"spec": {"hosts": ["y.io"]}}, False)  # changed: urgent
        assert depths() == (2, 1, 0)
        await q.stop()


@pytest.mark.parametrize(("workers", "concurrency", "at_once", "last"), [
    (3, 4, 3, 0.0),  # as many as run at once: all now
    (100, 4, 1, 24.75),  # about `concurrency` a second
    (10_000, 32, 1, 270 * 9_999 / 10_000),  # never past 90 % of the interval
])
async def test_a_resync_spreads_its_keys_over_the_interval(
    workers: int, concurrency: int, at_once: int, last: float
) -> None:
    async def nothing_deleted(plural: str) -> None:
        pass

    async with ApiClient() as api:
        c = Controller(api, Settings(concurrency=concurrency, resync_interval=300))
        c.drop_deleted = nothing_deleted  # type: ignore[method-assign]
        for i in range(workers):
            c.cache.workers[("a", f"w{i}")] = _worker(name=f"w{i}")
        now = asyncio.get_running_loop().time()
        await c.resync()
        assert c.queue.depth("background") == at_once
        later = [t.when() - now for t, lane in c.queue._timers.values() if lane == "background"]
        assert len(later) == workers - at_once
        assert max(later, default=0.0) == pytest.approx(last, abs=0.5)
        await c.queue.stop()


async def test_several_replicas_handle_only_the_keys_of_buckets_held() -> None:
    """With --replicas above 1, a key of a bucket not held is dropped before any work; one
    held runs fenced on its bucket; a route is its Worker's; a bucket gained requeues its
    cached keys in the background lane. Nothing is sent (the elector is not started)."""
    async with ApiClient() as api:
        c = Controller(api, Settings(replicas=2, identity="me", buckets=10))
        assert c.elector is not None and c.kube.identity == "me"
        ran: list[tuple[str, int | None]] = []

        async def reconcile(ns: str, name: str) -> None:
            ran.append((name, current_bucket()))

        c.worker_loop.reconcile = reconcile  # type: ignore[method-assign]
        w1 = bucket_of("a", "w1", 10)
        c.cache.routes[("a", "r1")] = R1
        assert c.bucket(("WorkerRoute", "a", "r1")) == w1 == c.bucket(("Worker", "a", "w1"))
        assert c.bucket(("HostClaim", "", "h")) == 0
        assert await c._handle(("Worker", "a", "w1")) is None
        assert ran == []  # not held: dropped
        c.elector._renewed[w1] = time.monotonic()  # as a successful renewal records it
        await c._handle(("Worker", "a", "w1"))
        assert ran == [("w1", w1)]  # held: run, fenced on its bucket
        assert current_bucket() is None
        c.cache.workers[("a", "w1")] = _worker(name="w1")
        other = next(n for n in (f"x{i}" for i in range(50)) if bucket_of("a", n, 10) != w1)
        c.cache.workers[("a", other)] = _worker(name=other)
        c._bucket_gained(w1)
        assert q_keys(c) == {("Worker", "a", "w1"), ("WorkerRoute", "a", "r1")}
        assert c.queue.depth("background") == 2
        # Lost: its Workers are no longer planned or counted here; the others still are.
        c.fleet.desired.update({"a.w1": {}, f"a.{other}": {}})
        c.writer.ready.update({("a", "w1"): True, ("a", other): True})
        c._bucket_lost(w1)
        assert set(c.fleet.desired) == {f"a.{other}"} and set(c.writer.ready) == {("a", other)}
        await c.queue.stop()
    async with ApiClient() as api:
        one = Controller(api)  # the default: no elector, no field manager, nothing fenced
        assert one.elector is None and one.kube.identity == "" and one.fence.holds(7)


def q_keys(c: Controller) -> set[tuple[str, str, str]]:
    return set(c.queue._queued)


async def test_losing_a_bucket_stops_its_reconciles_in_flight() -> None:
    """A reconcile of a bucket lost while it runs is cancelled (the queue is told it is
    done); one of another bucket goes on; the queue stopping still cancels the handler."""
    async with ApiClient() as api:
        c = Controller(api, Settings(replicas=2, identity="me", buckets=10))
        assert c.elector is not None
        names = [f"w{i}" for i in range(50)]
        w1 = bucket_of("a", names[0], 10)
        other = next(n for n in names if bucket_of("a", n, 10) != w1)
        started: list[str] = []
        stopped: list[str] = []
        release = asyncio.Event()

        async def reconcile(ns: str, name: str) -> float:
            started.append(name)
            try:
                await release.wait()
            except asyncio.CancelledError:
                stopped.append(name)
                raise
            return 5.0

        c.worker_loop.reconcile = reconcile  # type: ignore[method-assign]
        for b in (w1, bucket_of("a", other, 10)):
            c.elector._renewed[b] = time.monotonic()
        lost = asyncio.ensure_future(c._handle(("Worker", "a", names[0])))
        kept = asyncio.ensure_future(c._handle(("Worker", "a", other)))
        for _ in range(3):
            await asyncio.sleep(0)  # both reconciles start and wait
        assert len(started) == 2
        c.elector._renewed.pop(w1)
        c._bucket_lost(w1)
        assert await asyncio.wait_for(lost, 5) is None  # done, nothing to retry
        assert stopped == [names[0]] and not kept.done()
        release.set()
        assert await asyncio.wait_for(kept, 5) == 5.0
        # The queue stopping (its task cancelled) is not mistaken for a lost bucket.
        release.clear()
        outer = asyncio.ensure_future(c._handle(("Worker", "a", other)))
        for _ in range(3):
            await asyncio.sleep(0)
        assert len(started) == 3
        outer.cancel()
        with pytest.raises(asyncio.CancelledError):
            await outer
        await c.queue.stop()


async def test_a_long_listing_is_checked_for_deletions_once_after_its_last_object() -> None:
    """kopf calls `listing` for each object it lists; a listing longer than the settle
    time (10,000 Workers) is still one check, made once it has ended."""
    checked: list[tuple[str, float]] = []

    async def record(plural: str) -> None:
        checked.append((plural, time.monotonic()))

    async with ApiClient() as api:
        c = Controller(api, Settings(relist_settle=0.2))
        c.drop_deleted = record  # type: ignore[method-assign]
        for _ in range(10):  # 0.5 s of listing, an object every 50 ms
            c.listing("workers")
            await asyncio.sleep(0.05)
        last = time.monotonic()
        c.listing("routes")
        await asyncio.sleep(0.5)
        assert sorted(p for p, _ in checked) == ["routes", "workers"]
        workers_at = next(t for p, t in checked if p == "workers")
        assert workers_at >= last + 0.2 - 0.06
        c.listing("workers")  # a later listing: checked again
        await asyncio.sleep(0.4)
        assert [p for p, _ in checked].count("workers") == 2
        await c.queue.stop()
