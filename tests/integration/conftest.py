"""Fixtures for integration tests that need the edgeplane CRDs installed."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgeplane.localstack.cluster import REPO, Cluster

CRD_DIR: Path = REPO / "crds"


@pytest.fixture(scope="session")
def crds_installed(cluster: Cluster) -> list[str]:
    """Applies crds/*.yaml (server-side) and waits until every CRD is Established; returns
    the CRD names."""
    files = sorted(CRD_DIR.glob("*.yaml"))
    assert files, f"no CRDs in {CRD_DIR}; run `edgeplane crds`"
    args: list[str] = ["apply", "--server-side", "--force-conflicts"]
    for f in files:
        args += ["-f", str(f)]
    cluster.kubectl(*args)
    names = [f.name.removesuffix(".yaml") for f in files]
    cluster.kubectl(
        "wait", "--for=condition=Established", "--timeout=60s", *(f"crd/{n}" for n in names)
    )
    return names
