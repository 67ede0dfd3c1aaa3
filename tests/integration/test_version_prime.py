"""What a starting operator learns of the recorded WorkerVersions, against the real
apiserver: one LIST read page by page, in place of a POST, a GET and a LIST per Worker."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from edgeplane.api import Worker, WorkerVersion
from edgeplane.compile import Sources, compile_worker
from edgeplane.kube.auth import async_api_client
from edgeplane.kube.client import Kube
from edgeplane.localstack.cluster import Cluster
from edgeplane.resolve.sources import Resolver
from edgeplane.versions.objects import version_object
from edgeplane.versions.store import VersionStore

pytestmark = pytest.mark.integration


def _record(cluster: Cluster, ns: str, worker: str, text: str) -> str:
    """A WorkerVersion as the operator records it."""
    w = Worker.model_validate({
        "metadata": {"name": worker, "namespace": ns, "uid": "u", "generation": 1},
        "spec": {"compatibilityDate": "2025-01-01",
                 "modules": [{"name": "index.js", "inline": f"export default {{}}; // {text}"}]},
    })
    bundle = compile_worker(w, Sources())
    obj = version_object(w, bundle, 0, datetime(2026, 11, 1, tzinfo=UTC)).to_wire()
    obj["metadata"].pop("ownerReferences", None)  # no Worker object to own it here
    cluster.kubectl("create", "-f", "-", input=json.dumps(obj))
    assert bundle.version is not None
    return bundle.version


async def test_prime_learns_every_version_across_pages(
    cluster: Cluster, crds_installed: list[str], namespace: str
) -> None:
    a1 = _record(cluster, namespace, "a", "1")
    a2 = _record(cluster, namespace, "a", "2")
    b = [_record(cluster, namespace, "b", str(i)) for i in range(3)]
    api = await async_api_client()
    try:
        kube = Kube(api)
        store = VersionStore(kube, Resolver(kube), retained=10)
        # Pages of 2 over 5 versions: three pages, every one read.
        assert await store.prime((namespace,), page=2) == 5
    finally:
        await api.close()
    names = {(namespace, WorkerVersion.name_for(w, v)) for w, v in
             [("a", a1), ("a", a2), *(("b", v) for v in b)]}
    assert store.recorded == names
    assert set(store.retained_of[(namespace, "a")]) == {
        WorkerVersion.name_for("a", a1), WorkerVersion.name_for("a", a2)}
    assert len(store.retained_of[(namespace, "b")]) == 3


async def test_a_relist_reads_every_object_across_pages_keeping_only_their_names(
    cluster: Cluster, crds_installed: list[str], namespace: str
) -> None:
    """What a resync compares with its caches to find deletions: every object of one
    snapshot (one resourceVersion across the pages), each reduced to what names it."""
    versions = [_record(cluster, namespace, "c", str(i)) for i in range(5)]
    api = await async_api_client()
    try:
        [(items, at)] = await Kube(api).list_all("workerversions", (namespace,), page=2)
    finally:
        await api.close()
    assert sorted(i["metadata"]["name"] for i in items) == sorted(
        WorkerVersion.name_for("c", v) for v in versions)
    assert all(set(i) == {"metadata"} for i in items)
    assert all(set(i["metadata"]) == {"namespace", "name", "resourceVersion"} for i in items)
    assert at >= max(int(i["metadata"]["resourceVersion"]) for i in items)
