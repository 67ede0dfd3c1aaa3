"""Push sizes and bytes in flight on a real agent (issue #14 items 7 and 8): a Worker at
Cloudflare's size limit deploys with two versions at once, through the operator's client;
many large pushes at once hold the agent's and the operator's byte budgets, and every one of
them lands (the agent's 503 Retry-After is waited out, never remembered as a refusal)."""

from __future__ import annotations

import asyncio
import base64
import os
import re
import time
import zlib

import aiohttp
import pytest

from edgeplane.distribute.client import HEALTH_TIMEOUT, AgentClient, Endpoint, ServerError
from edgeplane.wire import (
    MAX_COMPRESSED,
    MAX_UNCOMPRESSED,
    BundleModule,
    Deployment,
    ModuleType,
    body_limit,
)
from tests.integration.edge_fixtures import (
    AgentProc,
    bundle,
    deployment,
    edge_agents,  # noqa: F401 (fixture)
)

pytestmark = pytest.mark.integration
MIB = 1024 * 1024
HOST = "big.example.com"


def _endpoint(agent: AgentProc) -> Endpoint:
    return Endpoint("edge-1", agent.api_url, agent.token)


def _largest_legal(worker: str, tag: str) -> object:
    """A version at Cloudflare's limit: 64 MB of modules before compression (a data module,
    which travels as base64), well under 10 MB after."""
    js = (
        'import blob from "blob.bin";\n'
        f"export default {{ fetch() {{ return new Response('{tag} ' + blob.byteLength); }} }};"
    )
    size = MAX_UNCOMPRESSED - len(js.encode())
    raw = tag.encode().ljust(64, b"-") + os.urandom(512 * 1024) + bytes(size - 64 - 512 * 1024)
    assert len(raw) + len(js.encode()) == MAX_UNCOMPRESSED
    assert len(zlib.compress(raw, 6)) < MAX_COMPRESSED
    content = base64.b64encode(raw).decode()
    data = BundleModule(name="blob.bin", type=ModuleType.DATA, content=content)
    return bundle(worker, js, extra_modules=(data,))


async def _probe(s: aiohttp.ClientSession, agent: AgentProc, worker: str, version: str) -> str:
    async with s.post(
        f"{agent.api_url}/v1/workers/{worker}/probe",
        json={"version": version, "path": "/", "host": HOST, "timeoutSeconds": 30},
        headers=agent.headers(),
    ) as r:
        out = await r.json()
        assert r.status == 200 and out["status"] == 200, out
        return str(out["body"])


async def test_a_worker_at_the_size_limit_deploys_two_versions_at_once(
    edge_agents,  # noqa: F811
) -> None:
    """Before: the agent took 16 MiB, so even one version at the limit (85 MB as base64) was
    refused 413 ScriptTooLarge, and two (a rollout's) certainly. The watchdog is given 10 s:
    on a loaded machine the first request to a version this large loads it for longer than
    the default 2 s, and the cell would be taken for hung (not what this test is about)."""
    agent = edge_agents("agent", extra_args=("--hang-timeout", "10"))
    worker = "ns.big"
    v1 = await asyncio.to_thread(_largest_legal, worker, "v1")
    v2 = await asyncio.to_thread(_largest_legal, worker, "v2")
    both = deployment(v1, v2, routes=(f"{HOST}/*",), traffic=((v1.version, 50), (v2.version, 50)))
    client = AgentClient(timeout=600)
    started = time.monotonic()
    pushed = asyncio.Event()
    watch = asyncio.ensure_future(_slowest_answer(agent, pushed))
    try:
        assert await client.put(_endpoint(agent), deployment(v1, routes=(f"{HOST}/*",)))
        assert await client.put(_endpoint(agent), both)
    finally:
        pushed.set()
        await client.close()
    took, slowest = time.monotonic() - started, await watch
    # The operator's health check gives up after HEALTH_TIMEOUT and marks the location
    # down: the agent answers it while it reads, parses and validates a push this big.
    assert slowest < HEALTH_TIMEOUT, slowest
    async with aiohttp.ClientSession() as s:
        url = f"{agent.api_url}/v1/workers/{worker}"
        async with s.get(url, headers=agent.headers()) as r:
            item = await r.json()
        assert sorted(item["versions"]) == sorted([v1.version, v2.version]), item
        size = MAX_UNCOMPRESSED - len(v1.modules[0].content.encode())
        assert await _probe(s, agent, worker, v1.version or "") == f"v1 {size}"
        assert await _probe(s, agent, worker, v2.version or "") == f"v2 {size}"
    print(f"two versions of {MAX_UNCOMPRESSED} bytes each pushed and served in {took:.1f}s "
          f"(limit {body_limit()} bytes); slowest inventory answer meanwhile {slowest:.2f}s")


