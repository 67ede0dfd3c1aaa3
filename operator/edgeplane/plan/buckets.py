"""Active-active replicas: which bucket a work key falls in, which buckets each live
replica should hold, and what a replica does with each bucket's Lease on one round.

Pure: the elector (kube/leases.py) brings the Leases it read and the local monotonic time
at which it first saw each of them; nothing here reads a clock. Times are seconds on that
one replica's monotonic clock, never compared with another replica's (or the apiserver's)
clock, so clock skew between machines cannot make two replicas hold one bucket.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from enum import Enum

# EdgeTarget status, orphan collection, the signing key and cron leases at locations, and
# HostClaims: work for every location at once, done by the holder of this bucket.
LOCATION_WIDE = 0
DEFAULT_BUCKETS = 10  # as Knative's controllers


def bucket_of(namespace: str, name: str, n: int) -> int:
    """The bucket of one object: the same on every replica and across restarts (not
    Python's salted hash()), spread evenly."""
    digest = hashlib.sha256(f"{namespace}/{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % n


def key_bucket(kind: str, namespace: str, name: str, route_worker: str | None, n: int) -> int:
    """The bucket of a work queue key. A WorkerRoute goes with the Worker it serves
    (`route_worker`; "" for a route without one, None for a route no longer known), so
    that one replica pushes a Worker's routes and reports them; a namespace's routes
    without a Worker go with its Exclusions."""
    if kind == "Worker":
        return bucket_of(namespace, name, n)
    if kind == "WorkerRoute":
        if route_worker is None:
            return bucket_of(namespace, name, n)  # gone: only its cached state is dropped
        return bucket_of(namespace, route_worker, n)
    if kind == "Exclusions":
        return bucket_of(namespace, "", n)
    return LOCATION_WIDE


def _rank(member: str, bucket: int) -> bytes:
    return hashlib.sha256(f"{member}#{bucket}".encode()).digest()


def share(n: int, members: list[str], held: dict[int, str] | None = None) -> dict[int, str]:
    """Who should hold each bucket: rendezvous hashing with bounded loads, sticky. Each
    member has room for n // members buckets, or one more (the rooms add up to exactly n).
    First every live member keeps what it `held` (the Leases' holders) while it has room,
    its strongest claims first; then each other bucket goes to the member ranking it
    highest that has room. Every replica computes the same split from the same Leases;
    each gets its fair part (plain rendezvous hashing leaves one of 3 replicas without
    any of 10 buckets about one time in 20); a member leaving moves only its own buckets,
    and one joining only the buckets it takes (with no stickiness, a bounded share would
    move others' too, and those would be reconciled twice)."""
    live = sorted(set(members))
    if not live:
        return {}
    floor, extra = divmod(n, len(live))  # `extra` members may hold one more
    load = dict.fromkeys(live, 0)
    out: dict[int, str] = {}

    def take(bucket: int, member: str) -> bool:
        nonlocal extra
        if load[member] >= (floor + 1 if extra else floor):
            return False
        out[bucket] = member
        load[member] += 1
        extra -= load[member] > floor
        return True

    kept = [(b, m) for b, m in (held or {}).items() if m in load and 0 <= b < n]
    for bucket, member in sorted(kept, key=lambda bm: _rank(bm[1], bm[0]), reverse=True):
        take(bucket, member)
    for bucket in (b for b in range(n) if b not in out):
        next(m for m in sorted(live, key=lambda m: _rank(m, bucket), reverse=True)
             if take(bucket, m))
    return out


@dataclass(frozen=True)
class Timings:
    """client-go's leader election timings. A holder stops writing `renew_deadline` after
    the start of its last successful renewal; another replica takes the bucket only after
    seeing the Lease unchanged for `duration`: the difference is the margin for a write
    already on its way."""

    duration: float = 15.0
    renew_deadline: float = 10.0
    renew_every: float = 4.0
    retry: float = 2.0

    @staticmethod
    def for_duration(duration: float) -> Timings:
        """The default's proportions (client-go's 15 s and 10 s) for another lease duration:
        a wider one rides out longer stalls of a busy replica, and a takeover then takes as
        much longer. Rounds stay 2 s apart."""
        return Timings(duration, duration * 2 / 3, max(2.0, duration * 4 / 15), 2.0)

    def check(self) -> None:
        if not 0 < self.retry <= self.renew_every < self.renew_deadline < self.duration:
            raise ValueError(
                f"lease timings need 0 < retry <= renew_every < renew_deadline < duration, "
                f"got {self}"
            )


@dataclass(frozen=True)
class Seen:
    """A bucket's Lease as last read: its holder ("" when free or released) and when this
    replica first saw this exact version of it (its resourceVersion)."""

    holder: str
    since: float


class Decision(Enum):
    KEEP = "keep"  # held and renewed recently enough: nothing to send
    RENEW = "renew"
    ACQUIRE = "acquire"  # create it, or take it over
    RELEASE = "release"  # held, but another live replica should have it
    WAIT = "wait"


def lease_decision(
    seen: Seen | None,
    me: str,
    mine: bool,
    renewed_at: float | None,
    now: float,
    t: Timings,
) -> Decision:
    """What to do with one bucket's Lease now. `seen` None: there is no Lease yet. `mine`:
    the share gives it this replica. `renewed_at`: start of this replica's last successful
    renewal (None: it holds none). A Lease held by another is taken only once seen
    unchanged for a whole `duration`, and one outside this replica's share only after
    twice that, so whoever should have it gets the first chance, and none is left
    orphaned when the replica it belongs to died before the others noticed."""
    if seen is None:
        return Decision.ACQUIRE if mine else Decision.WAIT
    unchanged = now - seen.since
    if seen.holder == me:
        if not mine:
            return Decision.RELEASE
        if renewed_at is None or now - renewed_at >= t.renew_every:
            return Decision.RENEW
        return Decision.KEEP
    if not seen.holder:
        return Decision.ACQUIRE if mine or unchanged >= t.duration else Decision.WAIT
    if unchanged >= (t.duration if mine else 2 * t.duration):
        return Decision.ACQUIRE
    return Decision.WAIT


def valid(renewed_at: float | None, renew_deadline: float, now: float) -> bool:
    """The fence: whether a bucket is still held at `now`, its last successful renewal
    having started at `renewed_at` (taken before the request was sent, so the bound
    errs on the safe side)."""
    return renewed_at is not None and now < renewed_at + renew_deadline


def live_members(seen: dict[str, Seen], me: str, now: float, duration: float) -> list[str]:
    """Replicas alive: this one, and each whose member Lease changed within `duration`
    (a replica renews its own as often as its buckets)."""
    alive = {holder for holder, s in seen.items() if holder and now - s.since < duration}
    return sorted(alive | {me})


def replica_identity(pod_name: str, hostname: str, pid: int) -> str:
    """This replica's name in Leases, field managers and Events: the pod's name, else
    host-pid; made a valid part of a Lease name (lower case, `-`, at most 63)."""
    raw = pod_name or f"{hostname}-{pid}"
    return re.sub(r"[^a-z0-9.-]+", "-", raw.lower()).strip("-.")[:63] or f"replica-{pid}"
