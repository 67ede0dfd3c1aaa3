"""Cron triggers at one location (`edge/cron.py`), a real agent with real workerd: an
occurrence runs the Worker's `scheduled()` handler while the operator's lease holds (a
loaded Worker's, and a Durable Object Worker's in its own cell, whose run leaves a count a
request then reads), is retried when it throws, and is skipped once the lease has lapsed.

Cron's unit is the minute, so this test takes about two and a half real minutes."""

from __future__ import annotations

import asyncio
import re
import time

import aiohttp
import pytest

from edgeplane.wire import BundleBinding
from tests.integration.edge_fixtures import (
    AgentProc,
    body_of,
    bundle,
    deployment,
    edge_agent,  # noqa: F401 (fixture)
)

pytestmark = pytest.mark.integration

# Throws unless workerd hands it the expression and a scheduledTime on a whole minute, so
# "ok" proves both arrive.
CHECKED = bundle("ns.tick", """export default {
  fetch() { return new Response("tick"); },
  scheduled(c) {
    if (c.cron !== "* * * * *" || c.scheduledTime % 60000 !== 0) throw new Error("bad " + c.cron);
  },
};""")
FAILING = bundle("ns.boom", """export default {
  fetch() { return new Response("boom"); },
  scheduled() { throw new Error("boom"); },
};""")

# A Durable Object Worker (its own cell, static services): each run counts in its object.
ROOM = bundle("ns.room", """import { DurableObject } from "cloudflare:workers";
export class Counter extends DurableObject {
  async fetch() {
    const n = ((await this.ctx.storage.get("n")) || 0) + 1;
    await this.ctx.storage.put("n", n);
    return new Response(String(n));
  }
}
export default {
  fetch(request, env) { return env.ROOM.get(env.ROOM.idFromName("cron")).fetch(request); },
  async scheduled(c, env) { await env.ROOM.get(env.ROOM.idFromName("cron")).fetch("http://x/"); },
};""", bindings=(BundleBinding(name="ROOM", durableObjectClass="Counter"),))


async def _call(s: aiohttp.ClientSession, agent: AgentProc, method: str, path: str,
                body: object = None) -> dict:  # type: ignore[type-arg]
    async with s.request(method, f"{agent.api_url}{path}", json=body,
                         headers=agent.headers()) as r:
        assert r.status == 200, await r.text()
        return dict(await r.json())


async def _runs(s: aiohttp.ClientSession, agent: AgentProc) -> dict[tuple[str, str], float]:
    async with s.get(f"{agent.api_url}/metrics", headers=agent.headers()) as r:
        text = await r.text()
    found = re.findall(r'edgeplane_agent_cron_runs_total\{outcome="(\w+)",worker="([\w.]+)"\} '
                       r"([0-9.]+)", text)
    return {(w, o): float(n) for o, w, n in found}


async def _until(check, seconds: float) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while not await check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(1)


async def test_fires_while_the_lease_holds_and_not_after(edge_agent: AgentProc) -> None:  # noqa: F811
    every_minute = ["* * * * *"]
    async with aiohttp.ClientSession() as s:
        room = deployment(ROOM, routes=("room.test/*",))
        for d in (deployment(CHECKED), deployment(FAILING), room):
            async with s.put(f"{edge_agent.api_url}/v1/workers/{d.worker}",
                             data=body_of(d), headers=edge_agent.headers()) as r:
                assert r.status == 200, await r.text()
        lease = {"ttlSeconds": 300, "schedules": {
            "ns.tick": every_minute, "ns.boom": every_minute, "ns.room": every_minute}}
        granted = await _call(s, edge_agent, "PUT", "/v1/cron", lease)
        assert granted["schedules"] == ["ns.boom", "ns.room", "ns.tick"]

        async def ran() -> bool:
            runs = await _runs(s, edge_agent)
            wanted = [("ns.tick", "ok"), ("ns.boom", "exception"), ("ns.room", "ok")]
            return min(runs.get(k, 0) for k in wanted) >= 1

        await _until(ran, 150)  # the next minute, then the failing one's retries (~30 s)
        runs = await _runs(s, edge_agent)
        state = await _call(s, edge_agent, "GET", "/v1/cron")
        tick, boom = state["last"]["ns.tick"], state["last"]["ns.boom"]
        assert (tick["outcome"], tick["attempts"], tick["cron"]) == ("ok", 1, "* * * * *")
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:00Z", tick["scheduledTime"])
        # Retried 2, 4, 8, 16 s apart; the next retry (32 s) would pass the next minute.
        assert (boom["outcome"], boom["attempts"]) == ("exception", 5)
        item = await _call(s, edge_agent, "GET", "/v1/workers/ns.tick")
        assert item["cron"] == tick
        async with s.get(f"{edge_agent.http_url}/", headers={"Host": "room.test"}) as r:
            assert (r.status, await r.text()) == (200, "2")  # the run's count, then this one

        # The operator stops renewing: the lease lapses and nothing more runs.
        await _call(s, edge_agent, "PUT", "/v1/cron", {**lease, "ttlSeconds": 1})
        before = runs
        await asyncio.sleep(62 - time.time() % 60 + 10)  # past the next occurrence
        assert await _runs(s, edge_agent) == before
        # A new lease replaces the last: ns.boom is no longer scheduled here.
        tick_only = {"ns.tick": every_minute}
        new = {**lease, "schedules": tick_only, "holder": "op-1", "seq": 7}
        await _call(s, edge_agent, "PUT", "/v1/cron", new)
        assert (await _call(s, edge_agent, "GET", "/v1/cron"))["schedules"] == tick_only
        # One of the same holder sent before it (it waited in the agent's socket) is stale.
        async with s.put(f"{edge_agent.api_url}/v1/cron", headers=edge_agent.headers(),
                         json={**lease, "holder": "op-1", "seq": 6}) as r:
            assert r.status == 409, await r.text()
        assert (await _call(s, edge_agent, "GET", "/v1/cron"))["schedules"] == tick_only
        # Another holder (an operator started since) is not ordered against it.
        await _call(s, edge_agent, "PUT", "/v1/cron", {**lease, "holder": "op-2", "seq": 1})
        assert set((await _call(s, edge_agent, "GET", "/v1/cron"))["schedules"]) == {
            "ns.tick", "ns.boom", "ns.room"}
