"""Static assets at a real agent with real workerd: blobs sent once, a single-page app
served by workerd's AssetsService (SPA fallback, content types, ETag and 304, the Worker
first for /api/*, its ASSETS binding), a new site without a restart, and blob GC."""

from __future__ import annotations

import asyncio
import hashlib
import re
import shutil
from collections.abc import Mapping

import aiohttp
import pytest
from multidict import CIMultiDict

from edgeplane.api.worker import WorkerAssets
from edgeplane.compile.assets import compile_assets
from edgeplane.distribute.client import AgentClient, Endpoint, Unreachable
from edgeplane.edge.cells import recorded_pids
from edgeplane.wire import Bundle, BundleBinding, BundleModule, Deployment, ModuleType, Route
from tests.integration.edge_fixtures import (
    AgentProc,
    body_of,
    edge_agents,  # noqa: F401 (fixture)
    module_blobs,
    text_worker,
)

pytestmark = pytest.mark.integration

WORKER = "web.spa"
HOST = "spa.test"
# A Worker for /api/*: it answers itself, or serves a file through its ASSETS binding.
JS = """
export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    if (url.pathname === "/api/logo") return env.ASSETS.fetch(new URL("/logo.png", url));
    return Response.json({ worker: true, path: url.pathname,
      leaked: request.headers.get("edgeplane-asset-version") });
  },
};
"""
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
SITE = {
    "index.html": b"<!doctype html><title>spa</title><div id=app></div>",
    "logo.png": PNG,
    "app/main.js": b"console.log('app v1');",
}
SITE2 = {**SITE, "app/main.js": b"console.log('app v2');"}
SPEC = WorkerAssets.model_validate(
    {
        "configMap": {"name": "site"},
        "notFoundHandling": "single-page-application",
        "runWorkerFirst": ["/api/*"],
        "binding": "ASSETS",
    }
)


def version(files: Mapping[str, bytes]) -> tuple[Deployment, dict[str, bytes]]:
    site = compile_assets(SPEC, files)
    b = Bundle(
        worker=WORKER,
        compatibilityDate="2025-01-01",
        mainModule="index.js",
        modules=(BundleModule(name="index.js", type=ModuleType.ES_MODULE, content=JS),),
        assets=site.wire,
    ).with_version()
    d = Deployment(
        worker=WORKER,
        primary=b.version or "",
        versions=(b,),
        routes=(Route(pattern=f"{HOST}/*"),),
    )
    return d, dict(site.blobs)


def stored_blobs(agent: AgentProc, metrics: str) -> int:
    m = re.search(r'edgeplane_agent_blobs_received_total\{result="stored"\} (\d+)', metrics)
    return int(float(m.group(1))) if m else 0


async def agent_metrics(s: aiohttp.ClientSession, agent: AgentProc) -> str:
    async with s.get(f"{agent.api_url}/metrics", headers=agent.headers()) as r:
        return await r.text()


async def fetch(
    s: aiohttp.ClientSession, agent: AgentProc, path: str, **headers: str
) -> tuple[int, CIMultiDict[str], bytes]:
    async with s.get(f"{agent.http_url}{path}", headers={"Host": HOST, **headers}) as r:
        return r.status, CIMultiDict(r.headers), await r.read()


def blob_files(agent: AgentProc) -> set[str]:
    root = agent.state_dir / "blobs" / "sha256"
    return {p.parent.name + p.name for p in root.glob("*/*") if not p.name.startswith(".")}


async def test_spa_served_blobs_sent_once_new_site_without_restart_and_gc(
    edge_agents,  # noqa: F811
) -> None:
    agent = edge_agents("agent", extra_args=("--blob-grace", "0"))
    ep = Endpoint("a", agent.api_url, agent.token)
    client = AgentClient()
    try:
        async with aiohttp.ClientSession() as s:
            d1, blobs1 = version(SITE)
            client.hold_blobs(WORKER, blobs1)
            assert await client.put(ep, d1)
            assert stored_blobs(agent, await agent_metrics(s, agent)) == 3
            await check_spa(s, agent)

            # One changed file: one blob sent; the cell is not restarted (a symlink swap).
            pids = set(recorded_pids(agent.state_dir / "run"))
            d2, blobs2 = version(SITE2)
            client.hold_blobs(WORKER, blobs2)
            assert await client.put(ep, d2)
            assert stored_blobs(agent, await agent_metrics(s, agent)) == 4
            status, _, body = await fetch(s, agent, "/app/main.js")
            assert (status, body) == (200, b"console.log('app v2');")
            assert set(recorded_pids(agent.state_dir / "run")) == pids
            # The same deployment again sends nothing.
            assert await client.send_blobs(ep, d2) == 0

            # GC: v1's main.js is referenced by nothing now (grace 0): gone.
            v1_main = hashlib.sha256(SITE["app/main.js"]).hexdigest()
            assert v1_main not in blob_files(agent)
            assert blob_files(agent) == set(blobs2) | module_blobs(*d2.versions)
            sites = agent.state_dir / "assets" / "sites"
            assert [p.name for p in sites.iterdir()] == [d2.versions[0].assets.digest()]  # type: ignore[union-attr]

            await refusals(s, agent, client, ep)

            # The Worker replaced by one without assets: its site and blobs go.
            plain = text_worker(WORKER, "plain")
            async with s.put(
                f"{agent.api_url}/v1/workers/{WORKER}",
                data=body_of(
                    Deployment(
                        worker=WORKER,
                        primary=plain.version or "",
                        versions=(plain,),
                        routes=(Route(pattern=f"{HOST}/*"),),
                    )
                ),
                headers=agent.headers(),
            ) as r:
                assert r.status == 200, await r.text()
            assert blob_files(agent) == module_blobs(plain)  # its module only
            assert list(sites.iterdir()) == []
            status, _, body = await fetch(s, agent, "/logo.png")
            assert (status, body) == (200, b"plain")
    finally:
        await client.close()


