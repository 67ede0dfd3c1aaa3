"""Buckets for active-active replicas (plan/buckets.py): a stable key -> bucket map, a
balanced share of buckets over live replicas, and each round's Lease decision, with a
fake clock."""

from __future__ import annotations

import hashlib
from collections import Counter

import pytest

from edgeplane.plan.buckets import (
    LOCATION_WIDE,
    Decision,
    Seen,
    Timings,
    bucket_of,
    key_bucket,
    lease_decision,
    live_members,
    replica_identity,
    share,
    valid,
)

T = Timings(duration=15, renew_deadline=10, renew_every=4, retry=2)


def test_bucket_of_is_stable_across_processes() -> None:
    # Fixed values: a salted hash() would change them per process and split the work
    # differently on every replica.
    assert [bucket_of("default", f"w{i}", 10) for i in range(6)] == [
        int.from_bytes(hashlib.sha256(f"default/w{i}".encode()).digest()[:8], "big") % 10
        for i in range(6)
    ]
    assert bucket_of("a", "b", 10) == bucket_of("a", "b", 10)


def test_bucket_of_spreads_evenly() -> None:
    counts = Counter(bucket_of("ns", f"worker-{i}", 10) for i in range(10_000))
    assert set(counts) == set(range(10))
    assert max(counts.values()) < 1.1 * 1000 and min(counts.values()) > 0.9 * 1000


@pytest.mark.parametrize(
    ("kind", "ns", "name", "route_worker", "expected"),
    [
        ("Worker", "a", "w", None, bucket_of("a", "w", 10)),
        # A route goes with the Worker it serves, not with its own name.
        ("WorkerRoute", "a", "r", "w", bucket_of("a", "w", 10)),
        ("WorkerRoute", "a", "r", "", bucket_of("a", "", 10)),  # with the exclusions
        ("WorkerRoute", "a", "r", None, bucket_of("a", "r", 10)),  # no longer known
        ("Exclusions", "a", "", None, bucket_of("a", "", 10)),
        ("HostClaim", "", "c", None, LOCATION_WIDE),
    ],
)
def test_key_bucket(kind: str, ns: str, name: str, route_worker: str | None, expected: int) -> None:
    assert key_bucket(kind, ns, name, route_worker, 10) == expected


@pytest.mark.parametrize("members", [["a"], ["a", "b"], ["a", "b", "c"], ["p", "q", "r", "s"],
                                     [f"m{i}" for i in range(7)], [f"m{i}" for i in range(12)]])
