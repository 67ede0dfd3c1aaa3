"""The Argo CD health checks over live objects: a Ready, a Stalled and a progressing Worker,
a routed and a conflicting WorkerRoute, a reachable and an unreachable EdgeTarget, as the
operator really writes them. With EDGEPLANE_WRITE_FIXTURES=1 the objects are saved to
tests/data/argocd/, where tests/unit/test_argocd_health.py runs the Lua without a cluster."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from edgeplane.localstack.stack import Stack
from tests.e2e.conftest import Kube, eventually, responder, route, worker
from tests.unit.test_argocd_health import FIXTURES, health

pytestmark = pytest.mark.integration

DEAD_TARGET = "argocd-nowhere"


def captured(obj: dict[str, Any]) -> dict[str, Any]:
    """The object without what differs between runs and means nothing to a health check."""
    meta = obj["metadata"]
    keep = {k: meta[k] for k in ("name", "generation", "labels") if k in meta}
    if "namespace" in meta:
        keep["namespace"] = "demo"
    out = {"apiVersion": obj["apiVersion"], "kind": obj["kind"], "metadata": keep,
           "spec": obj["spec"], "status": obj.get("status", {})}
    return json.loads(json.dumps(out).replace(meta.get("namespace", "\0"), "demo"))


def save(name: str, obj: dict[str, Any], expected: str) -> None:
    if os.environ.get("EDGEPLANE_WRITE_FIXTURES") != "1":
        return
    FIXTURES.mkdir(parents=True, exist_ok=True)
    case = {"expected": expected, "object": captured(obj)}
    (FIXTURES / f"{name}.json").write_text(json.dumps(case, indent=2, sort_keys=True) + "\n")


def check(kube: Kube, kind: str, name: str, expected: str, fixture: str) -> None:
    def settled() -> dict[str, Any]:
        obj = kube.get(kind.lower(), name) if kind != "EdgeTarget" else json.loads(
            kube.cluster.kubectl("get", "edgetarget", name, "-o", "json").stdout)
        assert obj is not None
        got = health(kind, obj)
        assert got["status"] == expected, (got, obj.get("status"))
        return obj

    save(fixture, eventually(settled, timeout=90), expected)


@pytest.fixture
def dead_target(stack: Stack) -> Iterator[str]:
    """An EdgeTarget nobody answers at, selected only by this test's Worker."""
    assert stack.cluster is not None
    doc = {
        "apiVersion": "edgeplane.io/v1alpha1", "kind": "EdgeTarget",
        "metadata": {"name": DEAD_TARGET, "labels": {"edgeplane.io/region": "nowhere"}},
        "spec": {"endpoint": "http://127.0.0.1:9", "credentialsSecretRef": {
            "namespace": "edgeplane-system", "name": "edge-edge-1-token", "key": "token"}},
    }
    stack.cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(doc))
    try:
        yield DEAD_TARGET
    finally:
        stack.cluster.kubectl("delete", "edgetarget", DEAD_TARGET, "--wait=true",
                              "--timeout=60s", check=False)


def test_health_of_live_objects(stack: Stack, kube: Kube, dead_target: str) -> None:
    everywhere = {"matchExpressions": [
        {"key": "edgeplane.io/region", "operator": "NotIn", "values": ["nowhere"]}]}
    host = f"argocd.{kube.namespace}.example.com"
    kube.apply(
        worker("ready", responder('"ok"'), targets=everywhere),
        route("ready", f"{host}/*", "ready"),
        # A newer route with the same pattern: Degraded (it names the older one holding it).
        route("twin", f"{host}/*", "ready"),
        # A ConfigMap that does not exist: Stalled until it appears.
        {**worker("stalled", "", targets=everywhere), "spec": {
            "compatibilityDate": "2025-01-01", "targets": everywhere,
            "modules": [{"name": "index.js",
                         "configMapKeyRef": {"name": "missing", "key": "index.js"}}]}},
        # Its only location never answers: retried with backoff, so Progressing.
        worker("unreachable", responder('"x"'),
               targets={"matchLabels": {"edgeplane.io/region": "nowhere"}}),
    )
    check(kube, "Worker", "stalled", "Degraded", "worker-stalled")
    check(kube, "Worker", "unreachable", "Progressing", "worker-progressing")
    check(kube, "WorkerRoute", "twin", "Degraded", "workerroute-conflict")
    check(kube, "EdgeTarget", dead_target, "Degraded", "edgetarget-unreachable")
    check(kube, "EdgeTarget", stack.agents[0].name, "Healthy", "edgetarget-ready")

    kube.delete("workerroute", "twin")
    check(kube, "Worker", "ready", "Healthy", "worker-ready")
    check(kube, "WorkerRoute", "ready", "Healthy", "workerroute-ready")
    # A route whose Worker is not there (yet): Progressing, not Degraded.
    kube.apply(route("orphan", f"orphan.{host}/*", "not-yet"))
    check(kube, "WorkerRoute", "orphan", "Progressing", "workerroute-worker-not-found")
    kube.delete("worker", "unreachable", wait=False)
