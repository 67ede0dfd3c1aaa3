"""Live logs with a real agent and workerd: a Worker's console lines and uncaught exceptions
reach `GET /v1/workers/{name}/tail` within 2 s, its secret values and credential headers
redacted; a reader that cannot keep up is told how many events were dropped."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from edgeplane.wire import BundleBinding
from tests.integration.edge_fixtures import (
    AgentProc,
    bundle,
    deployment,
    edge_agent,  # noqa: F401 (fixture)
    start_agent,
)
from tests.integration.test_edge_agent import put

pytestmark = pytest.mark.integration

SECRET = "s3cr3t-value-9f8e7d6c5b4a"
JS = """
export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    console.log("hello from tail", url.pathname, "key=" + env.KEY);
    if (url.pathname === "/boom") throw new Error("kaboom " + env.KEY);
    return new Response("ok");
  },
};
"""


def tail_worker() -> object:
    b = bundle("ns.tailed", JS, bindings=(BundleBinding(name="KEY", secret=SECRET),))
    return deployment(b, routes=("tailed.example/*",))


async def lines(resp: aiohttp.ClientResponse) -> AsyncIterator[dict[str, object]]:
    async for raw in resp.content:
        yield json.loads(raw)


async def until(it: AsyncIterator[dict[str, object]], want: str, within: float) -> dict:  # type: ignore[type-arg]
    async def first() -> dict:  # type: ignore[type-arg]
        async for x in it:
            if x["type"] == want:
                return x
        raise AssertionError(f"stream ended before a {want!r} line")

    return await asyncio.wait_for(first(), within)


async def test_console_and_exception_arrive_redacted(edge_agent: AgentProc) -> None:  # noqa: F811
    async with aiohttp.ClientSession() as s:
        status, _ = await put(s, edge_agent, tail_worker())
        assert status == 200
        url = f"{edge_agent.api_url}/v1/workers/ns.tailed/tail"
        async with s.get(url, headers=edge_agent.headers()) as resp:
            assert resp.status == 200, await resp.text()
            it = lines(resp)
            await until(it, "ready", 10)
            t0 = time.monotonic()
            hdrs = {"Host": "tailed.example", "Authorization": "Bearer user-tok", "Cookie": "a=b"}
            async with s.get(f"{edge_agent.http_url}/hi", headers=hdrs) as r:
                assert r.status == 200
            ok = await until(it, "event", 2)
            async with s.get(f"{edge_agent.http_url}/boom", headers=hdrs) as r:
                assert r.status == 500
            boom = await until(it, "event", 2)
            elapsed = time.monotonic() - t0
    assert elapsed < 4, elapsed  # two round trips, each within 2 s
    text = json.dumps([ok, boom])
    assert SECRET not in text
    assert ok["outcome"] == "ok" and ok["status"] == 200
    assert ok["logs"][0]["message"] == ["hello from tail", "/hi", "key=[redacted]"]  # type: ignore[index]
    assert ok["request"]["headers"]["authorization"] == "[redacted]"  # type: ignore[index]
    assert ok["request"]["headers"]["cookie"] == "[redacted]"  # type: ignore[index]
    assert ok["request"]["url"] == "http://tailed.example/hi"  # type: ignore[index]
    assert boom["outcome"] == "exception"
    (exc,) = boom["exceptions"]  # type: ignore[misc]
    assert exc["name"] == "Error" and exc["message"] == "kaboom [redacted]"
    assert "at " in exc["stack"] and "index.js" in exc["stack"], exc["stack"]


async def test_filters_at_the_agent(edge_agent: AgentProc) -> None:  # noqa: F811
    """?status=error passes only the failed request; a bad parameter is refused by name."""
    async with aiohttp.ClientSession() as s:
        assert (await put(s, edge_agent, tail_worker()))[0] == 200
        base = f"{edge_agent.api_url}/v1/workers/ns.tailed/tail"
        async with s.get(base + "?status=bad", headers=edge_agent.headers()) as r:
            assert r.status == 422 and "status" in (await r.json())["error"]
        async with s.get(base.replace("tailed", "nope"), headers=edge_agent.headers()) as r:
            assert r.status == 404
        async with s.get(base) as r:
            assert r.status == 401  # behind the agent's authentication
        async with s.get(base + "?status=error", headers=edge_agent.headers()) as resp:
            it = lines(resp)
            await until(it, "ready", 10)
            for path in ("/a", "/boom"):
                async with s.get(
                    f"{edge_agent.http_url}{path}", headers={"Host": "tailed.example"}
                ):
                    pass
            event = await until(it, "event", 2)
    assert event["outcome"] == "exception"


async def test_flood_reports_dropped(tmp_path: Path) -> None:
    """At --tail-rate 2 a burst of 30 requests is sampled, and the reader is told so."""
    agent = start_agent(tmp_path / "a", extra_args=("--tail-rate", "2"))
    try:
        async with aiohttp.ClientSession() as s:
            assert (await put(s, agent, tail_worker()))[0] == 200
            url = f"{agent.api_url}/v1/workers/ns.tailed/tail"
            async with s.get(url, headers=agent.headers()) as resp:
                it = lines(resp)
                await until(it, "ready", 10)

                async def one(i: int) -> None:
                    async with s.get(f"{agent.http_url}/{i}", headers={"Host": "tailed.example"}):
                        pass

                await asyncio.gather(*(one(i) for i in range(30)))
                dropped = await until(it, "dropped", 5)
        assert dropped["dropped"] > 0  # type: ignore[operator]
    finally:
        agent.stop()
