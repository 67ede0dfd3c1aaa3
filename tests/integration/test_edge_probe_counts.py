"""The edge agent with real workerd: probes through the public socket (POST
/v1/workers/{name}/probe) and request counts per version that survive reloads."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from edgeplane.wire import BundleBinding, Deployment
from tests.integration.edge_fixtures import (
    AgentProc,
    body_of,
    bundle,
    deployment,
    edge_agent,  # noqa: F401 (fixture)
    signed,
    text_worker,
)

pytestmark = pytest.mark.integration
SECRET = "probe-secret-never-echoed"


async def put(s: aiohttp.ClientSession, agent: AgentProc, d: Deployment) -> tuple[int, Any]:
    async with s.put(
        f"{agent.api_url}/v1/workers/{d.worker}", data=body_of(d), headers=agent.headers()
    ) as r:
        return r.status, await r.json()


async def probe(
    s: aiohttp.ClientSession, agent: AgentProc, worker: str, **body: Any
) -> tuple[int, Any]:
    async with s.post(
        f"{agent.api_url}/v1/workers/{worker}/probe", json=body, headers=agent.headers()
    ) as r:
        return r.status, await r.json()


async def get(
    s: aiohttp.ClientSession, agent: AgentProc, host: str, path: str = "/", **h: str
) -> tuple[int, str]:
    async with s.get(f"{agent.http_url}{path}", headers={"Host": host, **h}) as r:
        return r.status, await r.text()


async def item(s: aiohttp.ClientSession, agent: AgentProc, worker: str) -> Any:
    async with s.get(f"{agent.api_url}/v1/workers/{worker}", headers=agent.headers()) as r:
        assert r.status == 200
        return await r.json()


async def request_samples(
    s: aiohttp.ClientSession, agent: AgentProc
) -> dict[tuple[str, ...], float]:
    async with s.get(f"{agent.api_url}/metrics", headers=agent.headers()) as r:
        text = await r.text()
    out = {}
    for fam in text_string_to_metric_families(text):
        for sm in fam.samples:
            if sm.name == "edgeplane_agent_requests_total":
                out[(sm.labels["worker"], sm.labels["version"], sm.labels["code"])] = sm.value
    return out


async def test_probe_reaches_the_named_version(edge_agent: AgentProc) -> None:  # noqa: F811
    ok = bundle(
        "ns.probe",
        "export default { fetch(req, env) { const u = new URL(req.url);"
        " return new Response(`ok ${req.headers.get('host')} ${u.pathname} ${env.KEY}`); } };",
        bindings=(BundleBinding(name="KEY", secret=SECRET),),
    )
    broken = bundle(
        "ns.probe",
        "export default { fetch() { return new Response('broken', { status: 500 }); } };",
    )
    dark = text_worker("ns.probe", "dark")  # in the deployment, 0 % of the traffic
    d = deployment(
        ok,
        broken,
        dark,
        routes=("*.probe.test/*", "probe.test/api/*", "http://plain.test/x/*"),
        traffic=((ok.version or "", 100), (broken.version or "", 0), (dark.version or "", 0)),
    )
    # Two versions and no split: only the primary gets traffic, the other one only by probe.
    first, second = text_worker("ns.other", "first"), text_worker("ns.other", "second")
    other = deployment(first, second, routes=("other.test/exact", "*wild.test/w/*"))
    async with aiohttp.ClientSession() as s:
        assert (await put(s, edge_agent, d))[0] == 200
        assert (await put(s, edge_agent, other))[0] == 200
        public = {(await get(s, edge_agent, "a.probe.test"))[1] for _ in range(20)}
        assert public == {f"ok a.probe.test / {SECRET}"}

        st, r = await probe(s, edge_agent, "ns.probe", version=ok.version, path="/healthz")
        assert st == 200, r
        assert r["status"] == 200 and r["error"] == ""
        # The wildcard host gets a probe label; the secret in the body is never echoed.
        assert r["body"] == "ok edgeplane-probe.probe.test /healthz [redacted]"
        assert r["url"] == "https://edgeplane-probe.probe.test/healthz"
        assert isinstance(r["elapsedMs"], float) and r["elapsedMs"] > 0

        st, r = await probe(s, edge_agent, "ns.probe", version=broken.version, path="/healthz")
        assert (st, r["status"], r["body"], r["error"]) == (200, 500, "broken", "")

        st, r = await probe(s, edge_agent, "ns.probe", version=dark.version, path="/")
        assert (st, r["status"], r["body"]) == (200, 200, "dark")

        # The most specific route whose path matches picks the host; a scheme in the pattern
        # is kept.
        st, r = await probe(s, edge_agent, "ns.probe", version=ok.version, path="/api/v?q=1")
        assert r["url"] == "https://probe.test/api/v?q=1"
        assert r["body"] == "ok probe.test /api/v [redacted]"
        st, r = await probe(s, edge_agent, "ns.probe", version=ok.version, path="/x/y")
        assert (r["url"], r["status"]) == ("http://plain.test/x/y", 200)
        # An explicit host; HEAD has no body.
        st, r = await probe(
            s,
            edge_agent,
            "ns.probe",
            version=ok.version,
            path="/h",
            host="deep.a.probe.test",
            method="HEAD",
            timeoutSeconds=2,
        )
        assert (st, r["status"], r["body"], r["url"]) == (
            200,
            200,
            "",
            "https://deep.a.probe.test/h",
        )

        # Without a split the non-primary version is reachable by probe too; *wild.test
        # means the bare host.
        st, r = await probe(s, edge_agent, "ns.other", version=second.version, path="/w/a")
        assert (r["status"], r["body"], r["url"]) == (200, "second", "https://wild.test/w/a")
        assert (await get(s, edge_agent, "wild.test", "/w/a"))[1] == "first"

        # Failures.
        st, r = await probe(s, edge_agent, "ns.nope", version=ok.version, path="/")
        assert st == 404 and "ns.nope" in r["error"]
        st, r = await probe(s, edge_agent, "ns.probe", version="0" * 64, path="/")
        assert st == 409 and "not served at this location" in r["error"], r
        st, r = await probe(s, edge_agent, "ns.probe", version=first.version, path="/")
        assert st == 409, r  # another Worker's version
        st, r = await probe(s, edge_agent, "ns.other", version=first.version, path="/nope")
        assert (st, r) == (
            422,
            {
                "error": "probe path /nope matches none of the Worker's routes at this "
                "location; set host or add a route"
            },
        )
        # A host whose requests the router hands to another Worker is refused, not probed.
        st, r = await probe(
            s, edge_agent, "ns.probe", version=ok.version, path="/exact", host="other.test"
        )
        assert st == 422 and "served by Worker ns.other" in r["error"], r
        for bad in (
            {"version": ok.version, "path": "/", "method": "POST"},
            {"version": ok.version, "path": "/", "timeoutSeconds": 31},
            {"version": "abc", "path": "/"},
            {"version": ok.version, "path": "no-slash"},
            {"version": ok.version, "path": "/", "host": "a.test\r\nX-Evil: 1"},
        ):
            st, r = await probe(s, edge_agent, "ns.probe", **bad)
            assert st == 422, (bad, r)
        async with s.post(
            f"{edge_agent.api_url}/v1/workers/ns.probe/probe",
            json={"version": ok.version, "path": "/"},
        ) as resp:
            assert resp.status == 401


COUNTING = """
export default {
  async fetch(req) {
    const u = new URL(req.url);
    if (u.pathname === "/missing") return new Response("no", { status: 404 });
    if (u.pathname === "/slow") await new Promise((r) => setTimeout(r, 500));
    return new Response("v1");
  },
};
"""


async def test_request_counts_per_version_survive_reloads(edge_agent: AgentProc) -> None:  # noqa: F811
    v1 = bundle("ns.count", COUNTING)
    v2 = bundle(
        "ns.count", "export default { fetch() { return new Response('v2', { status: 503 }); } };"
    )
    v3 = bundle("ns.count", "export default { fetch() { throw new Error('thrown'); } };")
    d = deployment(v1, v2, v3, routes=("count.test/*",))
    ids = (v1.version or "", v2.version or "", v3.version or "")

    def override(v: str) -> dict[str, str]:
        return signed(overrides=f'ns.count="{v}"')

    async with aiohttp.ClientSession() as s:
        assert (await put(s, edge_agent, d))[0] == 200
        it = await item(s, edge_agent, "ns.count")
        assert it["requests"] == {v: {"total": 0, "errors": 0} for v in ids}
        for _ in range(7):
            assert await get(s, edge_agent, "count.test") == (200, "v1")
        for _ in range(2):
            assert (await get(s, edge_agent, "count.test", "/missing"))[0] == 404
        for _ in range(3):
            assert (await get(s, edge_agent, "count.test", **override(ids[1])))[0] == 503
        for _ in range(2):
            assert (await get(s, edge_agent, "count.test", **override(ids[2])))[0] == 500
        assert (await get(s, edge_agent, "nothing.test"))[0] == 404  # no Worker: not counted

        want = {
            ids[0]: {"total": 9, "errors": 0},
            ids[1]: {"total": 3, "errors": 3},
            ids[2]: {"total": 2, "errors": 2},
        }
        assert (await item(s, edge_agent, "ns.count"))["requests"] == want
        metric = {
            ("ns.count", ids[0], "2xx"): 7.0,
            ("ns.count", ids[0], "4xx"): 2.0,
            ("ns.count", ids[1], "5xx"): 3.0,
            ("ns.count", ids[2], "5xx"): 2.0,
        }
        assert await request_samples(s, edge_agent) == metric

        # A reload (another Worker's PUT) while a request is in flight on the old generation:
        # nothing is reset, nothing counted twice, and the request that finishes while the
        # old generation drains is counted.
        slow = asyncio.create_task(get(s, edge_agent, "count.test", "/slow"))
        await asyncio.sleep(0.15)
        st, body = await put(
            s, edge_agent, deployment(text_worker("ns.else", "else"), routes=("else.test/*",))
        )
        assert (st, body["changed"]) == (200, True)
        assert await slow == (200, "v1")
        want[ids[0]] = {"total": 10, "errors": 0}
        metric[("ns.count", ids[0], "2xx")] = 8.0
        assert (await item(s, edge_agent, "ns.count"))["requests"] == want
        assert await request_samples(s, edge_agent) == metric
        # The new generation counts on top.
        assert (await get(s, edge_agent, "count.test", **override(ids[2])))[0] == 500
        assert await get(s, edge_agent, "else.test") == (200, "else")
        want[ids[2]] = {"total": 3, "errors": 3}
        async with s.get(f"{edge_agent.api_url}/v1/workers", headers=edge_agent.headers()) as r:
            inv = {i["worker"]: i for i in (await r.json())["workers"]}
        assert inv["ns.count"]["requests"] == want
        assert inv["ns.else"]["requests"] == {inv["ns.else"]["primary"]: {"total": 1, "errors": 0}}
        # A second reload, of this Worker itself, keeps the counts of the versions it keeps.
        assert (await put(s, edge_agent, deployment(v1, v3, routes=("count.test/*",))))[0] == 200
        assert (await item(s, edge_agent, "ns.count"))["requests"] == {
            ids[0]: want[ids[0]],
            ids[2]: want[ids[2]],
        }
        samples = await request_samples(s, edge_agent)
        assert samples[("ns.count", ids[1], "5xx")] == 3.0  # the counter keeps dropped ones
        assert samples[("ns.count", ids[2], "5xx")] == 3.0

        # The public socket never shows the counts, whatever the path or host.
        for host in ("count.test", "nothing.test", "127.0.0.1"):
            for path in ("/counts", "/final"):
                st, text = await get(s, edge_agent, host, path)
                assert "inflight" not in text and "codes" not in text, (host, path, text)
