"""The data plane with real workerd: deploys restart no process, a tenant's hang is
contained to its cell and quarantined, the data plane outlives the agent, and what cannot
serve is refused before the PUT is answered."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import statistics
import time
from pathlib import Path

import aiohttp
import pytest

from edgeplane.wire import BundleBinding
from tests.integration.edge_fixtures import (
    AgentProc,
    bundle,
    deployment,
    edge_agent,  # noqa: F401 (fixture)
    edge_agents,  # noqa: F401 (fixture)
    text_worker,
)
from tests.integration.test_edge_agent import get, put

pytestmark = pytest.mark.integration

LOOPS_ON_PATH = """export default { async fetch(request) {
  if (new URL(request.url).pathname === "/loop") { while (true) {} }
  return new Response("a");
} };
"""


def processes(agent: AgentProc) -> dict[str, int]:
    """Process key ("front", cell keys) → pid, as the agent lists them."""
    doc = json.loads((agent.state_dir / "run" / "dataplane.json").read_text())
    return {"front": doc["front"]["pid"], **{k: c["pid"] for k, c in doc["cells"].items()}}


def _running(pid: int) -> bool:
    """Whether `pid` runs (a zombie, dead but not yet reaped by its new parent, does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


class Load:
    """Clients requesting `host` over and over until stopped: failures and latencies."""

    def __init__(self, agent: AgentProc, host: str, clients: int = 4) -> None:
        self.agent, self.host = agent, host
        self.failures: list[str] = []
        self.latencies: list[float] = []
        self.bodies: list[str] = []
        self._stop = asyncio.Event()
        self._tasks = [asyncio.create_task(self._client()) for _ in range(clients)]

    async def _client(self) -> None:
        async with aiohttp.ClientSession() as c:
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    st, text = await get(c, self.agent, self.host)
                except aiohttp.ClientError as e:
                    self.failures.append(repr(e))
                    continue
                self.latencies.append(time.monotonic() - started)
                if st != 200:
                    self.failures.append(f"{st} {text}")
                self.bodies.append(text)

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)


# Answers with an id its isolate drew on its first request: a cold start shows as a new id.
ISOLATE_ID = """let born = null;
export default { fetch() { born ??= crypto.randomUUID(); return new Response(born); } };
"""


async def test_deploys_restart_nothing_and_never_touch_other_tenants(edge_agent: AgentProc) -> None:  # noqa: F811
    """20 redeploys of one Worker while another namespace's Worker is under load: the
    other's answers never fail and come from one isolate throughout (never cold-started),
    with no more than 5 % of them above 5x its median latency (scheduler noise on a busy
    2-core machine; a restart would slow them all), and no workerd process restarts."""
    async with aiohttp.ClientSession() as s:
        for d in (
            deployment(bundle("quiet.w", ISOLATE_ID), routes=("quiet.test/*",)),
            deployment(text_worker("busy.w", "v0"), routes=("busy.test/*",)),
        ):
            assert (await put(s, edge_agent, d))[0] == 200
        before = processes(edge_agent)
        for _ in range(50):  # warm the isolate and the connections' paths
            await get(s, edge_agent, "quiet.test")
        load = Load(edge_agent, "quiet.test")
        await asyncio.sleep(0.5)
        for i in range(1, 21):
            d = deployment(text_worker("busy.w", f"v{i}"), routes=("busy.test/*",))
            assert (await put(s, edge_agent, d))[0] == 200
            assert await get(s, edge_agent, "busy.test") == (200, f"v{i}")
        await load.stop()
    assert load.failures == []
    assert len(set(load.bodies)) == 1, set(load.bodies)
    median = statistics.median(load.latencies)
    slow = [t for t in load.latencies if t > 5 * median]
    assert len(slow) <= len(load.latencies) // 20, (median, len(load.latencies), sorted(slow))
    assert processes(edge_agent) == before


