"""Buckets held through real Leases (kube/leases.py) and the fence on writes (kube/fence.py),
on the real apiserver: two electors split the buckets and never hold one at the same
time; one that stops without handing them back (as a killed replica) loses them to the
other within the lease duration; a write of a bucket whose Lease another holder took, or
whose renewals stopped reaching the apiserver (SIGSTOP), is refused before it is sent."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

import pytest
from kubernetes_asyncio import client as kclient

from edgeplane.kube.auth import async_api_client
from edgeplane.kube.client import Kube
from edgeplane.kube.fence import Fence, Fenced
from edgeplane.kube.leases import DEAD_MEMBER_DURATIONS, Elector, bucket_lease
from edgeplane.localstack.cluster import Cluster
from edgeplane.plan.buckets import Timings

pytestmark = pytest.mark.integration
N = 10
# Shorter than the operator's (15 s) to keep the test short, yet wide for a loaded machine:
# an apiserver answer may take a couple of seconds without a bucket lapsing.
T = Timings(duration=9, renew_deadline=6, renew_every=2, retry=1)


@pytest.fixture
async def api() -> AsyncIterator[kclient.ApiClient]:
    client = await async_api_client()
    yield client
    await client.close()


async def _until(what: str, ok: object, within: float, watch: list[Elector]) -> float:
    """Wait until `ok()`; meanwhile no bucket is ever held by two electors. Returns the
    seconds waited."""
    started = time.monotonic()
    while True:
        held = [set(e.held()) for e in watch]
        for i, a in enumerate(held):
            for b in held[i + 1:]:
                assert not a & b, f"bucket(s) {a & b} held twice"
        if ok():  # type: ignore[operator]
            return time.monotonic() - started
        assert time.monotonic() - started < within, f"not within {within} s: {what}"
        await asyncio.sleep(0.1)


async def test_two_replicas_share_the_buckets_and_one_takes_over_when_the_other_dies(
    cluster: Cluster, namespace: str, api: kclient.ApiClient
) -> None:
    a = Elector(api, namespace, "replica-a", N, T)
    b = Elector(api, namespace, "replica-b", N, T)
    a.start()
    b.start()
    try:
        # A starts alone for a moment and takes every bucket, then hands B its share.
        await _until("both hold 5", lambda: len(a.held()) == len(b.held()) == 5, 60, [a, b])
        leases = json.loads(cluster.kubectl("get", "leases", "-n", namespace, "-o", "json").stdout)
        holders = {x["metadata"]["name"]: x["spec"].get("holderIdentity") for x in leases["items"]}
        assert {bucket_lease(i) for i in range(N)} <= set(holders)
        assert {holders[bucket_lease(i)] for i in a.held()} == {"replica-a"}
        assert {holders[bucket_lease(i)] for i in b.held()} == {"replica-b"}
        assert {"edgeplane-member-replica-a", "edgeplane-member-replica-b"} <= set(holders)
        # Killed: nothing handed back. B takes A's buckets once their Leases have not
        # changed for a whole duration (plus up to two rounds to see it, and one PUT).
        await a.stop(release=False)
        took = await _until("B holds all", lambda: len(b.held()) == N, 3 * T.duration, [a, b])
        print(f"B held all {N} buckets {took:.1f} s after A stopped renewing")
        assert took <= T.duration + 3 * T.retry + 3, f"takeover took {took:.1f} s"
        assert took >= T.duration - T.renew_deadline, f"taken too early: {took:.1f} s"
        # Its member Lease goes too, once unchanged for long (a new Pod has a new name:
        # each crash would leave one behind).
        coord = kclient.CoordinationV1Api(api)

        async def leases() -> set[str]:  # not kubectl: the electors share this event loop
            return {x.metadata.name for x in (await coord.list_namespaced_lease(namespace)).items}

        assert "edgeplane-member-replica-a" in await leases()
        deadline = time.monotonic() + DEAD_MEMBER_DURATIONS * T.duration
        while "edgeplane-member-replica-a" in await leases():
            assert time.monotonic() < deadline, "A's member Lease was not deleted"
            await asyncio.sleep(0.5)
        assert "edgeplane-member-replica-b" in await leases()
    finally:
        await a.stop(release=False)
        await b.stop()


async def test_a_write_is_refused_once_another_holder_took_the_lease(
    cluster: Cluster, namespace: str, api: kclient.ApiClient
) -> None:
    a = Elector(api, namespace, "replica-a", N, T)
    fence, kube = Fence(a.holds), Kube(api, "replica-a")
    a.start()
    try:
        await _until("A holds all", lambda: len(a.held()) == N, 60, [a])
        with fence.scope(3):
            await kube.create_config_map(namespace, _config_map("before"))  # held: sent
        # Another holder writes the Lease (as a replica that judged it expired would).
        cluster.kubectl("patch", "lease", bucket_lease(3), "-n", namespace, "--type=merge",
                        "-p", json.dumps({"spec": {"holderIdentity": "intruder"}}))
        await _until("A sees it lost", lambda: not a.holds(3), 3 * T.retry + 5, [a])
        with fence.scope(3), pytest.raises(Fenced, match="bucket 3"):
            await kube.create_config_map(namespace, _config_map("after"))
        with fence.scope(4):  # the others are still A's
            await kube.create_config_map(namespace, _config_map("other"))
        names = cluster.kubectl("get", "configmaps", "-n", namespace, "-o", "name").stdout
        assert "configmap/before" in names and "configmap/other" in names
        assert "configmap/after" not in names
        # The intruder never renews: A takes it back only after a whole duration.
        lost_at = time.monotonic()
        await _until("A takes 3 back", lambda: a.holds(3), 3 * T.duration, [a])
        assert time.monotonic() - lost_at >= T.duration - 2 * T.retry
    finally:
        await a.stop()


async def test_writes_stop_when_renewals_stop_reaching_the_apiserver(
    cluster: Cluster, namespace: str, api: kclient.ApiClient
) -> None:
    a = Elector(api, namespace, "replica-a", N, T)
    fence, kube = Fence(a.holds), Kube(api, "replica-a")
    a.start()
    try:
        await _until("A holds all", lambda: len(a.held()) == N, 60, [a])
        cluster.pause("kube-apiserver")
        try:
            paused = time.monotonic()
            await _until("A stops holding", lambda: not a.held(), T.renew_deadline + 2, [a])
            assert time.monotonic() - paused <= T.renew_deadline + 1
            started = time.monotonic()
            with fence.scope(0), pytest.raises(Fenced):
                await kube.create_config_map(namespace, _config_map("while-paused"))
            assert time.monotonic() - started < 0.5  # refused, not sent and hung
        finally:
            cluster.resume("kube-apiserver")
        # Nobody else took them: A renews its own Leases and holds them again.
        await _until("A holds all again", lambda: len(a.held()) == N, 60, [a])
        names = cluster.kubectl("get", "configmaps", "-n", namespace, "-o", "name").stdout
        assert "configmap/while-paused" not in names
    finally:
        await a.stop()


def _config_map(name: str) -> kclient.V1ConfigMap:
    return kclient.V1ConfigMap(metadata=kclient.V1ObjectMeta(name=name), data={"k": "v"})
