"""Versions kept in the real OCI registry (TLS, htpasswd), end to end: 52 versions of a
Worker recorded as digests only, the operator restarted (nothing in its memory), and a
pin to the version 50 back is rebuilt from the registry and served at every location.
With the registry stopped, requests keep being answered, a new version says
ArtifactUnavailable naming the registry, and it rolls out with no edit once the registry
is back. The registry's password shows nowhere."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgeplane.localstack.registry import Registry
from edgeplane.localstack.stack import Stack
from tests.e2e.conftest import (
    Kube,
    eventually,
    fetch,
    metric,
    operator_with,
    responder,
    route,
    worker,
)

pytestmark = pytest.mark.integration

VERSIONS = 52


@pytest.fixture
def keeping(stack: Stack, registry: Registry, tmp_path: Path) -> Iterator[Registry]:
    """The operator restarted with --version-registry, and the locations with credentials
    to pull from it; restored after."""
    creds = tmp_path / "registry.json"
    creds.write_text(registry.dockerconfigjson())
    creds.chmod(0o600)
    pulls = ("--registry-credentials", str(creds), "--registry-ca", str(registry.ca))
    _restart_agents(stack, pulls)
    try:
        with operator_with(
            stack,
            "--version-registry", f"oci://{registry.host}/e2e-versions",
            "--version-registry-credentials", str(creds),
            "--version-registry-ca", str(registry.ca),
        ):
            try:
                yield registry
            finally:
                if registry.proc is None:
                    registry.start()
    finally:
        _restart_agents(stack, ())


def _restart_agents(stack: Stack, args: tuple[str, ...]) -> None:
    """Each location's agent stopped and started with `args` (its workerds adopted)."""
    for a in stack.agents:
        a.kill_agent()
        a.extra_args = args
        a.start()


def _pulled(stack: Stack) -> list[float]:
    """Bytes each location pulled from the registry itself (edge/pull.py)."""
    return [metric(a.api_url + "/metrics", "edgeplane_agent_pulled_bytes_total", a.token,
                   result="stored") for a in stack.agents]


def _serves(stack: Stack, host: str, body: str) -> bool:
    return all(fetch(a, host) == (200, body) for a in stack.agents)


def test_a_pin_fifty_versions_back_is_served_from_the_registry(
    stack: Stack, kube: Kube, keeping: Registry
) -> None:
    host = f"kept.{kube.namespace}.example.com"
    # A module of its own: another test's Worker answering "v0" would be a blob the
    # locations hold already (content-addressed across Workers), with nothing to pull.
    v0 = responder('"v0"') + f"// {kube.namespace}\n"
    kube.apply(worker("kept", v0), route("kept", f"{host}/*", "kept"))
    kube.wait_ready("kept", generation=1, timeout=90)
    # The locations pulled the version's module from the registry, by digest.
    assert all(n > 0 for n in _pulled(stack)), _pulled(stack)
    for i in range(1, VERSIONS):
        kube.apply(worker("kept", responder(f'"v{i}"')))
        kube.wait_ready("kept", generation=i + 1, timeout=90)
    assert _serves(stack, host, f"v{VERSIONS - 1}")
    versions = kube.list("workerversions")
    assert len(versions) == VERSIONS
    # Digests only: no code, no archive ConfigMaps, small records.
    for v in versions:
        assert v["spec"]["artifact"]["ref"].startswith(f"{keeping.host}/e2e-versions/")
        assert v["spec"].get("archiveParts", 0) == 0
        assert len(json.dumps(v)) <= 4096, len(json.dumps(v))
        assert "Hello" not in json.dumps(v) and '"v1"' not in json.dumps(v)
    assert not [c for c in kube.list("configmaps")
                if c["metadata"]["name"].startswith("kept-")]
    # Generation 2 of 52 (v1): the version 50 back from the one serving.
    fifty_back = next(
        v["spec"]["versionId"] for v in versions if v["spec"]["workerGeneration"] == 2
    )
    # Nothing of it left in the operator's memory: the rebuild must come from the registry.
    assert stack.operator is not None
    stack.operator.stop()
    stack.operator.start()
    kube.apply(worker("kept", responder(f'"v{VERSIONS - 1}"'), version=fifty_back[:12]))
    eventually(lambda: _serves(stack, host, "v1"), timeout=90)
    kube.wait_ready("kept", generation=VERSIONS + 1, timeout=90)


def test_with_the_registry_stopped_a_new_version_waits_and_nothing_fails(
    stack: Stack, kube: Kube, keeping: Registry
) -> None:
    host = f"held.{kube.namespace}.example.com"
    kube.apply(worker("held", responder('"old"')), route("held", f"{host}/*", "held"))
    kube.wait_ready("held", generation=1, timeout=90)
    keeping.stop()
    try:
        kube.apply(worker("held", responder('"new"')))

        def unavailable() -> str | None:
            ready = kube.condition("worker", "held", "Ready") or {}
            return ready["message"] if ready.get("reason") == "ArtifactUnavailable" else None

        message = eventually(unavailable, timeout=60)
        assert keeping.host in message, message
        # The version serving is untouched, at every location, all along.
        for _ in range(20):
            assert _serves(stack, host, "old")
    finally:
        keeping.start()
    eventually(lambda: _serves(stack, host, "new"), timeout=120)
    kube.wait_ready("held", generation=2, timeout=60)
    assert stack.operator is not None and stack.operator.proc is not None
    seen = stack.operator.proc.log.read_text(errors="replace") + json.dumps(
        kube.list("events")) + json.dumps(kube.get("worker", "held"))
    assert keeping.password not in seen