async def _slowest_answer(agent: AgentProc, done: asyncio.Event) -> float:
    """The longest the agent took to answer an inventory request until `done`."""
    slowest = 0.0
    async with aiohttp.ClientSession() as s:
        while not done.is_set():
            started = time.monotonic()
            async with s.get(f"{agent.api_url}/v1/workers", headers=agent.headers()) as r:
                assert r.status == 200
            slowest = max(slowest, time.monotonic() - started)
            await asyncio.sleep(0.1)
    return slowest


def _filler(worker: str, size: int) -> object:
    """A Worker of about `size` bytes that gzip cannot shrink much (random base64 text)."""
    noise = base64.b64encode(os.urandom(size * 3 // 4)).decode()
    js = f"export default {{ fetch() {{ return new Response('ok'); }} }};//{noise}"
    return bundle(worker, js)


async def _metric(s: aiohttp.ClientSession, agent: AgentProc, name: str) -> float:
    async with s.get(f"{agent.api_url}/metrics", headers=agent.headers()) as r:
        text = await r.text()
    found = re.findall(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M)
    return sum(float(v) for v in found)


async def test_many_large_pushes_at_once_hold_both_budgets_and_all_land(
    edge_agents,  # noqa: F811
) -> None:
    """24 pushes of 3 MiB at once, to an agent that reads 8 MiB of bodies at a time, from a
    client that holds at most 16 MiB: the agent answers the rest 503 Retry-After, the client
    comes back, and every push is served. Before: no cap anywhere (all 72 MiB at once)."""
    cap, held, n, size = 8 * MIB, 16 * MIB, 24, 3 * MIB
    agent = edge_agents("agent", extra_args=("--max-body-bytes-in-flight", str(cap)))
    workers = [await asyncio.to_thread(_filler, f"ns.w{i}", size) for i in range(n)]
    client = AgentClient(timeout=300, bytes_in_flight=held)
    ep = _endpoint(agent)
    started = time.monotonic()

    async def push(d: Deployment) -> None:
        deadline = time.monotonic() + 240
        while True:
            try:
                await client.put(ep, d)
                return
            except ServerError as e:  # busy past BUSY_PATIENCE: the work queue goes again
                assert e.retry_after is not None and time.monotonic() < deadline, e

    try:
        await asyncio.gather(*(push(deployment(b)) for b in workers))
    finally:
        await client.close()
    took = time.monotonic() - started
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{agent.api_url}/v1/workers", headers=agent.headers()) as r:
            served = {i["worker"]: i["versions"] for i in (await r.json())["workers"]}
        peak = await _metric(s, agent, "edgeplane_agent_body_bytes_in_flight_peak")
        busy = await _metric(s, agent, 'edgeplane_agent_pushes_total{result="busy"}')
        now = await _metric(s, agent, "edgeplane_agent_body_bytes_in_flight")
    assert served == {b.worker: [b.version] for b in workers}
    assert 0 < peak <= cap and now == 0, (peak, now)
    assert busy > 0  # the cap was reached, and the pushes it turned away came back
    assert 0 < client.budget.peak <= held and client.budget.used == 0
    print(f"{n} pushes of {size} bytes: {took:.1f}s, agent peak {peak:.0f} (cap {cap}), "
          f"{busy:.0f} answered busy, client peak {client.budget.peak} (cap {held})")


async def test_a_push_turned_away_busy_is_not_remembered(edge_agents) -> None:  # noqa: F811
    """A raw client, without the operator's patience: the 503 says when to come back, and the
    same body is then served (the agent did not record it as refused)."""
    agent = edge_agents("agent", extra_args=("--max-body-bytes-in-flight", str(4 * MIB)))
    workers = [await asyncio.to_thread(_filler, f"ns.r{i}", 3 * MIB) for i in range(6)]
    bodies = {b.worker: deployment(b).model_dump_json(by_alias=True).encode() for b in workers}
    seen: list[int] = []

    async def push(s: aiohttp.ClientSession, worker: str) -> None:
        while True:
            async with s.put(
                f"{agent.api_url}/v1/workers/{worker}", data=bodies[worker], headers=agent.headers()
            ) as r:
                seen.append(r.status)
                if r.status != 503:
                    assert r.status == 200, await r.text()
                    return
                assert r.headers["Retry-After"] == "1"
                assert "--max-body-bytes-in-flight" in (await r.json())["error"]
            await asyncio.sleep(1)

    async with aiohttp.ClientSession() as s:
        await asyncio.wait_for(asyncio.gather(*(push(s, w) for w in bodies)), 240)
    assert 503 in seen and seen.count(200) == len(bodies), seen
