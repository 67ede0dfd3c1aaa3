"""Faults in the agent's state dir, injected for real between two runs of a real agent (real
workerd): a corrupt or truncated store file is set aside, counted and logged, and the rest
is served; a stored Durable Object Worker whose cell no longer starts is reported failed,
and neither stops the agent nor the watchdog's restart of the other cells."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time

import aiohttp
import pytest

from edgeplane.wire import BundleBinding
from tests.integration.edge_fixtures import (
    AgentProc,
    body_of,
    bundle,
    deployment,
    edge_agents,  # noqa: F401 (fixture)
    text_worker,
)
from tests.integration.test_edge_agent import STATE_BINDINGS, STATE_JS, get, put

pytestmark = pytest.mark.integration

SECRET = "s3cr3t-in-a-corrupt-file"


async def _workers(s: aiohttp.ClientSession, agent: AgentProc) -> dict[str, dict]:  # type: ignore[type-arg]
    async with s.get(f"{agent.api_url}/v1/workers", headers=agent.headers()) as r:
        assert r.status == 200
        return {i["worker"]: i for i in (await r.json())["workers"]}


async def _metrics(s: aiohttp.ClientSession, agent: AgentProc) -> dict[str, float]:
    async with s.get(f"{agent.api_url}/metrics", headers=agent.headers()) as r:
        text = await r.text()
    return {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("edgeplane_agent_store_corrupt_files_total{")
    }


def _log_since(agent: AgentProc, offset: int) -> list[str]:
    return agent.log.read_bytes()[offset:].decode(errors="replace").splitlines()


async def test_corrupt_and_truncated_store_files_are_set_aside(edge_agents) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    agent = edge_agents("a")
    one = deployment(
        bundle(
            "ns.one",
            "export default { fetch(r, env) { return new Response('one') } };",
            bindings=(BundleBinding(name="KEY", secret=SECRET),),
        ),
        routes=("one.test/*",),
    )
    two = deployment(text_worker("ns.two", "two"), routes=("two.test/*",))
    async with aiohttp.ClientSession() as s:
        for d in (one, two):
            assert (await put(s, agent, d))[0] == 200
        async with s.put(
            f"{agent.api_url}/v1/exclusions/ns",
            json={"patterns": ["static.test/*"]},
            headers=agent.headers(),
        ) as r:
            assert r.status == 200, await r.text()
    agent.stop()
    state = agent.state_dir
    # The faults: a deployment cut short mid-write (its secret before the cut), a code file
    # truncated to half, and the exclusions overwritten with garbage.
    raw = (state / "deployments" / "ns.one.json").read_bytes()
    cut = raw.index(SECRET.encode()) + len(SECRET)
    (state / "deployments" / "ns.one.json").write_bytes(raw[:cut])
    code = state / "code" / f"{two.primary}.json"
    whole = code.read_bytes()
    code.write_bytes(whole[: len(whole) // 2])
    (state / "exclusions.json").write_bytes(b"\x00\xffgarbage")
    offset = agent.log.stat().st_size

    again = edge_agents("a", http_addr=agent.http_addr, api_addr=agent.api_addr)
    async with aiohttp.ClientSession() as s:
        # The rest is served, from a code file made whole again.
        assert await get(s, again, "two.test") == (200, "two")
        assert code.read_bytes() == whole
        # The Worker whose file was bad is missing: the operator's drift check pushes it again.
        assert set(await _workers(s, again)) == {"ns.two"}
        assert (await get(s, again, "one.test"))[0] == 404
        assert await _metrics(s, again) == {
            'edgeplane_agent_store_corrupt_files_total{kind="deployment"}': 1.0,
            'edgeplane_agent_store_corrupt_files_total{kind="code"}': 1.0,
            'edgeplane_agent_store_corrupt_files_total{kind="exclusions"}': 1.0,
        }
        lines = [x for x in _log_since(again, offset) if "did not load" in x]
        assert len(lines) == 3, lines
        assert any("ns.one.json" in x and "not JSON" in x for x in lines), lines
        assert any(f"{two.primary}.json" in x and "truncated" in x for x in lines), lines
        assert not any(SECRET in x for x in _log_since(again, offset))
        # Moved aside, never removed.
        aside = list((state / "deployments").glob("ns.one.json.*.corrupt"))
        assert [p.read_bytes() for p in aside] == [raw[:cut]]
        assert len(list((state / "code").glob("*.corrupt"))) == 1
        assert len(list(state.glob("exclusions.json.*.corrupt"))) == 1
        # What the operator then does: push it again, and it serves.
        assert (await put(s, again, one))[0] == 200
        assert await get(s, again, "one.test") == (200, "one")


def _pids(agent: AgentProc) -> dict[str, int]:
    doc = json.loads((agent.state_dir / "run" / "dataplane.json").read_text())
    return {k: c["pid"] for k, c in doc["cells"].items()}


async def _until_ok(agent: AgentProc, host: str, seconds: float) -> str:
    """The first 200 answer's body from `host`, within `seconds`."""
    started = time.monotonic()
    async with aiohttp.ClientSession() as s:
        while time.monotonic() - started < seconds:
            try:
                st, body = await get(s, agent, host, timeout=aiohttp.ClientTimeout(total=1))
                if st == 200:
                    return body
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(0.1)
    raise AssertionError(f"{host} not served again within {seconds}s:\n{agent.log_tail()}")


