"""The operator's live-log endpoint (edgeplane/tailserver.py) against the real apiserver:
who is let through is decided by a real TokenReview and SubjectAccessReview, and an
operator whose own credentials may not ask them lets nobody through (503, saying why)."""

from __future__ import annotations

import json
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import yaml
from kubernetes_asyncio import client as aclient
from kubernetes_asyncio import config as aconfig

from edgeplane.distribute.client import AgentClient
from edgeplane.localstack import procs
from edgeplane.localstack.cluster import Cluster
from edgeplane.localstack.pki import CertificateAuthority
from edgeplane.tailserver import Locations, Reviews, TailServer, TailSettings

pytestmark = pytest.mark.integration

NS = "tail-authz"


def sa_token(cluster: Cluster, name: str, rules: list[dict[str, object]]) -> str:
    docs: list[dict[str, object]] = [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": NS}}
    ]
    if rules:
        meta = {"name": name, "namespace": NS}
        docs += [
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "Role",
                "metadata": meta,
                "rules": rules,
            },
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": meta,
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
                "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": NS}],
            },
        ]
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(docs))
    return cluster.kubectl("create", "token", name, "-n", NS, "--duration=1h").stdout.strip()


async def api_client(cluster: Cluster, token: str | None, tmp: Path) -> aclient.ApiClient:
    """An API client as the admin (token None) or with only `token`."""
    cfg_doc = yaml.safe_load(cluster.kubeconfig.read_text())
    if token is not None:
        cfg_doc["users"][0]["user"] = {"token": token}
    path = tmp / f"kubeconfig-{'admin' if token is None else 'sa'}"
    path.write_text(yaml.safe_dump(cfg_doc))
    cfg = aclient.Configuration()
    await aconfig.load_kube_config(config_file=str(path), client_configuration=cfg)
    return aclient.ApiClient(cfg)


async def serve(api: aclient.ApiClient, tmp: Path) -> AsyncIterator[tuple[str, ssl.SSLContext]]:
    ca = CertificateAuthority(tmp / "pki")
    pair = ca.issue("tail", "tail", server_hosts=("127.0.0.1",))
    port = procs.free_port()
    agents = AgentClient()

    async def no_endpoint(_: str) -> None:
        return None

    where = Locations(lambda _: [], no_endpoint, agents)
    settings = TailSettings(f"127.0.0.1:{port}", str(pair.cert), str(pair.key))
    server = TailServer(settings, Reviews(api), where)
    await server.start()
    try:
        yield f"https://127.0.0.1:{port}", ssl.create_default_context(cafile=str(ca.pair.cert))
    finally:
        await server.close()
        await agents.close()
        await api.close()


async def ask(url: str, ctx: ssl.SSLContext, token: str | None) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with (
        aiohttp.ClientSession() as s,
        s.get(f"{url}/v1/namespaces/{NS}/workers/shop/tail", headers=headers, ssl=ctx) as r,
    ):
        return r.status, json.loads(await r.text())["error"]


GET_SHOP = [
    {
        "apiGroups": ["edgeplane.io"],
        "resources": ["workers"],
        "resourceNames": ["shop"],
        "verbs": ["get"],
    }
]
LIST_ONLY = [{"apiGroups": ["edgeplane.io"], "resources": ["workers"], "verbs": ["list"]}]


async def test_only_who_may_get_the_worker_passes(cluster: Cluster, tmp_path: Path) -> None:
    cluster.kubectl("create", "namespace", NS, check=False)
    reader = sa_token(cluster, "reader", GET_SHOP)
    lister = sa_token(cluster, "lister", LIST_ONLY)  # list is not get
    async for url, ctx in serve(await api_client(cluster, None, tmp_path), tmp_path):
        # Through the reviews: the Worker simply runs nowhere here.
        assert await ask(url, ctx, reader) == (404, f"{NS}/shop runs at no edge location yet")
        status, message = await ask(url, ctx, lister)
        assert status == 403
        assert message.startswith(
            f'system:serviceaccount:{NS}:lister may not get workers.edgeplane.io "shop" '
            f'in namespace "{NS}": tailing a Worker needs the get verb on it'
        )
        assert await ask(url, ctx, "not-a-token") == (
            401,
            "the cluster did not accept the token (TokenReview)",
        )
        status, message = await ask(url, ctx, None)
        assert status == 401 and message.startswith("no bearer token")


async def test_an_operator_that_may_not_review_lets_nobody_through(
    cluster: Cluster, tmp_path: Path
) -> None:
    """The operator's own credentials lack create on tokenreviews: 503, naming the fix."""
    cluster.kubectl("create", "namespace", NS, check=False)
    reader = sa_token(cluster, "reader", GET_SHOP)
    weak = sa_token(cluster, "weak-operator", [])
    async for url, ctx in serve(await api_client(cluster, weak, tmp_path), tmp_path):
        status, message = await ask(url, ctx, reader)
    assert status == 503
    assert "403 Forbidden" in message
    assert "needs create on tokenreviews and subjectaccessreviews" in message
