"""A Worker whose code is an OCI artifact, end to end on the real stack: pushed to the real
registry (TLS, htpasswd), pulled by the operator with the Worker's imagePullSecret and
served at every location. With the registry stopped, a new version is ArtifactUnavailable
naming its ref while the old one keeps serving; once the registry is back it rolls out
with no edit. The registry's password shows nowhere: not in conditions, Events or the
operator's log."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator
from typing import Any

import pytest

from edgeplane.localstack.registry import Registry
from edgeplane.localstack.stack import Stack
from edgeplane.resolve.artifact import Credentials
from edgeplane.resolve.oci import OciClient
from edgeplane.resolve.policy import UrlSettings
from tests.e2e.conftest import Kube, eventually, fetch, operator_with, responder, route

pytestmark = pytest.mark.integration


@pytest.fixture
def pulling(stack: Stack, registry: Registry) -> Iterator[Registry]:
    """The operator restarted trusting the registry's CA and allowing its one loopback
    address (every other non-public address stays refused); restored after."""
    trust = ("--url-ca-bundle", str(registry.ca), "--url-allow-network", "127.0.0.1/32")
    with operator_with(stack, *trust):
        try:
            yield registry
        finally:
            if registry.proc is None:
                registry.start()


def push(registry: Registry, repo: str, script: str) -> str:
    async def go() -> str:
        client = OciClient(UrlSettings(ca_bundle=str(registry.ca), allow_private=True))
        try:
            digest = await client.push(
                registry.host, repo, None,
                [("index.js", "application/javascript+module", script.encode())],
                b"{}", Credentials(registry.user, registry.password),
            )
        finally:
            await client.close()
        return f"{registry.host}/{repo}@{digest}"

    return asyncio.run(go())


def pull_secret(registry: Registry) -> dict[str, Any]:
    config = registry.dockerconfigjson().encode()
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "registry"},
        "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": base64.b64encode(config).decode()},
    }


def oci_worker(name: str, ref: str) -> dict[str, Any]:
    return {
        "apiVersion": "edgeplane.io/v1alpha1",
        "kind": "Worker",
        "metadata": {"name": name},
        "spec": {
            "compatibilityDate": "2025-01-01",
            "modules": [{"name": "index.js", "oci": {"ref": ref, "file": "index.js"}}],
            "imagePullSecrets": [{"name": "registry"}],
        },
    }


def test_a_worker_from_an_oci_artifact_serves_and_survives_a_registry_outage(
    stack: Stack, kube: Kube, pulling: Registry
) -> None:
    registry = pulling
    name, host = "from-oci", f"from-oci.{kube.namespace}.example.com"
    repo = f"e2e/{kube.namespace}"
    v1 = push(registry, repo, responder('"oci v1"'))
    v2 = push(registry, repo, responder('"oci v2"'))
    kube.apply(pull_secret(registry), oci_worker(name, v1), route(name, f"{host}/*", name))
    kube.wait_ready(name, timeout=90)
    eventually(lambda: [fetch(a, host) for a in stack.agents] == [(200, "oci v1")] * 3)

    registry.stop()
    kube.apply(oci_worker(name, v2))

    def unavailable() -> dict[str, Any] | None:
        cond = kube.condition("worker", name, "Ready")
        return cond if cond and cond["reason"] == "ArtifactUnavailable" else None

    cond = eventually(unavailable, timeout=90)
    assert cond["status"] == "False" and v2 in cond["message"], cond
    assert "retrying with backoff" in cond["message"]
    reconciling = kube.condition("worker", name, "Reconciling")
    assert reconciling and reconciling["status"] == "True", reconciling
    # The last good version keeps serving meanwhile.
    assert [fetch(a, host) for a in stack.agents] == [(200, "oci v1")] * 3

    registry.start()  # no edit: the backoff retries until the pull succeeds
    eventually(lambda: [fetch(a, host) for a in stack.agents] == [(200, "oci v2")] * 3,
               timeout=120)
    kube.wait_ready(name, timeout=60)

    assert stack.cluster is not None and stack.operator is not None
    events = stack.cluster.kubectl("get", "events", "-n", kube.namespace, "-o", "json").stdout
    worker_yaml = stack.cluster.kubectl("get", "worker", name, "-n", kube.namespace,
                                        "-o", "yaml").stdout
    assert stack.operator.proc is not None
    log = stack.operator.proc.log.read_text(errors="replace")
    assert "ArtifactUnavailable" in events + worker_yaml + log
    for text in (events, worker_yaml, log):
        assert registry.password not in text


def test_a_pull_secret_created_or_fixed_later_reconciles_the_worker(
    stack: Stack, kube: Kube, pulling: Registry
) -> None:
    """The pull Secret is watched like any Secret a Worker reads: missing, the Worker is
    Stalled naming it; created with a wrong password, ArtifactUnavailable (HTTP 401, the
    password nowhere); fixed, the Worker deploys."""
    registry = pulling
    name, host = "late-secret", f"late-secret.{kube.namespace}.example.com"
    ref = push(registry, f"e2e/{kube.namespace}-late", responder('"late secret"'))
    kube.apply(oci_worker(name, ref), route(name, f"{host}/*", name))

    def reason(want: str) -> Any:
        def check() -> dict[str, Any] | None:
            cond = kube.condition("worker", name, "Ready")
            return cond if cond and cond["reason"] == want else None
        return check

    cond = eventually(reason("SourceNotFound"), timeout=90)
    assert "spec.imagePullSecrets[0]: Secret" in cond["message"] and "registry" in cond["message"]

    wrong = "Wr0ng-" + registry.password[::-1]
    secret = pull_secret(registry)
    secret["data"][".dockerconfigjson"] = base64.b64encode(
        registry.dockerconfigjson(wrong).encode()).decode()
    kube.apply(secret)
    cond = eventually(reason("ArtifactUnavailable"), timeout=90)
    assert "HTTP 401" in cond["message"] and ref in cond["message"]
    assert wrong not in cond["message"] and registry.password not in cond["message"]

    kube.apply(pull_secret(registry))
    kube.wait_ready(name, timeout=90)
    eventually(lambda: [fetch(a, host) for a in stack.agents] == [(200, "late secret")] * 3)