async def test_a_hang_is_contained_replaced_and_quarantined(edge_agents) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """A Worker of namespace A loops forever on /loop. While it hangs its cell, namespace
    B's Worker (another cell) answers every request; the cell is replaced within 5 s (a
    Worker of A that shares the cell answers again); after 3 hangs the version is
    quarantined (502, the inventory says why); a new version lifts it."""
    agent = edge_agents("hang", extra_args=("--hang-timeout", "1"))
    looping = bundle("team-a.loop", LOOPS_ON_PATH)
    async with aiohttp.ClientSession() as s:
        assert (await put(s, agent, deployment(looping, routes=("loop.test/*",))))[0] == 200
        for d in (
            deployment(text_worker("team-b.ok", "b"), routes=("b.test/*",)),
            deployment(text_worker("team-a.sibling", "sib"), routes=("sib.test/*",)),
        ):
            assert (await put(s, agent, d))[0] == 200
        await asyncio.sleep(0.6)  # written in the background
        cells = json.loads((agent.state_dir / "run" / "placement.json").read_text())["cells"]
        assert cells["team-a.loop"] != cells["team-b.ok"]
        for n in range(1, 4):
            load = Load(agent, "b.test")
            t0 = time.monotonic()
            st, body = await get(
                s, agent, "loop.test", "/loop", timeout=aiohttp.ClientTimeout(total=30)
            )
            assert st == 502, body  # the cell was killed under it
            await _until(lambda: _get_ok(agent, "sib.test"), 5 - (time.monotonic() - t0))
            await load.stop()
            assert load.failures == [] and len(load.bodies) > 10, load.failures[:3]
            if n < 3:
                assert await get(s, agent, "loop.test") == (200, "a")
        st, body = await get(s, agent, "loop.test")
        assert st == 502 and "quarantined" in body and "hung its cell 3 times" in body, body
        item = await _item(s, agent, "team-a.loop")
        assert set(item["quarantined"]) == {looping.version}
        # A new version is not quarantined.
        fixed = bundle(
            "team-a.loop", 'export default { fetch() { return new Response("fixed"); } };'
        )
        assert (await put(s, agent, deployment(fixed, routes=("loop.test/*",))))[0] == 200
        assert await get(s, agent, "loop.test") == (200, "fixed")
        assert (await _item(s, agent, "team-a.loop"))["quarantined"] == {}


async def test_the_data_plane_outlives_a_sigkilled_agent(edge_agents) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """SIGKILL the agent under load: no request fails while it is down or after it is back;
    the restarted agent adopts the running processes (same pids) and its readiness says
    what the data plane answers."""
    agent = edge_agents("outlive")
    async with aiohttp.ClientSession() as s:
        assert (
            await put(s, agent, deployment(text_worker("ns.live", "live"), routes=("live.test/*",)))
        )[0] == 200
        before = processes(agent)
        load = Load(agent, "live.test")
        await asyncio.sleep(0.3)
        await asyncio.to_thread(agent.kill_agent)
        served_while_down = len(load.bodies)
        await asyncio.sleep(1.5)
        assert len(load.bodies) > served_while_down + 10
        again = edge_agents("outlive", http_addr=agent.http_addr, api_addr=agent.api_addr)
        await asyncio.sleep(0.5)
        await load.stop()
        assert load.failures == []
        assert processes(again) == before
        d = deployment(text_worker("ns.live", "after"), routes=("live.test/*",))
        assert (await put(s, again, d))[0] == 200
        assert await get(s, again, "live.test") == (200, "after")
        async with s.get(f"{again.api_url}/readyz") as r:
            assert r.status == 200


