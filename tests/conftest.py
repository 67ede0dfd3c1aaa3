"""Shared fixtures: a real local control plane for the session, a fresh namespace per
test, and the kubeconfig exported so kubectl, the Python client and kopf all use it."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgeplane.localstack.cluster import REPO, Cluster
from edgeplane.localstack.registry import Registry


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """pytest-randomly shuffles modules across the whole run; keep each test package's
    modules together (in the shuffled order within it, packages in the order they first
    appear) so that a package-scoped fixture such as the e2e stack starts once."""
    first: dict[Path, int] = {}
    for item in items:
        first.setdefault(item.path.parent, len(first))
    items.sort(key=lambda item: first[item.path.parent])
    # An e2e test that fails is run once more (pytest-rerunfailures; the summary counts
    # each "rerun"): on two shared cores a real-time test's window is sometimes missed.
    # Twice is a failure. A rerun is a flake to fix, never to keep.
    for item in items:
        if item.path.parent.name == "e2e":
            item.add_marker(pytest.mark.flaky(reruns=1, reruns_delay=2))


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    state_dir = REPO / ".state" / f"test-cluster-{os.getpid()}"
    c = Cluster(state_dir, tie_to_parent=True)
    c.up()
    old = {k: os.environ.get(k) for k in ("KUBECONFIG", "PATH")}
    os.environ["KUBECONFIG"] = str(c.kubeconfig)
    os.environ["PATH"] = f"{c.bin_dir}{os.pathsep}{os.environ['PATH']}"
    try:
        yield c
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        c.down()


@pytest.fixture(scope="session")
def registry() -> Iterator[Registry]:
    """A real OCI registry (TLS from its own CA, htpasswd auth), for the session."""
    r = Registry(REPO / ".state" / f"test-registry-{os.getpid()}", tie_to_parent=True)
    r.up()
    try:
        yield r
    finally:
        r.down()


@pytest.fixture(scope="session")
def api_client(cluster: Cluster):  # type: ignore[no-untyped-def]
    client = cluster.api_client()
    yield client
    client.close()


@pytest.fixture
def namespace(cluster: Cluster, api_client) -> Iterator[str]:  # type: ignore[no-untyped-def]
    from kubernetes import client

    name = f"t-{uuid.uuid4().hex[:10]}"
    core = client.CoreV1Api(api_client)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    # Namespace deletion is asynchronous (kube-controller-manager empties it); not waited for.
    core.delete_namespace(name)


@pytest.fixture(scope="session")
def workerd_bin() -> Path:
    from edgeplane.edge.workerd import find_workerd

    return find_workerd()