def test_share_is_complete_and_balanced(members: list[str]) -> None:
    owners = share(10, members)
    assert sorted(owners) == list(range(10))
    loads = Counter(owners.values())
    assert max(loads.values()) <= -(-10 // len(members))
    assert min(loads.values()) >= 10 // len(members)
    # Every replica holds some whenever there are no more replicas than buckets.
    assert len(members) > 10 or set(loads) == set(members)


def test_share_is_the_same_whatever_the_order_and_for_every_seed_of_three() -> None:
    abc = share(10, ["a", "b", "c"])
    assert share(10, ["c", "a", "b"]) == abc == share(10, ["a", "b", "c", "a"])
    # Bounded loads: no trio of pod names leaves one of three replicas idle.
    for i in range(200):
        trio = [f"edgeplane-{i}-x", f"edgeplane-{i}-y", f"edgeplane-{i}-z"]
        assert set(share(10, trio).values()) == set(trio)


@pytest.mark.parametrize("trio", [["a", "b", "c"], ["x-1", "x-2", "x-3"], ["p", "q", "r"]])
def test_a_member_leaving_moves_only_its_own_buckets(trio: list[str]) -> None:
    before = share(10, trio)
    for gone in trio:
        left = [m for m in trio if m != gone]
        after = share(10, left, before)
        assert {b: m for b, m in after.items() if before[b] != gone} == {
            b: m for b, m in before.items() if m != gone}
        assert sorted(Counter(after.values()).values()) == [5, 5]
    assert share(10, []) == {}


def test_a_member_joining_takes_only_its_part() -> None:
    alone = share(10, ["a"])
    two = share(10, ["a", "b"], alone)
    assert Counter(two.values()) == {"a": 5, "b": 5}
    three = share(10, ["a", "b", "c"], two)
    moved = [b for b in range(10) if three[b] != two[b]]
    assert all(three[b] == "c" for b in moved) and len(moved) == 3
    # The fixpoint: computed again from the Leases it led to, nothing moves.
    assert share(10, ["a", "b", "c"], three) == three


def test_held_by_the_dead_or_beyond_a_fair_part_is_shared_again() -> None:
    held = {b: "dead" for b in range(4)} | {b: "a" for b in range(4, 10)}
    out = share(10, ["a", "b"], held)
    assert Counter(out.values()) == {"a": 5, "b": 5}
    assert all(out[b] == "a" for b in range(4, 10) if out[b] != "b")
    assert sum(out[b] == "a" for b in range(4, 10)) == 5  # 'a' gives up one, keeps five


@pytest.mark.parametrize(
    ("seen", "mine", "renewed_at", "now", "expected"),
    [
        # No Lease yet: whoever it belongs to creates it.
        (None, True, None, 100, Decision.ACQUIRE),
        (None, False, None, 100, Decision.WAIT),
        # Held by me.
        (Seen("me", 90), True, 98, 100, Decision.KEEP),
        (Seen("me", 90), True, 96, 100, Decision.RENEW),  # renew_every passed
        (Seen("me", 90), True, None, 100, Decision.RENEW),  # mine after a restart
        (Seen("me", 90), False, 98, 100, Decision.RELEASE),  # another live replica's share
        # Free (released): mine at once, anybody's after a full duration.
        (Seen("", 99), True, None, 100, Decision.ACQUIRE),
        (Seen("", 99), False, None, 100, Decision.WAIT),
        (Seen("", 85), False, None, 100, Decision.ACQUIRE),
        # Held by another: taken only once seen unchanged for a duration (by my clock) ...
        (Seen("other", 86), True, None, 100, Decision.WAIT),
        (Seen("other", 85), True, None, 100, Decision.ACQUIRE),
        # ... and outside my share only after two.
        (Seen("other", 85), False, None, 100, Decision.WAIT),
        (Seen("other", 71), False, None, 100, Decision.WAIT),
        (Seen("other", 70), False, None, 100, Decision.ACQUIRE),
    ],
)
def test_lease_decision(
    seen: Seen | None, mine: bool, renewed_at: float | None, now: float, expected: Decision
) -> None:
    assert lease_decision(seen, "me", mine, renewed_at, now, T) is expected


@pytest.mark.parametrize(
    ("renewed_at", "now", "held"),
    [(None, 0, False), (100, 100, True), (100, 109.9, True), (100, 110, False), (100, 200, False)],
)
def test_fence(renewed_at: float | None, now: float, held: bool) -> None:
    assert valid(renewed_at, 10, now) is held


def test_the_fence_ends_before_anyone_may_take_over() -> None:
    # The holder's renewal starts at 100 and is stored at 100.5; another replica sees the
    # new version no earlier than that, and takes it no earlier than 100.5 + duration.
    renew_started, seen_at = 100.0, 100.5
    first_take = seen_at + T.duration
    held = [t / 10 for t in range(3000) if valid(renew_started, T.renew_deadline, t / 10)]
    last_write = max(held)
    assert first_take - last_write >= T.duration - T.renew_deadline
    early = lease_decision(Seen("holder", seen_at), "me", True, None, first_take - 0.1, T)
    assert early is Decision.WAIT


def test_live_members() -> None:
    seen = {"a": Seen("a", 90), "b": Seen("b", 80), "c": Seen("c", 86)}
    assert live_members(seen, "me", 100, 15) == ["a", "c", "me"]
    assert live_members({}, "me", 100, 15) == ["me"]


@pytest.mark.parametrize("duration", [6, 9, 15, 30, 60])
def test_timings_for_a_duration(duration: float) -> None:
    t = Timings.for_duration(duration)
    t.check()
    assert t.duration - t.renew_deadline >= 2  # the margin for a write on its way
    assert Timings.for_duration(15) == Timings()


@pytest.mark.parametrize(
    "bad",
    [Timings(15, 10, 4, 0), Timings(15, 10, 2, 4), Timings(15, 10, 10, 2), Timings(10, 10, 4, 2)],
)
def test_timings_checked(bad: Timings) -> None:
    with pytest.raises(ValueError, match="renew_deadline"):
        bad.check()
    T.check()


@pytest.mark.parametrize(
    ("pod", "host", "expected"),
    [("edgeplane-7d9f-abcde", "x", "edgeplane-7d9f-abcde"), ("", "My_Host", "my-host-42"),
     ("", "", "42"), ("", "_", "42"), ("A" * 80, "", "a" * 63)],
)
def test_replica_identity(pod: str, host: str, expected: str) -> None:
    assert replica_identity(pod, host, 42) == expected
