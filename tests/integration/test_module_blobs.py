"""Modules travel and are stored by sha256 (issue #19 item 3), on a real agent and workerd
through the operator's client: a one-line change of a 300 KB Worker of ten modules sends
that module only; two Workers sharing a library keep one copy; a restarted agent serves
from its blobs; a blob that went bad on disk is sent again, never served."""

from __future__ import annotations

import hashlib
import random
import re
import string
from pathlib import Path

import aiohttp
import pytest

from edgeplane.distribute.client import AgentClient, Endpoint
from edgeplane.wire import Bundle, BundleModule, Deployment, ModuleType
from tests.integration.edge_fixtures import (
    AgentProc,
    bundle,
    deployment,
    module_blobs,
    start_agent,
)

pytestmark = pytest.mark.integration
LIBS = 10
LIB_BYTES = 30_000


def _lib(i: int, seed: int = 0) -> str:
    """A library module of 30 KB that gzip does not squash to nothing."""
    rng = random.Random(i * 1000 + seed)
    head = f"export const name{i} = {i};\nexport const text{i} = '"
    words = "".join(rng.choices(string.ascii_lowercase + " ", k=LIB_BYTES - len(head) - 3))
    return f"{head}{words}';\n"


def _worker(worker: str, tag: str, libs: list[str]) -> Bundle:
    """A 300 KB Worker: a main module importing ten 30 KB libraries; it answers `tag`."""
    imports = "".join(f'import {{ name{i} }} from "lib{i}.js";\n' for i in range(len(libs)))
    names = " + ".join(f"name{i}" for i in range(len(libs)))
    js = imports + (
        f"export default {{ fetch() {{ return new Response({tag!r} + ':' + ({names})); }} }};"
    )
    mods = tuple(
        BundleModule(name=f"lib{i}.js", type=ModuleType.ES_MODULE, content=text)
        for i, text in enumerate(libs)
    )
    return bundle(worker, js, extra_modules=mods)


def _received(metrics: str) -> dict[str, float]:
    sample = r'^edgeplane_agent_received_bytes_total\{kind="(\w+)"\} (\S+)$'
    found = re.findall(sample, metrics, re.M)
    return {k: float(v) for k, v in found}


async def _metrics(s: aiohttp.ClientSession, agent: AgentProc) -> str:
    async with s.get(f"{agent.api_url}/metrics", headers=agent.headers()) as r:
        return await r.text()


async def _answer(s: aiohttp.ClientSession, agent: AgentProc, host: str) -> str:
    async with s.get(f"{agent.http_url}/", headers={"Host": host}) as r:
        return f"{r.status} {await r.text()}"


def _blob_files(agent: AgentProc) -> set[str]:
    root = agent.state_dir / "blobs" / "sha256"
    return {p.parent.name + p.name for p in root.glob("*/*") if not p.name.startswith(".")}


def _deployed(b: Bundle, host: str) -> Deployment:
    return deployment(b, routes=(f"{host}/*",))


async def test_a_one_line_change_sends_the_changed_module_only(tmp_path: Path) -> None:
    agent = start_agent(tmp_path / "agent")
    ep = Endpoint("edge-1", agent.api_url, agent.token)
    client = AgentClient()
    libs = [_lib(i) for i in range(LIBS)]
    v1 = _worker("ns.app", "v1", libs)
    assert sum(len(m.raw()) for m in v1.modules) > 300_000
    changed = libs.copy()
    changed[4] = changed[4].replace("export const name4 = 4;", "export const name4 = 40;")
    v2 = _worker("ns.app", "v1", changed)  # the same main module: only lib4.js differs
    try:
        async with aiohttp.ClientSession() as s:
            assert await client.put(ep, _deployed(v1, "app.test"), by_reference=True)
            assert await _answer(s, agent, "app.test") == "200 v1:45"
            before = _received(await _metrics(s, agent))
            assert await client.put(ep, _deployed(v2, "app.test"), by_reference=True)
            assert await _answer(s, agent, "app.test") == "200 v1:81"
            after = _received(await _metrics(s, agent))
            blob = after["blob"] - before["blob"]
            record = after["deployment"] - before["deployment"]
            # The blob sent is lib4.js as it is now, byte for byte: nothing else.
            assert blob == len(changed[4].encode())
            assert record < 4096, record  # names and sha256s, no content
            # Whole, as an agent of the previous release takes it: every module again.
            whole = len(_deployed(v2, "app.test").model_dump_json(by_alias=True))
            assert blob + record < whole / 9
            # Both versions' modules are blobs: eleven, plus the new lib4.js.
            assert _blob_files(agent) == module_blobs(v1, v2)
            assert len(_blob_files(agent)) == LIBS + 2
    finally:
        await client.close()
        agent.stop()


async def test_shared_library_stored_once_and_served_after_a_restart(tmp_path: Path) -> None:
    """Two Workers import the same library: one blob. A restarted agent serves both from its
    blobs; a blob corrupted on disk meanwhile is detected, and the next push sends it."""
    shared = _lib(0)
    a = _worker("ns.a", "a", [shared, _lib(1, seed=1)])
    b = _worker("ns.b", "b", [shared, _lib(1, seed=2)])
    # A binary module by reference too: the host reads it as bytes.
    wasm = BundleModule(name="tiny.wasm", type=ModuleType.WASM, content="AGFzbQEAAAA=")
    c = bundle("ns.c", 'import m from "tiny.wasm";\nexport default { fetch() { return new '
               'Response(String(m instanceof WebAssembly.Module)); } };', extra_modules=(wasm,))
    state = tmp_path / "agent"
    agent = start_agent(state)
    ep = Endpoint("edge-1", agent.api_url, agent.token)
    client = AgentClient()
    try:
        async with aiohttp.ClientSession() as s:
            for bd, host in ((a, "a.test"), (b, "b.test"), (c, "c.test")):
                assert await client.put(ep, _deployed(bd, host), by_reference=True)
            assert await _answer(s, agent, "a.test") == "200 a:1"
            assert await _answer(s, agent, "b.test") == "200 b:1"
            assert await _answer(s, agent, "c.test") == "200 true"
            sha = hashlib.sha256(shared.encode()).hexdigest()
            assert sha in _blob_files(agent)
            assert len(_blob_files(agent)) == len(module_blobs(a, b, c)) == 7  # of 8 modules
            agent.stop()

            # The library's blob goes bad while the agent is down (a disk fault): the
            # Workers that use it are set aside at start, the other one serves.
            path = state / "blobs" / "sha256" / sha[:2] / sha[2:]
            path.write_bytes(b"export const name0 = 666;\n")
            agent = start_agent(state)
            ep = Endpoint("edge-1", agent.api_url, agent.token)
            assert await _answer(s, agent, "c.test") == "200 true"
            assert (await _answer(s, agent, "a.test")).startswith("404")
            assert not path.exists()  # removed: it is sent again, never served
            # The operator pushes what the location lacks: only that blob travels.
            before = _received(await _metrics(s, agent))
            assert await client.put(ep, _deployed(a, "a.test"), by_reference=True)
            assert await client.put(ep, _deployed(b, "b.test"), by_reference=True)
            after = _received(await _metrics(s, agent))
            assert after["blob"] - before.get("blob", 0) == len(shared.encode())
            assert await _answer(s, agent, "a.test") == "200 a:1"
            assert await _answer(s, agent, "b.test") == "200 b:1"
    finally:
        await client.close()
        agent.stop()
