"""A real agent (real workerd) pulling a push's modules from the real registry (TLS,
htpasswd) by digest: a deployment record without module content is served once the agent
pulled its modules with its own credentials; the registry stopped, a new version is
answered 424 naming the reference (the old one keeps serving) and goes through when the
registry is back, pulling only the changed module; wrong credentials are said without
the password; an agent started again with the registry down serves from its blobs."""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import aiohttp
import pytest

from edgeplane.localstack.registry import Registry
from edgeplane.resolve.artifact import Credentials
from edgeplane.resolve.oci import OciClient
from edgeplane.resolve.policy import UrlSettings
from edgeplane.wire import Bundle, BundleModule, Deployment, ModuleType, Route
from tests.integration.edge_fixtures import (
    AgentProc,
    body_of,
    edge_agents,  # noqa: F401 (fixture)
)

pytestmark = pytest.mark.integration

WORKER = "shop.front"
HOST = "pull.test"


def _modules(n: int) -> dict[str, bytes]:
    """A Worker of two modules: a large library unchanged across versions, and an entry
    point that says which version answers."""
    lib = b"export const lib = '" + b"L" * 200_000 + b"';\n"
    index = (
        "import { lib } from './lib.js';\n"
        f"export default {{ fetch() {{ return new Response('v{n} ' + lib.length); }} }};\n"
    ).encode()
    return {"index.js": index, "lib.js": lib}


async def _push(registry: Registry, repository: str, tag: str, mods: dict[str, bytes]) -> None:
    """The version's artifact, one layer per module (as the operator's version registry)."""
    client = OciClient(UrlSettings(allow_private=True, ca_bundle=str(registry.ca)))
    try:
        await client.push(
            registry.host, repository, tag,
            [(name, "application/javascript+module", b) for name, b in mods.items()],
            json.dumps({"tag": tag}).encode(), Credentials(registry.user, registry.password),
        )
    finally:
        await client.close()


def _record(repository: str, mods: dict[str, bytes]) -> Deployment:
    """The small deployment record: modules by sha256 only, and where to pull them."""
    b = Bundle(
        worker=WORKER,
        compatibilityDate="2025-01-01",
        mainModule="index.js",
        modules=tuple(
            BundleModule(name=name, type=ModuleType.ES_MODULE, content=raw.decode())
            for name, raw in mods.items()
        ),
    ).with_version()
    b = b.by_reference().model_copy(update={"repository": repository})
    assert all(m.content is None for m in b.modules)
    return Deployment(
        worker=WORKER, primary=b.version or "", versions=(b,),
        routes=(Route(pattern=f"{HOST}/*"),),
    )


async def _put(s: aiohttp.ClientSession, agent: AgentProc, d: Deployment) -> tuple[int, dict]:
    async with s.put(
        f"{agent.api_url}/v1/workers/{WORKER}", data=body_of(d),
        headers={**agent.headers(), "Content-Type": "application/json"},
    ) as r:
        return r.status, await r.json()


async def _get(s: aiohttp.ClientSession, agent: AgentProc) -> tuple[int, str]:
    async with s.get(f"{agent.http_url}/", headers={"Host": HOST}) as r:
        return r.status, await r.text()


def _pulled(metrics: str) -> float:
    m = re.search(r'edgeplane_agent_pulled_bytes_total\{result="stored"\} (\S+)', metrics)
    return float(m.group(1)) if m else 0.0


async def _metrics(s: aiohttp.ClientSession, agent: AgentProc) -> str:
    async with s.get(f"{agent.api_url}/metrics", headers=agent.headers()) as r:
        return await r.text()


async def test_a_record_without_content_is_served_from_pulled_modules(
    registry: Registry, edge_agents, tmp_path: Path  # noqa: F811
) -> None:
    creds = tmp_path / "dockerconfig.json"
    creds.write_text(registry.dockerconfigjson())
    agent = edge_agents("agent", extra_args=(
        "--registry-credentials", str(creds), "--registry-ca", str(registry.ca),
        "--registry-hold", "0",  # tried again at once: the hold is test_edge_pull's
    ))
    repo_path = f"edgeplane/versions/t-{os.urandom(4).hex()}/front"
    repository = f"{registry.host}/{repo_path}"
    v1, v2 = _modules(1), _modules(2)
    await _push(registry, repo_path, "v-1", v1)
    await _push(registry, repo_path, "v-2", v2)
    async with aiohttp.ClientSession() as s:
        status, body = await _put(s, agent, _record(repository, v1))
        assert status == 200, body
        assert await _get(s, agent) == (200, "v1 200000")
        assert _pulled(await _metrics(s, agent)) == sum(map(len, v1.values()))

        # Registry down: the new version's changed module cannot be pulled; the answer
        # names it, and the running version keeps serving.
        new_index = hashlib.sha256(v2["index.js"]).hexdigest()
        registry.stop()
        try:
            status, body = await _put(s, agent, _record(repository, v2))
            assert await _get(s, agent) == (200, "v1 200000")
        finally:
            registry.start()
        assert status == 424, body
        assert body["missing"] == [new_index]  # the library is here already
        assert body["reason"] == "ArtifactUnavailable"
        assert body["ref"] == f"{repository}@sha256:{new_index}"

        # Back: the same push goes through, pulling only the changed module.
        status, body = await _put(s, agent, _record(repository, v2))
        assert status == 200, body
        assert await _get(s, agent) == (200, "v2 200000")
        metrics = await _metrics(s, agent)
        assert _pulled(metrics) == sum(map(len, v1.values())) + len(v2["index.js"])
        # Nothing came from the operator but the records: no blob was PUT.
        assert 'edgeplane_agent_received_bytes_total{kind="deployment"}' in metrics
        assert 'edgeplane_agent_received_bytes_total{kind="blob"}' not in metrics

        # Credentials rotated to wrong ones (the file is read again): refused, said
        # without the password, and the operator is asked for the blob.
        v3 = _modules(3)
        await _push(registry, repo_path, "v-3", v3)
        wrong = "wrong-" + os.urandom(8).hex()
        _swap(creds, registry.dockerconfigjson(wrong))
        status, body = await _put(s, agent, _record(repository, v3))
        assert status == 424, body
        assert body["reason"] == "ArtifactUnavailable"
        assert "HTTP 401" in body["error"] and "--registry-credentials" in body["error"]
        assert wrong not in json.dumps(body) and registry.password not in json.dumps(body)
        _swap(creds, registry.dockerconfigjson())

        # A repository that is not one is refused, saying the form, before any request.
        status, body = await _put(s, agent, _record(f"https://{repository}", v3))
        assert status == 422, body
        assert body["errors"] == ["versions"] and "must be <host>[:port]/" in body["error"]

    # An agent started again with the registry down serves from its own blobs.
    agent.stop()
    registry.stop()
    try:
        again = edge_agents("agent", extra_args=(
            "--registry-credentials", str(creds), "--registry-ca", str(registry.ca),
        ))
        async with aiohttp.ClientSession() as s:
            assert await _get(s, again) == (200, "v2 200000")
    finally:
        registry.start()
    for log in (agent.log, again.log):
        text = log.read_text(errors="replace")
        assert registry.password not in text and wrong not in text


def _swap(path: Path, text: str) -> None:
    """Replace the file as a Secret volume's update does: a new file renamed over it."""
    new = path.with_name(path.name + ".new")
    new.write_text(text)
    new.replace(path)
