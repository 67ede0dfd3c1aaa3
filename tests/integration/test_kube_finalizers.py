"""Finalizers written from a stale read, against the real apiserver: a merge patch
replaces the whole list, so the operator's write must be fenced on the resourceVersion it
read, or it drops a finalizer another controller added since."""

from __future__ import annotations

import json

import pytest

from edgeplane.kube.auth import async_api_client
from edgeplane.kube.client import Conflict, Kube
from edgeplane.localstack.cluster import Cluster
from edgeplane.reconcile.worker import FINALIZER

pytestmark = pytest.mark.integration

OTHER, LATER = "example.com/keep", "example.com/added-later"


def _worker(cluster: Cluster, namespace: str, finalizers: list[str]) -> dict[str, object]:
    doc = {
        "apiVersion": "edgeplane.io/v1alpha1", "kind": "Worker",
        "metadata": {"name": "fin", "namespace": namespace, "finalizers": finalizers},
        "spec": {"compatibilityDate": "2025-01-01", "mainModule": "index.js",
                 "modules": [{"name": "index.js", "inline": "export default {};"}]},
    }
    cluster.kubectl("apply", "-f", "-", input=json.dumps(doc))
    return get(cluster, namespace)


def get(cluster: Cluster, namespace: str) -> dict[str, object]:
    out = cluster.kubectl("get", "-n", namespace, "worker", "fin", "-o", "json")
    return json.loads(out.stdout)


def add_later(cluster: Cluster, namespace: str) -> None:
    """Another controller adds its finalizer after the operator's read."""
    cluster.kubectl("patch", "-n", namespace, "worker", "fin", "--type=json", "-p",
                    json.dumps([{"op": "add", "path": "/metadata/finalizers/-", "value": LATER}]))


def release(cluster: Cluster, namespace: str) -> None:
    cluster.kubectl("patch", "-n", namespace, "worker", "fin", "--type=merge", "-p",
                    '{"metadata": {"finalizers": []}}', check=False)


@pytest.mark.parametrize(
    ("before", "wanted"),
    [
        ([OTHER], [OTHER, FINALIZER]),  # adding ours
        ([OTHER, FINALIZER], [OTHER]),  # removing ours, as _finalize does
    ],
)
async def test_a_finalizer_write_from_a_stale_read_conflicts_instead_of_dropping_one(
    cluster: Cluster, crds_installed: list[str], namespace: str, before: list[str],
    wanted: list[str],
) -> None:
    seen = _worker(cluster, namespace, before)
    add_later(cluster, namespace)
    api = await async_api_client()
    try:
        kube = Kube(api)
        with pytest.raises(Conflict):
            await kube.set_finalizers("workers", seen, wanted)
        meta = get(cluster, namespace)["metadata"]
        assert isinstance(meta, dict) and LATER in meta["finalizers"]
        # From a fresh read the same write goes through and keeps the other's finalizer.
        fresh = get(cluster, namespace)
        done = await kube.set_finalizers("workers", fresh, [
            *(f for f in fresh["metadata"]["finalizers"] if f != FINALIZER),  # type: ignore[index]
            *([FINALIZER] if FINALIZER in wanted else []),
        ])
        assert done is not None
        assert LATER in done["metadata"]["finalizers"]
        assert (FINALIZER in done["metadata"]["finalizers"]) == (FINALIZER in wanted)
    finally:
        await api.close()
        release(cluster, namespace)
