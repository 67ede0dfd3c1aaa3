"""What `edgeplane import` writes for every test project and environment is accepted by the
real apiserver (CRD schemas and CEL rules), checked with a server-side dry run."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from edgeplane.localstack.cluster import Cluster
from edgeplane.wrangler import Options, convert, render

pytestmark = pytest.mark.integration

DATA = Path(__file__).resolve().parents[1] / "data" / "wrangler"
PROJECTS = ["hello-toml", "api-jsonc", "shop-envs"]


@pytest.mark.parametrize("project", PROJECTS)
def test_every_environment_is_accepted_by_the_apiserver(
    cluster: Cluster, crds_installed: list[str], namespace: str, project: str
) -> None:
    from edgeplane.wrangler import find_config, load_config

    envs = [None, *sorted(load_config(find_config(DATA / project)).get("env") or {})]
    text = render(convert(DATA / project, envs, Options(namespace=namespace)), project)
    kinds = [d["kind"] for d in yaml.safe_load_all(text)]
    assert "Worker" in kinds and "ConfigMap" in kinds
    res = cluster.kubectl("apply", "--dry-run=server", "-f", "-", input=text)
    # One line per object, each accepted ("created (server dry run)").
    lines = [ln for ln in res.stdout.splitlines() if ln.strip()]
    assert len(lines) == len(kinds), res.stdout
    assert all("(server dry run)" in ln for ln in lines), res.stdout
