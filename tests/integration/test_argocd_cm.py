"""manifests/argocd/argocd-cm.yaml merges into an existing argocd-cm as documented
(`kubectl patch --patch-file`), adding the three health checks and keeping other keys."""

from __future__ import annotations

import json
import uuid

import pytest
import yaml

from edgeplane.localstack.cluster import REPO, Cluster

pytestmark = pytest.mark.integration


def test_patch_merges_into_an_existing_argocd_cm(cluster: Cluster) -> None:
    ns = f"argocd-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", ns)
    try:
        existing = {"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": "argocd-cm", "namespace": ns},
                    "data": {"url": "https://argocd.example.com"}}
        cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(existing))
        patch = REPO / "manifests" / "argocd" / "argocd-cm.yaml"
        cluster.kubectl("-n", ns, "patch", "configmap", "argocd-cm", "--patch-file", str(patch))
        got = json.loads(cluster.kubectl("-n", ns, "get", "configmap", "argocd-cm", "-o",
                                         "json").stdout)["data"]
        assert got["url"] == "https://argocd.example.com"
        for kind, script in (("Worker", "worker.lua"), ("WorkerRoute", "workerroute.lua"),
                             ("EdgeTarget", "edgetarget.lua")):
            key = f"resource.customizations.health.edgeplane.io_{kind}"
            assert got[key] == (REPO / "manifests" / "argocd" / script).read_text()
    finally:
        cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)
