"""Live logs with a real agent and workerd: a Worker's console lines and uncaught exceptions
reach `GET /v1/workers/{name}/tail` within 2 s, its secret values and credential headers
redacted; a reader that cannot keep up is told how many events were dropped."""

from __future__ import annotations

import asyncio
import json
import socket
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


BIG = """
export default {
  async fetch(request) {
    for (let i = 0; i < 16; i++) console.log(String(i).padEnd(4000, "x"));
    return new Response("ok");
  },
};
"""


async def test_a_stalled_reader_holds_up_nothing(tmp_path: Path) -> None:
    """A reader that stops reading (a tiny receive buffer, never read) while ~60 KiB events
    flood in: every request is still answered, another reader still gets its events within
    2 s, and the stalled one, read at last, is told how many it lost."""
    agent = start_agent(tmp_path / "a", extra_args=("--tail-rate", "100000"))
    try:
        d = deployment(bundle("ns.big", BIG), routes=("big.example/*",))
        async with aiohttp.ClientSession() as s:
            assert (await put(s, agent, d))[0] == 200
            stalled, _writer = await _stalled_reader(agent, "ns.big")  # kept: it closes when freed
            url = f"{agent.api_url}/v1/workers/ns.big/tail"
            async with s.get(url, headers=agent.headers()) as resp:
                it = lines(resp)
                await until(it, "ready", 10)
                for i in range(300):  # ~18 MB of events: far beyond every buffer
                    async with s.get(f"{agent.http_url}/{i}", headers={"Host": "big.example"}) as r:
                        assert r.status == 200
                    if i % 100 == 99:  # the live reader keeps up meanwhile
                        await until(it, "event", 2)
            got = await asyncio.wait_for(_read_until(stalled, b'"type": "dropped"'), 30)
        assert b'"dropped"' in got
    finally:
        agent.stop()


async def _stalled_reader(
    agent: AgentProc, worker: str
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A tail request on a socket with a tiny receive buffer that the test does not read."""
    host, port = agent.api_addr.rsplit(":", 1)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (host, int(port)))
    reader, writer = await asyncio.open_connection(sock=sock, limit=1 << 20)
    writer.write(
        f"GET /v1/workers/{worker}/tail HTTP/1.1\r\nHost: {host}\r\n"
        f"Authorization: Bearer {agent.token}\r\n\r\n".encode()
    )
    await writer.drain()
    return reader, writer


async def _read_until(reader: asyncio.StreamReader, marker: bytes) -> bytes:
    seen = b""
    while marker not in seen[-(1 << 17) :]:
        chunk = await reader.read(1 << 16)
        if not chunk:
            break
        seen = seen[-(1 << 17) :] + chunk
    return seen[-(1 << 17) :]


async def test_tailing_survives_a_sigkilled_agent(tmp_path: Path) -> None:
    """The cells outlive a SIGKILLed agent and the next agent adopts them, with the sink's
    port in their configs: it binds that port again, so tailing works with no restart."""
    agent = start_agent(tmp_path / "a")
    again: AgentProc | None = None
    try:
        async with aiohttp.ClientSession() as s:
            assert (await put(s, agent, tail_worker()))[0] == 200
            async with s.get(f"{agent.http_url}/x", headers={"Host": "tailed.example"}) as r:
                assert r.status == 200  # the version is loaded, its tail stub set
            agent.kill_agent()
            again = start_agent(tmp_path / "a", http_addr=agent.http_addr)
            url = f"{again.api_url}/v1/workers/ns.tailed/tail"
            async with s.get(url, headers=again.headers()) as resp:
                it = lines(resp)
                await until(it, "ready", 10)
                async with s.get(f"{again.http_url}/y", headers={"Host": "tailed.example"}):
                    pass
                event = await until(it, "event", 2)
        assert event["request"]["url"] == "http://tailed.example/y"  # type: ignore[index]
    finally:
        (again or agent).stop()


DO_JS = """
import { DurableObject } from "cloudflare:workers";
export class Room extends DurableObject {
  async fetch() { return new Response("room"); }
}
export default {
  async fetch(request, env) {
    console.log("from a Durable Object Worker", env.KEY);
    return env.ROOM.get(env.ROOM.idFromName("a")).fetch(request);
  },
};
"""


async def test_a_durable_object_workers_logs_arrive(edge_agent: AgentProc) -> None:  # noqa: F811
    """A Durable Object Worker runs as static services in a cell of its own, not through the
    loader: its versions name the same Tail entrypoint in their config."""
    b = bundle(
        "ns.room",
        DO_JS,
        bindings=(
            BundleBinding(name="ROOM", durableObjectClass="Room"),
            BundleBinding(name="KEY", secret=SECRET),
        ),
    )
    async with aiohttp.ClientSession() as s:
        assert (await put(s, edge_agent, deployment(b, routes=("room.example/*",))))[0] == 200
        url = f"{edge_agent.api_url}/v1/workers/ns.room/tail"
        async with s.get(url, headers=edge_agent.headers()) as resp:
            it = lines(resp)
            await until(it, "ready", 10)
            async with s.get(f"{edge_agent.http_url}/", headers={"Host": "room.example"}) as r:
                assert r.status == 200 and await r.text() == "room"

            async def events() -> list[dict[str, object]]:
                # The Durable Object's own invocation is an event too (without logs), in
                # either order with the Worker's.
                return [await until(it, "event", 2), await until(it, "event", 2)]

            got = await asyncio.wait_for(events(), 3)
    (event,) = [e for e in got if e["logs"]]
    assert event["logs"][0]["message"] == ["from a Durable Object Worker", "[redacted]"]  # type: ignore[index]
    assert {e["version"] for e in got} == {b.version}
