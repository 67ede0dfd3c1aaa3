"""The edge agent with real workerd: routing, traffic split, overrides, the shared route table."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import pytest

from tests.integration.edge_fixtures import (
    AgentProc,
    body_of,
    deployment,
    edge_agent,  # noqa: F401 (fixture)
    edge_agents,  # noqa: F401 (fixture)
    text_worker,
)

pytestmark = pytest.mark.integration
TABLE = json.loads((Path(__file__).parents[1] / "data" / "route_cases.json").read_text())


async def put(s: aiohttp.ClientSession, agent: AgentProc, d) -> tuple[int, dict]:  # type: ignore[no-untyped-def]
    async with s.put(
        f"{agent.api_url}/v1/workers/{d.worker}", data=body_of(d), headers=agent.headers()
    ) as r:
        return r.status, await r.json()


async def get(s: aiohttp.ClientSession, agent: AgentProc, host: str, path: str, **h: str):  # type: ignore[no-untyped-def]
    async with s.get(f"{agent.http_url}{path}", headers={"Host": host, **h}) as r:
        return r.status, await r.text()


async def test_host_and_path_routes(edge_agent: AgentProc) -> None:  # noqa: F811
    a = text_worker("ns.site", "site")
    b = text_worker("ns.api", "api")
    async with aiohttp.ClientSession() as s:
        assert (await put(s, edge_agent, deployment(a, routes=("www.example.com/*",))))[0] == 200
        st, body = await put(s, edge_agent, deployment(b, routes=("*example.com/api/*",)))
        assert (st, body["changed"]) == (200, True)
        assert await get(s, edge_agent, "www.example.com", "/") == (200, "site")
        assert await get(s, edge_agent, "WWW.example.com", "/about") == (200, "site")
        # Host specificity first: the exact host beats the wildcard host with a longer path.
        assert await get(s, edge_agent, "www.example.com", "/api/x") == (200, "site")
        assert await get(s, edge_agent, "example.com", "/api/x") == (200, "api")
        assert await get(s, edge_agent, "myexample.com", "/api/") == (200, "api")
        st, text = await get(s, edge_agent, "nothing.test", "/")
        assert st == 404 and "no route matches nothing.test/" in text
        # The same PUT again is a no-op.
        st, body = await put(s, edge_agent, deployment(b, routes=("*example.com/api/*",)))
        assert (st, body["changed"]) == (200, False)
        # A route another Worker owns is a conflict naming the owner.
        st, body = await put(
            s, edge_agent, deployment(text_worker("ns.x", "x"), routes=("www.example.com/*",))
        )
        assert st == 409 and "ns.site" in body["error"]
        async with s.get(f"{edge_agent.api_url}/v1/workers", headers=edge_agent.headers()) as r:
            inv = {i["worker"]: i for i in (await r.json())["workers"]}
        assert set(inv) == {"ns.site", "ns.api"}
        assert inv["ns.api"]["primary"] == b.version and inv["ns.api"]["state"] == "serving"


async def test_route_table_through_router(edge_agent: AgentProc) -> None:  # noqa: F811
    """Every case of tests/data/route_cases.json, answered by the real JS router."""
    async with aiohttp.ClientSession() as s:
        for i, pattern in enumerate(TABLE["patterns"]):
            d = deployment(text_worker(f"rt.w{i}", pattern), routes=(pattern,))
            assert (await put(s, edge_agent, d))[0] == 200
        for case in TABLE["cases"]:
            u = urlsplit(case["url"])
            hdr = {"X-Forwarded-Proto": u.scheme}  # the socket speaks http; a proxy says https
            st, text = await get(
                s, edge_agent, u.netloc, u.path + (f"?{u.query}" if u.query else ""), **hdr
            )
            if case["expect"] is None:
                assert st == 404, case
            else:
                assert (st, text) == (200, case["expect"]), case


async def test_percent_split_sticky_and_override(edge_agent: AgentProc) -> None:  # noqa: F811
    v1 = text_worker("ns.split", "v1")
    v2 = text_worker("ns.split", "v2")
    d = deployment(v1, v2, routes=("split.test/*",), traffic=((v1.version, 70), (v2.version, 30)))  # type: ignore[arg-type]
    async with aiohttp.ClientSession() as s:
        assert (await put(s, edge_agent, d))[0] == 200
        seen: Counter[str] = Counter()
        for _ in range(2000):
            seen[(await get(s, edge_agent, "split.test", "/"))[1]] += 1
        assert abs(seen["v1"] / 2000 * 100 - 70) <= 5, seen
        # A version key keeps one client on one version.
        for key in ("alice", "bob", "carol"):
            got = {
                (await get(s, edge_agent, "split.test", "/", **{"Edgeplane-Version-Key": key}))[1]
                for _ in range(20)
            }
            assert len(got) == 1
        # The override header picks a version of the deployment, full id or a prefix.
        for v, want in ((v2.version, "v2"), (v1.version, "v1")):
            hdr = {"Edgeplane-Version-Overrides": f'ns.split="{v}"'}
            assert {(await get(s, edge_agent, "split.test", "/", **hdr))[1] for _ in range(30)} == {
                want
            }
        hdr = {"Edgeplane-Version-Overrides": f'ns.split="{v2.version[:12]}"'}  # type: ignore[index]
        assert {(await get(s, edge_agent, "split.test", "/", **hdr))[1] for _ in range(30)} == {
            "v2"
        }


async def put_exclusions(
    s: aiohttp.ClientSession, agent: AgentProc, namespace: str, patterns: list[str]
) -> tuple[int, dict]:
    async with s.put(
        f"{agent.api_url}/v1/exclusions/{namespace}",
        json={"patterns": patterns},
        headers=agent.headers(),
    ) as r:
        return r.status, await r.json()


async def test_a_route_without_a_worker_bypasses_less_specific_routes(edge_agents) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """Cloudflare's example: `*example.com/images/cat.png` with no Worker, under a Worker's
    `*example.com/images/*`. Kept across a SIGKILL of the agent; refused where it would take
    a route a Worker has, and a Worker's route refused where it is excluded."""
    agent = edge_agents("a", extra_args=("--bypass-status", "410"))
    site = deployment(text_worker("ns.site", "site"), routes=("*example.com/images/*",))
    async with aiohttp.ClientSession() as s:
        assert (await put(s, agent, site))[0] == 200
        st, body = await put_exclusions(s, agent, "static", ["*example.com/images/cat.png"])
        assert (st, body) == (200, {"changed": True, "namespace": "static"})
        async with s.get(f"{agent.http_url}/images/cat.png", headers={"Host": "example.com"}) as r:
            assert r.status == 410 and r.headers["edgeplane-bypass"] == "1"
            assert "bypasses Workers" in await r.text() and "namespace static" in await r.text()
        assert await get(s, agent, "example.com", "/images/dog.png") == (200, "site")
        # The same set again changes nothing.
        assert (await put_exclusions(s, agent, "static", ["*example.com/images/cat.png"]))[1][
            "changed"
        ] is False
        st, body = await put_exclusions(s, agent, "other", ["*EXAMPLE.com/images/*"])
        assert st == 409 and "served by Worker ns.site" in body["error"]
        cat = deployment(text_worker("ns.cat", "cat"), routes=("*example.com/images/cat.png",))
        st, body = await put(s, agent, cat)
        assert st == 409
        assert "excluded by a route without a Worker in namespace static" in body["error"]
    agent.kill()
    again = edge_agents("a", http_addr=agent.http_addr, api_addr=agent.api_addr,
                        extra_args=("--bypass-status", "410"))
    async with aiohttp.ClientSession() as s:
        assert (await get(s, again, "example.com", "/images/cat.png"))[0] == 410
        async with s.get(f"{again.api_url}/v1/exclusions", headers=again.headers()) as r:
            assert await r.json() == {"exclusions": {"static": ["*example.com/images/cat.png"]}}
        # Dropping the namespace's set gives the path back to the less specific route.
        assert (await put_exclusions(s, again, "static", []))[0] == 200
        assert await get(s, again, "example.com", "/images/cat.png") == (200, "site")
        st, body = await put_exclusions(s, again, "static", ["example.com/*?q=1"])
        assert st == 422 and "patterns.0" in body["error"]