async def test_cells_of_another_release_are_replaced_not_adopted(edge_agents) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """An agent upgraded over a running data plane: cells an older release started run that
    release's host code (which read modules from the code files, not from blobs), so they
    are replaced; the front is adopted as before."""
    agent = edge_agents("upgrade")
    async with aiohttp.ClientSession() as s:
        d = deployment(text_worker("ns.up", "up"), routes=("up.test/*",))
        assert (await put(s, agent, d))[0] == 200
        before = processes(agent)
        await asyncio.to_thread(agent.kill_agent)
        # What an older agent left: its dataplane file names no host code generation.
        path = agent.state_dir / "run" / "dataplane.json"
        doc = json.loads(path.read_text())
        del doc["host"]
        path.write_text(json.dumps(doc))
        again = edge_agents("upgrade", http_addr=agent.http_addr, api_addr=agent.api_addr)
        after = processes(again)
        assert after["front"] == before["front"]
        cells = set(before) - {"front"}
        assert cells and all(after.get(k) != before[k] for k in cells), (before, after)
        for k in cells:  # the old ones are gone, not left running beside the new
            assert not _running(before[k]), k
        for _ in range(100):
            if await get(s, again, "up.test") == (200, "up"):
                break
            await asyncio.sleep(0.1)
        assert await get(s, again, "up.test") == (200, "up")


async def test_refused_before_acceptance_and_missing_services_named(edge_agent: AgentProc) -> None:  # noqa: F811
    """A Worker without a fetch handler is refused with the fix; a service binding to a
    Worker that is not here is listed in the inventory; once that Worker arrives, a call
    through the binding reaches it across cells."""
    async with aiohttp.ClientSession() as s:
        none = bundle("ns.none", "export const x = 1;\nexport default {};")
        st, body = await put(s, edge_agent, deployment(none, routes=("none.test/*",)))
        assert st == 422 and "registers no fetch handler" in body["error"], body
        caller_js = (
            "export default { async fetch(req, env) { return env.API.fetch('http://api/x'); } };"
        )
        caller = bundle(
            "front-ns.caller",
            caller_js,
            bindings=(BundleBinding(name="API", service="back-ns.api"),),
        )
        assert (await put(s, edge_agent, deployment(caller, routes=("caller.test/*",))))[0] == 200
        item = await _item(s, edge_agent, "front-ns.caller")
        assert item["missingServices"] == [{"binding": "API", "worker": "back-ns.api"}]
        assert (await get(s, edge_agent, "caller.test"))[0] == 503
        api = deployment(text_worker("back-ns.api", "from the api"), routes=("api.test/*",))
        assert (await put(s, edge_agent, api))[0] == 200
        assert await get(s, edge_agent, "caller.test") == (200, "from the api")
        assert (await _item(s, edge_agent, "front-ns.caller"))["missingServices"] == []


async def _item(s: aiohttp.ClientSession, agent: AgentProc, worker: str) -> dict:  # type: ignore[type-arg]
    async with s.get(f"{agent.api_url}/v1/workers/{worker}", headers=agent.headers()) as r:
        assert r.status == 200
        return await r.json()


async def _get_ok(agent: AgentProc, host: str) -> bool:
    async with aiohttp.ClientSession() as s:
        try:
            st, _ = await get(s, agent, host, timeout=aiohttp.ClientTimeout(total=1))
        except (aiohttp.ClientError, TimeoutError):
            return False
        return st == 200


async def _until(check, seconds: float) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + max(seconds, 0.1)
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"not healthy again within the time left ({seconds:.1f}s)")


async def test_the_location_s_own_sockets_refuse_other_local_callers(edge_agent: AgentProc) -> None:  # noqa: F811
    """Tenant code cannot reach loopback, but other local processes can: the front's admin
    and internal sockets and every cell answer only calls carrying the location's internal
    key (never a public request's headers, which the front strips)."""
    async with aiohttp.ClientSession() as s:
        d = deployment(text_worker("ns.k", "k"), routes=("k.test/*",))
        assert (await put(s, edge_agent, d))[0] == 200
        doc = json.loads((edge_agent.state_dir / "run" / "dataplane.json").read_text())
        front, cell = doc["front"]["ports"], doc["cells"]["c0"]["ports"]["http"]
        forged = {"edgeplane-internal": "x" * 43, "edgeplane-version": d.primary}
        for url, method in (
            (f"http://127.0.0.1:{front['admin']}/counts", "GET"),
            (f"http://127.0.0.1:{front['admin']}/state", "PUT"),
            (f"http://127.0.0.1:{front['internal']}/service", "POST"),
            (f"http://127.0.0.1:{front['internal']}/kv", "POST"),
            (f"http://127.0.0.1:{cell}/", "GET"),
            (f"http://127.0.0.1:{cell}/__edgeplane/ping", "GET"),
        ):
            for headers in ({}, forged):
                async with s.request(method, url, headers=headers, data=b"{}") as r:
                    assert r.status == 403, (url, headers, r.status)
        # The key a public request sends is not the front's to pass on.
        key = (edge_agent.state_dir / "internal-key").read_text()
        headers = {"Host": "k.test", "edgeplane-internal": key}
        async with s.get(edge_agent.http_url, headers=headers) as r:
            assert (r.status, await r.text()) == (200, "k")