async def check_spa(s: aiohttp.ClientSession, agent: AgentProc) -> None:
    status, headers, body = await fetch(s, agent, "/", accept="text/html")
    assert status == 200 and body == SITE["index.html"], (status, body, agent.log_tail())
    assert headers["Content-Type"].startswith("text/html")
    status, _, body = await fetch(s, agent, "/app/deep/link", accept="text/html")
    assert (status, body) == (200, SITE["index.html"])  # SPA fallback
    status, headers, body = await fetch(s, agent, "/logo.png")
    assert (status, headers["Content-Type"], body) == (200, "image/png", PNG)
    etag = headers["ETag"]
    assert etag.endswith('-0"')  # the blob's mtime, the epoch: the same at every location
    status, _, body = await fetch(s, agent, "/logo.png", **{"If-None-Match": etag})
    assert (status, body) == (304, b"")
    status, _, body = await fetch(s, agent, "/api/x", **{"edgeplane-asset-version": "forged"})
    assert status == 200 and b'"worker":true' in body and b'"path":"/api/x"' in body
    assert b'"leaked":null' in body  # the header the host uses never reaches the Worker
    status, headers, body = await fetch(s, agent, "/api/logo")
    assert (status, headers["Content-Type"], body) == (200, "image/png", PNG)  # env.ASSETS


async def refusals(
    s: aiohttp.ClientSession, agent: AgentProc, client: AgentClient, ep: Endpoint
) -> None:
    """A deployment whose blobs are not here is refused (424, naming them); a blob whose
    bytes do not match its name is refused (422); the operator without a blob says so."""
    d3, _ = version({**SITE2, "new.txt": b"new"})
    async with s.put(
        f"{agent.api_url}/v1/workers/{WORKER}", data=body_of(d3), headers=agent.headers()
    ) as r:
        assert r.status == 424
        assert (await r.json())["missing"] == [hashlib.sha256(b"new").hexdigest()]
    sha = hashlib.sha256(b"new").hexdigest()
    async with s.put(
        f"{agent.api_url}/v1/blobs/{sha}", data=b"not new", headers=agent.headers()
    ) as r:
        assert r.status == 422 and "sha256" in (await r.json())["error"]
    with pytest.raises(Unreachable, match="does not hold 1 of the assets' files"):
        await client.put(ep, d3)  # never held: hold_blobs was not called for it


async def test_site_swaps_under_load_never_miss_a_file(edge_agents) -> None:  # noqa: F811
    """Requests during five new sites in a row: every one answers 200 with one of the
    versions' bytes (a symlink swap in one rename: no moment without the site)."""
    agent = edge_agents("agent")
    ep = Endpoint("a", agent.api_url, agent.token)
    client = AgentClient()
    sites = [{**SITE, "app/main.js": f"console.log({i});".encode()} for i in range(6)]
    bodies = {s["app/main.js"] for s in sites}
    seen: list[tuple[int, bytes]] = []
    try:
        async with aiohttp.ClientSession() as s:
            d, blobs = version(sites[0])
            client.hold_blobs(WORKER, blobs)
            assert await client.put(ep, d)
            stop = asyncio.Event()

            async def load() -> None:
                while not stop.is_set():
                    for path in ("/app/main.js", "/logo.png", "/"):
                        status, _, body = await fetch(s, agent, path, accept="text/html")
                        seen.append((status, body if path == "/app/main.js" else b""))

            tasks = [asyncio.create_task(load()) for _ in range(4)]
            for site in sites[1:]:
                d, blobs = version(site)
                client.hold_blobs(WORKER, blobs)
                assert await client.put(ep, d)
                await asyncio.sleep(0.2)
            stop.set()
            await asyncio.gather(*tasks)
    finally:
        await client.close()
    assert len(seen) > 50
    assert {status for status, _ in seen} == {200}
    assert {b for _, b in seen if b} <= bodies


