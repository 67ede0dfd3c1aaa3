"""Which watch events need a reconcile, of what, and in which queue lane."""

from __future__ import annotations

import pytest
from kubernetes_asyncio.client import ApiClient

from edgeplane.controller import Controller, route_event_keys, worker_changed, worker_lane


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
        (_worker(), _worker(finalizers=["edgeplane.io/cleanup"]), True),
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