async def test_supervised_agent_is_started_again_and_adopts(edge_agents) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """`--supervise` (a container's main process): the agent SIGKILLed under load is started
    again by the supervisor, adopts the running workerds, and nothing failed meanwhile."""
    with socket.socket() as free:  # the restarted agent listens where the first one did
        free.bind(("127.0.0.1", 0))
        api = f"127.0.0.1:{free.getsockname()[1]}"
    agent = edge_agents("sup", api_addr=api, extra_args=("--supervise",))
    endpoints = agent.state_dir / "run" / "endpoints.json"
    first = json.loads(endpoints.read_text())["pid"]
    assert first != agent.popen.pid  # the agent is the supervisor's child
    async with aiohttp.ClientSession() as s:
        d = deployment(text_worker("ns.sup", "sup"), routes=("sup.test/*",))
        assert (await put(s, agent, d))[0] == 200
        before = processes(agent)
        load = Load(agent, "sup.test")
        await asyncio.sleep(0.3)
        os.kill(first, signal.SIGKILL)

        async def restarted() -> bool:
            try:
                pid = json.loads(endpoints.read_text())["pid"]
            except (OSError, ValueError):
                return False
            if pid == first:
                return False
            async with aiohttp.ClientSession() as c, c.get(f"{agent.api_url}/readyz") as r:
                return r.status == 200

        await _until(restarted, 30)
        await asyncio.sleep(0.3)
        await load.stop()
        assert load.failures == [] and len(load.bodies) > 20
        assert processes(agent) == before
        d = deployment(text_worker("ns.sup", "again"), routes=("sup.test/*",))
        assert (await put(s, agent, d))[0] == 200
        assert await get(s, agent, "sup.test") == (200, "again")


WEBSOCKET_ECHO = """export default { async fetch(request) {
  if (request.headers.get("upgrade") !== "websocket") return new Response("plain");
  const [client, server] = Object.values(new WebSocketPair());
  server.accept();
  server.addEventListener("message", (e) => server.send("echo " + e.data));
  return new Response(null, { status: 101, webSocket: client });
} };
"""


async def test_an_open_websocket_outlives_deploys(edge_agent: AgentProc) -> None:  # noqa: F811
    """A WebSocket through the front and a cell stays open while another Worker is
    redeployed and while its own Worker gets a new version (the old isolate keeps it)."""
    async with aiohttp.ClientSession() as s:
        for d in (
            deployment(bundle("ns.ws", WEBSOCKET_ECHO), routes=("ws.test/*",)),
            deployment(text_worker("other.o", "o0"), routes=("o.test/*",)),
        ):
            assert (await put(s, edge_agent, d))[0] == 200
        async with s.ws_connect(edge_agent.http_url + "/", headers={"Host": "ws.test"}) as ws:
            for i in range(5):
                await ws.send_str(f"m{i}")
                assert await ws.receive_str() == f"echo m{i}"
                d = deployment(text_worker("other.o", f"o{i + 1}"), routes=("o.test/*",))
                assert (await put(s, edge_agent, d))[0] == 200
            d = deployment(bundle("ns.ws", WEBSOCKET_ECHO + "// v2"), routes=("ws.test/*",))
            assert (await put(s, edge_agent, d))[0] == 200
            await ws.send_str("after")
            assert await ws.receive_str() == "echo after"