async def test_a_killed_agent_serves_its_sites_again_rebuilt_from_blobs(
    edge_agents,  # noqa: F811
) -> None:
    """SIGKILL the agent and its workerds, and remove every built site (their blobs stay):
    the agent started again rebuilds them from its blobs before it serves."""
    agent = edge_agents("agent")
    ep = Endpoint("a", agent.api_url, agent.token)
    client = AgentClient()
    try:
        d, blobs = version(SITE)
        client.hold_blobs(WORKER, blobs)
        assert await client.put(ep, d)
    finally:
        await client.close()
    agent.kill()
    shutil.rmtree(agent.state_dir / "assets" / "sites")
    again = edge_agents("agent", http_addr=agent.http_addr, api_addr=agent.api_addr)
    async with aiohttp.ClientSession() as s:
        status, headers, body = await fetch(s, again, "/logo.png")
        assert (status, headers["Content-Type"], body) == (200, "image/png", PNG)
        assert (await fetch(s, again, "/app/deep/link", accept="text/html"))[2] == SITE[
            "index.html"
        ]


async def test_worker_first_everywhere_and_a_404_page(edge_agents) -> None:  # noqa: F811
    """runWorkerFirst ["/*"] (wrangler's true) sends every request to the Worker, which
    serves files through env.ASSETS; notFoundHandling 404-page answers the site's 404.html
    with status 404."""
    agent = edge_agents("agent")
    ep = Endpoint("a", agent.api_url, agent.token)
    client = AgentClient()
    spec = WorkerAssets.model_validate(
        {
            "configMap": {"name": "s"},
            "runWorkerFirst": ["/*"],
            "notFoundHandling": "404-page",
            "binding": "ASSETS",
        }
    )
    js = """export default { async fetch(request, env) {
      const r = await env.ASSETS.fetch(request);
      const out = new Response(r.body, r);
      out.headers.set("x-worker", "saw it");
      return out;
    } };"""
    site = compile_assets(spec, {**SITE, "404.html": b"<h1>not here</h1>"})
    b = Bundle(
        worker=WORKER,
        compatibilityDate="2025-01-01",
        mainModule="index.js",
        modules=(BundleModule(name="index.js", type=ModuleType.ES_MODULE, content=js),),
        assets=site.wire,
    ).with_version()
    d = Deployment(
        worker=WORKER, primary=b.version or "", versions=(b,), routes=(Route(pattern=f"{HOST}/*"),)
    )
    try:
        client.hold_blobs(WORKER, site.blobs)
        assert await client.put(ep, d)
        async with aiohttp.ClientSession() as s:
            status, headers, body = await fetch(s, agent, "/logo.png")
            assert (status, headers["x-worker"], body) == (200, "saw it", PNG)
            status, headers, body = await fetch(s, agent, "/no/such/page", accept="text/html")
            assert (status, headers["x-worker"], body) == (404, "saw it", b"<h1>not here</h1>")
    finally:
        await client.close()


async def test_a_durable_object_worker_with_assets(edge_agents) -> None:  # noqa: F811
    """A Worker that binds a Durable Object class (its versions are static services of its
    own cell) serves its files and reaches them through its ASSETS binding too."""
    agent = edge_agents("agent")
    ep = Endpoint("a", agent.api_url, agent.token)
    client = AgentClient()
    js = """import { DurableObject } from "cloudflare:workers";
    export class Counter extends DurableObject {
      async fetch() { const n = ((await this.ctx.storage.get("n")) || 0) + 1;
        await this.ctx.storage.put("n", n); return new Response(String(n)); }
    }
    export default { async fetch(request, env) {
      const url = new URL(request.url);
      if (url.pathname === "/api/count") return env.C.get(env.C.idFromName("a")).fetch(request);
      return env.ASSETS.fetch(new URL("/logo.png", url));
    } };"""
    site = compile_assets(SPEC, SITE)
    b = Bundle(
        worker=WORKER,
        compatibilityDate="2025-01-01",
        mainModule="index.js",
        modules=(BundleModule(name="index.js", type=ModuleType.ES_MODULE, content=js),),
        bindings=(BundleBinding(name="C", durableObjectClass="Counter"),),
        assets=site.wire,
    ).with_version()
    d = Deployment(
        worker=WORKER, primary=b.version or "", versions=(b,), routes=(Route(pattern=f"{HOST}/*"),)
    )
    try:
        client.hold_blobs(WORKER, site.blobs)
        assert await client.put(ep, d)
        async with aiohttp.ClientSession() as s:
            assert (await fetch(s, agent, "/", accept="text/html"))[::2] == (
                200,
                SITE["index.html"],
            )
            assert [(await fetch(s, agent, "/api/count"))[2] for _ in range(2)] == [b"1", b"2"]
            status, headers, body = await fetch(s, agent, "/api/logo")
            assert (status, headers["Content-Type"], body) == (200, "image/png", PNG)
    finally:
        await client.close()
