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
