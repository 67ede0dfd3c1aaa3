"""The elector: with several replicas, each holds some buckets through coordination.k8s.io
Leases `edgeplane-bucket-NN`, and announces itself through `edgeplane-member-<identity>`.

One round every `retry` seconds: one LIST of the Leases, then a PUT (fenced on the
resourceVersion read, so a 409 means another replica got there first) for each Lease to
renew, take or release, as plan/buckets.py decides. A bucket is held while
`monotonic() < start of the last successful renewal + renew_deadline`, the start taken
before the request is sent; another replica takes it only after seeing its Lease
unchanged for `duration` on its own clock (client-go's rule), so the two never overlap
and clocks need not agree.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from kubernetes_asyncio import client as kclient
from kubernetes_asyncio.client.rest import ApiException

from edgeplane.plan.buckets import (
    Decision,
    Seen,
    Timings,
    lease_decision,
    live_members,
    share,
    valid,
)
from edgeplane.report import metrics

log = logging.getLogger("edgeplane.leases")
LABEL = "edgeplane.io/lease"  # "bucket" or "member": what the round lists
LABEL_BUCKET = "bucket"
# A member Lease unchanged for this many lease durations is a replica gone for good.
DEAD_MEMBER_DURATIONS = 4
BUCKET_PREFIX = "edgeplane-bucket-"
MEMBER_PREFIX = "edgeplane-member-"


def bucket_lease(bucket: int) -> str:
    return f"{BUCKET_PREFIX}{bucket:02d}"


class Elector:
    def __init__(
        self,
        api: kclient.ApiClient,
        namespace: str,
        identity: str,
        buckets: int,
        timings: Timings | None = None,
        on_gain: Callable[[int], None] = lambda b: None,
        on_loss: Callable[[int], None] = lambda b: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        timings = timings or Timings()
        timings.check()
        self.coord = kclient.CoordinationV1Api(api)
        self.namespace, self.identity, self.buckets, self.t = namespace, identity, buckets, timings
        self._on_gain, self._on_loss, self._clock = on_gain, on_loss, clock
        self._renewed: dict[int, float] = {}  # bucket -> start of its last successful renewal
        self._leases: dict[str, Any] = {}  # name -> the Lease as last read or written
        self._seen: dict[str, tuple[str, Seen]] = {}  # name -> (resourceVersion, Seen)
        self._member_renewed: float | None = None
        self._task: asyncio.Task[None] | None = None

    # -- what the fence and the controller ask -------------------------------------------

    def holds(self, bucket: int) -> bool:
        return valid(self._renewed.get(bucket), self.t.renew_deadline, self._clock())

    def held(self) -> list[int]:
        return sorted(b for b in self._renewed if self.holds(b))

    # -- the task ------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="edgeplane-elector")

    async def stop(self, release: bool = True) -> None:
        """Stop; with `release`, hand the buckets back at once (a rolling update's
        replacement need not wait a whole lease duration for them)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if not release:
            return
        held = list(self._renewed)
        for b in held:
            self._lose(b, "stopping")
        await asyncio.gather(*(self._release(b) for b in held), return_exceptions=True)
        try:
            await self.coord.delete_namespaced_lease(
                MEMBER_PREFIX + self.identity, self.namespace, _request_timeout=self._timeout
            )
        except (ApiException, OSError, TimeoutError) as e:
            log.debug("member lease not deleted: %s", e)

    async def _run(self) -> None:
        while True:
            try:
                await self.round()
            except asyncio.CancelledError:
                raise
            except (ApiException, OSError, TimeoutError) as e:
                # An apiserver outage: held buckets lapse by the deadline.
                log.warning("lease round failed: %s", getattr(e, "reason", None) or e)
            except Exception:
                log.exception("lease round failed")
            await asyncio.sleep(self.t.retry)

    @property
    def _timeout(self) -> float:
        return self.t.renew_deadline / 2

    async def round(self) -> None:
        """Read every Lease, then renew, take or release each bucket's."""
        now = self._clock()
        for b in [b for b in self._renewed if not self.holds(b)]:
            self._lose(b, "not renewed in time")
        listed = await self.coord.list_namespaced_lease(
            self.namespace, label_selector=LABEL, _request_timeout=self._timeout
        )
        self._observe(listed.items, self._clock())
        await self._renew_member()
        members = {
            name.removeprefix(MEMBER_PREFIX): seen
            for name, (_, seen) in self._seen.items() if name.startswith(MEMBER_PREFIX)
        }
        held = {b: seen.holder for b in range(self.buckets)
                if (seen := self._seen_of(bucket_lease(b))) is not None}
        live = live_members(members, self.identity, now, self.t.duration)
        owners = share(self.buckets, live, held)
        decisions = {
            b: lease_decision(
                self._seen_of(bucket_lease(b)), self.identity, owners.get(b) == self.identity,
                self._renewed.get(b), now, self.t,
            )
            for b in range(self.buckets)
        }
        await asyncio.gather(*(self._act(b, d) for b, d in decisions.items()))
        await self._forget_dead_members(now)

    def _seen_of(self, name: str) -> Seen | None:
        entry = self._seen.get(name)
        return None if entry is None else entry[1]

    def _observe(self, leases: list[Any], now: float) -> None:
        """Note when each Lease changed last, by this replica's clock; a bucket this replica
        thinks it holds but another now does is lost at once."""
        current = {}
        for lease in leases:
            name, rv = lease.metadata.name, lease.metadata.resource_version
            holder = (lease.spec.holder_identity if lease.spec else None) or ""
            before = self._seen.get(name)
            current[name] = before if before and before[0] == rv else (rv, Seen(holder, now))
            self._leases[name] = lease
        self._seen = current
        for b in list(self._renewed):
            seen = self._seen_of(bucket_lease(b))
            if seen is None or seen.holder != self.identity:
                self._lose(b, f"its Lease is held by {seen.holder if seen else 'nobody'}")

    async def _act(self, bucket: int, decision: Decision) -> None:
        if decision in (Decision.RENEW, Decision.ACQUIRE):
            await self._write(bucket, decision)
        elif decision is Decision.RELEASE:
            if bucket in self._renewed:
                # Stop writing first; the Lease is handed back on the next round, by when
                # the work in flight has met the fence.
                self._lose(bucket, "another replica's share")
            else:
                await self._release(bucket)

    async def _write(self, bucket: int, decision: Decision) -> None:
        name = bucket_lease(bucket)
        started = self._clock()  # before the request: the fence errs on the safe side
        lease = self._leases.get(name)
        taking = lease is None or decision is Decision.ACQUIRE
        try:
            written = await self._put(name, lease, self.identity, taking, LABEL_BUCKET)
        except ApiException as e:
            if e.status == 409:
                self._lose(bucket, "another replica wrote its Lease first")
            else:
                log.warning("bucket %d: lease %s failed: %s", bucket, decision.value, e.reason)
            return
        except (OSError, TimeoutError) as e:
            log.warning("bucket %d: lease %s failed: %s", bucket, decision.value, e)
            return
        self._remember(written, self._clock())
        gained = bucket not in self._renewed
        self._renewed[bucket] = started
        if gained:
            log.info("holding bucket %d (%s)", bucket, decision.value)
            metrics.BUCKET_HELD.labels(str(bucket)).set(1)
            self._on_gain(bucket)

    async def _release(self, bucket: int) -> None:
        name = bucket_lease(bucket)
        lease = self._leases.get(name)
        if lease is None:
            return
        try:
            self._remember(await self._put(name, lease, "", False, LABEL_BUCKET), self._clock())
            log.info("bucket %d released", bucket)
        except (ApiException, OSError, TimeoutError) as e:  # it expires instead
            log.info("bucket %d not released: %s", bucket, e)

    async def _renew_member(self) -> None:
        now = self._clock()
        if self._member_renewed is not None and now - self._member_renewed < self.t.renew_every:
            return
        name = MEMBER_PREFIX + self.identity
        try:
            written = await self._put(name, self._leases.get(name), self.identity, False, "member")
        except (ApiException, OSError, TimeoutError) as e:
            log.warning("member lease not renewed: %s", e)
            return
        self._remember(written, self._clock())
        self._member_renewed = now

    async def _forget_dead_members(self, now: float) -> None:
        """Delete the member Lease of a replica gone for good (killed: a Deployment's new
        Pod has a new name, so each crash would leave one behind). Only if unchanged since
        read: a replica that comes back meanwhile keeps its own."""
        for name, (rv, seen) in list(self._seen.items()):
            if (not name.startswith(MEMBER_PREFIX) or seen.holder == self.identity
                    or now - seen.since < DEAD_MEMBER_DURATIONS * self.t.duration):
                continue
            try:
                await self.coord.delete_namespaced_lease(
                    name, self.namespace, _request_timeout=self._timeout,
                    body=kclient.V1DeleteOptions(
                        preconditions=kclient.V1Preconditions(resource_version=rv)),
                )
                log.info("member lease %s deleted: unchanged for %.0f s", name, now - seen.since)
            except (ApiException, OSError, TimeoutError) as e:
                log.debug("member lease %s not deleted: %s", name, e)
            self._seen.pop(name, None)
            self._leases.pop(name, None)

    def _remember(self, lease: Any, now: float) -> None:
        name = lease.metadata.name
        self._leases[name] = lease
        holder = lease.spec.holder_identity or ""
        self._seen[name] = (lease.metadata.resource_version, Seen(holder, now))

    async def _put(self, name: str, lease: Any, holder: str, taking: bool, kind: str) -> Any:
        """Create the Lease, or replace it fenced on the resourceVersion it was read at."""
        now = datetime.now(UTC)
        old = lease.spec if lease is not None and lease.spec else kclient.V1LeaseSpec()
        spec = kclient.V1LeaseSpec(
            holder_identity=holder or None,
            lease_duration_seconds=int(self.t.duration),
            renew_time=now,
            acquire_time=now if taking or old.acquire_time is None else old.acquire_time,
            lease_transitions=(old.lease_transitions or 0) + (1 if taking and lease else 0),
        )
        if lease is None:
            body = kclient.V1Lease(
                metadata=kclient.V1ObjectMeta(name=name, labels={LABEL: kind}), spec=spec
            )
            return await self.coord.create_namespaced_lease(
                self.namespace, body, _request_timeout=self._timeout
            )
        body = kclient.V1Lease(metadata=lease.metadata, spec=spec)
        return await self.coord.replace_namespaced_lease(
            name, self.namespace, body, _request_timeout=self._timeout
        )

    def _lose(self, bucket: int, why: str) -> None:
        if self._renewed.pop(bucket, None) is None:
            return
        log.warning("bucket %d lost: %s", bucket, why)
        metrics.BUCKET_HELD.labels(str(bucket)).set(0)
        self._on_loss(bucket)

