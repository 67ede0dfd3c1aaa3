"""A starting operator reads every location, HostClaim, route and Worker before the watches
start (real apiserver): planned from what the watches had listed so far, a Worker would be
given only some locations or routes, and a restarted operator would report that, then the
truth again (seen as a Worker Ready at 1 of 3 locations in tests/e2e/test_crashes.py)."""

from __future__ import annotations

import json

import pytest

from edgeplane.controller import Controller, Settings
from edgeplane.kube.auth import async_api_client
from edgeplane.localstack.cluster import Cluster

pytestmark = pytest.mark.integration
API = "edgeplane.io/v1alpha1"


async def test_start_knows_every_location_route_and_worker(
    cluster: Cluster, crds_installed: list[str], namespace: str
) -> None:
    target = f"prime-{namespace}"
    docs = [
        {"apiVersion": API, "kind": "EdgeTarget", "metadata": {"name": target},
         "spec": {"endpoint": "http://127.0.0.1:1", "credentialsSecretRef": {
             "namespace": "edgeplane-system", "name": "none", "key": "token"}}},
        {"apiVersion": API, "kind": "WorkerRoute",
         "metadata": {"name": "r", "namespace": namespace},
         "spec": {"pattern": f"{namespace}.example.com/*", "worker": "w"}},
        {"apiVersion": API, "kind": "Worker",
         "metadata": {"name": "w", "namespace": namespace},
         "spec": {"compatibilityDate": "2025-01-01",
                  "modules": [{"name": "index.js", "inline": "export default {};"}]}},
    ]
    cluster.kubectl("apply", "-f", "-", input="\n---\n".join(json.dumps(d) for d in docs))
    api = await async_api_client()
    controller = Controller(api, Settings(namespaces=(namespace,)))
    try:
        await controller._prime_cache()  # what start() does before the queue runs
        assert target in controller.fleet.targets
        assert (namespace, "r") in controller.cache.routes
        assert (namespace, "w") in controller.cache.workers
        assert ("Worker", namespace, "w") in controller.queue._queued
    finally:
        await controller.stop()
        await api.close()
        cluster.kubectl("delete", "edgetarget", target, "--wait=false")