async def test_a_stored_worker_that_no_longer_starts_leaves_the_rest_served(edge_agents) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    agent = edge_agents("a")
    broken = deployment(bundle("ns.a-do", STATE_JS, bindings=STATE_BINDINGS), routes=("a.test/*",))
    healthy = deployment(bundle("ns.b-do", STATE_JS, bindings=STATE_BINDINGS), routes=("b.test/*",))
    plain = deployment(text_worker("ns.plain", "plain"), routes=("plain.test/*",))
    async with aiohttp.ClientSession() as s:
        for d in (broken, healthy, plain):
            assert (await put(s, agent, d))[0] == 200
        assert await get(s, agent, "a.test") == (200, "1")
    # Every process SIGKILLed (nothing left to adopt, as after a node reboot), then the
    # runtime no longer loads what ns.a-do stored: here, a compatibility date it does not
    # support yet (what a workerd downgrade or a dropped flag does to a stored Worker).
    agent.kill()
    gone = bundle("ns.a-do", STATE_JS, bindings=STATE_BINDINGS, compatibility_date="2099-01-01")
    stored = deployment(gone, routes=("a.test/*",))
    (agent.state_dir / "deployments" / "ns.a-do.json").write_bytes(body_of(stored))
    again = edge_agents("a", http_addr=agent.http_addr, api_addr=agent.api_addr)
    async with aiohttp.ClientSession() as s:
        assert await get(s, again, "plain.test") == (200, "plain")
        assert await get(s, again, "b.test") == (200, "1")
        items = await _workers(s, again)
        assert items["ns.a-do"]["state"] == "failed", items["ns.a-do"]
        assert "did not start" in str(items["ns.a-do"]["message"])
        assert "2099" in str(items["ns.a-do"]["message"])  # workerd's own words
        assert items["ns.b-do"]["state"] == items["ns.plain"]["state"] == "serving"
    # The watchdog still restarts the healthy own cell, though the broken one (listed first)
    # fails each time it is tried.
    os.kill(_pids(again)["do:ns.b-do"], signal.SIGKILL)
    assert await _until_ok(again, "b.test", 15) == "2"  # its Durable Object's state kept
    async with aiohttp.ClientSession() as s:
        assert (await _workers(s, again))["ns.a-do"]["state"] == "failed"
    tried = [x for x in _log_since(again, 0) if "do:ns.a-do did not start" in x]
    assert 1 <= len(tried) <= 8, tried  # retried, backing off: not every watchdog pass
