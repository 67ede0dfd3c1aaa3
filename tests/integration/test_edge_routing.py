"""The edge agent with real workerd: routing, traffic split, overrides, the shared route table."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter

import aiohttp
import pytest

from edgeplane.routing import normalize_path
from edgeplane.wire import key_fingerprint, signed_headers
from tests.integration.edge_fixtures import (
    SIGNING_KEY,
    AgentProc,
    body_of,
    bundle,
    deployment,
    edge_agent,  # noqa: F401 (fixture)
    edge_agents,  # noqa: F401 (fixture)
    signed,
    text_worker,
)
from tests.route_cases import GROUPS, PATHS, split_url

pytestmark = pytest.mark.integration


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


async def raw_get(agent: AgentProc, host: str, path_query: str, **h: str) -> tuple[int, str]:
    """GET with the request target sent byte for byte (UTF-8), as a client that does not
    normalise URLs sends it: aiohttp would resolve dot segments and escape it first."""
    ip, port = agent.http_addr.rsplit(":", 1)
    reader, writer = await asyncio.open_connection(ip, int(port))
    head = "".join(f"{k}: {v}\r\n" for k, v in {"Host": host, **h}.items())
    writer.write(f"GET {path_query or '/'} HTTP/1.1\r\n{head}Connection: close\r\n\r\n".encode())
    data = await reader.read()
    writer.close()
    status_line, _, rest = data.partition(b"\r\n")
    body = rest.partition(b"\r\n\r\n")[2]
    if b"transfer-encoding: chunked" in rest.partition(b"\r\n\r\n")[0].lower():
        body = _unchunk(body)
    return int(status_line.split()[1]), body.decode()


def _unchunk(body: bytes) -> bytes:
    out = b""
    while body:
        size, _, body = body.partition(b"\r\n")
        n = int(size, 16)
        if n == 0:
            break
        out, body = out + body[:n], body[n + 2 :]
    return out


async def test_route_table_through_router(edge_agent: AgentProc) -> None:  # noqa: F811
    """Every group of tests/data/route_cases.json, answered by the real router in workerd:
    each pattern served by a Worker answering its pattern, the requests sent raw."""
    async with aiohttp.ClientSession() as s:
        for gi, group in enumerate(GROUPS):
            names = [f"rt.g{gi}p{pi}" for pi in range(len(group["patterns"]))]
            for name, pattern in zip(names, group["patterns"], strict=True):
                d = deployment(text_worker(name, pattern), routes=(pattern,))
                assert (await put(s, edge_agent, d))[0] == 200, pattern
            for case in group["cases"]:
                scheme, host, path_query = split_url(case["url"])
                # The socket speaks http; a TLS-terminating proxy says https.
                got = await raw_get(edge_agent, host, path_query, **signed(proto=scheme))
                want = (404, None) if case["expect"] is None else (200, case["expect"])
                assert (got[0], got[1] if got[0] == 200 else None) == want, case
            for name in names:
                async with s.delete(
                    f"{edge_agent.api_url}/v1/workers/{name}", headers=edge_agent.headers()
                ) as r:
                    assert r.status == 200


ECHO_JS = """export default { fetch(request) {
  const url = new URL(request.url);
  return new Response(url.pathname + url.search);
} };"""


async def test_normalize_path_as_workerd(edge_agent: AgentProc) -> None:  # noqa: F811
    """The Python normalisation of every path of the table is what the router sees in
    workerd, sent raw. workerd's HTTP parser refuses some raw characters (space, '<', a
    control; a client must escape them): such a request never reaches the router, so there
    is nothing to compare."""
    echo = deployment(bundle("rt.echo", ECHO_JS), routes=("*/*",))
    refused = []
    async with aiohttp.ClientSession() as s:
        assert (await put(s, edge_agent, echo))[0] == 200
    for path in PATHS:
        try:
            path.encode()
        except UnicodeEncodeError:
            continue  # a lone surrogate has no bytes to send
        status, body = await raw_get(edge_agent, "echo.test", path)
        if status == 400:  # from workerd's parser: the echo Worker always answers 200
            refused.append(path)
            continue
        assert (status, body) == (200, normalize_path(path)), path
    assert len(refused) <= len(PATHS) // 4, refused


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
                (await get(s, edge_agent, "split.test", "/", **signed(version_key=key)))[1]
                for _ in range(20)
            }
            assert len(got) == 1
        # The override header picks a version of the deployment, full id or a prefix.
        for v, want in ((v2.version, "v2"), (v1.version, "v1")):
            hdr = signed(overrides=f'ns.split="{v}"')
            assert {(await get(s, edge_agent, "split.test", "/", **hdr))[1] for _ in range(30)} == {
                want
            }
        hdr = signed(overrides=f'ns.split="{v2.version[:12]}"')  # type: ignore[index]
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
        assert st == 422 and "patterns[0]: " in body["error"]


async def test_public_requests_cannot_pick_versions_or_the_scheme(edge_agents) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """A dark (0 %) version is reachable only with a signed override; a sticky key and
    X-Forwarded-Proto count only signed, or (the proto) behind a proxy the location trusts."""
    agent = edge_agents("pub")
    v1, v2 = text_worker("ns.dark", "v1"), text_worker("ns.dark", "v2")
    dark = deployment(v1, v2, routes=("dark.test/*",),
                      traffic=((v1.version, 100), (v2.version, 0)))  # type: ignore[arg-type]
    secure = deployment(text_worker("ns.secure", "secure"), routes=("https://secure.test/*",))
    override = f'ns.dark="{v2.version}"'
    async with aiohttp.ClientSession() as s:
        for d in (dark, secure):
            assert (await put(s, agent, d))[0] == 200
        answers = set()
        for _ in range(20):
            unsigned = {"Edgeplane-Version-Overrides": override, "Edgeplane-Version-Key": "k"}
            answers.add((await get(s, agent, "dark.test", "/", **unsigned))[1])
            forged = signed_headers("x" * 40, int(time.time()), overrides=override)
            answers.add((await get(s, agent, "dark.test", "/", **forged))[1])
        assert answers == {"v1"}
        assert await get(s, agent, "dark.test", "/", **signed(overrides=override)) == (200, "v2")
        assert (await get(s, agent, "secure.test", "/", **{"X-Forwarded-Proto": "https"}))[0] == 404
        assert await get(s, agent, "secure.test", "/", **signed(proto="https")) == (200, "secure")
    behind_proxy = edge_agents("proxied", extra_args=("--trust-forwarded-proto",))
    async with aiohttp.ClientSession() as s:
        assert (await put(s, behind_proxy, secure))[0] == 200
        got = await get(s, behind_proxy, "secure.test", "/", **{"X-Forwarded-Proto": "https"})
        assert got == (200, "secure")
        # Its /v1/info names the key in force by fingerprint, never the key itself.
        async with s.get(f"{behind_proxy.api_url}/v1/info", headers=behind_proxy.headers()) as r:
            info = await r.json()
        assert info["signingKey"] == key_fingerprint(SIGNING_KEY)
        assert SIGNING_KEY not in json.dumps(info)
