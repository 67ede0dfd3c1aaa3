"""The per-request price of live logs (`edgeplane tail`). A script that prints figures; it
asserts nothing.

    PYTHONPATH=operator:. .venv/bin/python bench/tail_bench.py [--requests 2000]

Two agents (tests/integration/edge_fixtures.start_agent, real workerd) serve the same Worker,
which writes one console line per request: the floor runs with `--tail-rate 0` (live logs
off: no tail hook at all), the other as shipped. Requests alternate between the two, one at
a time on a kept-alive connection each, so both see the same machine. Three figures:
  - off:       the floor
  - untailed:  the hook runs after every request; nobody tails, so the cell only looks the
               Worker up in its set of tailed Workers (asked of the agent every 500 ms)
  - tailed:    one reader streams every event (sampling raised so nothing is dropped): the
               cell posts each request's events to the agent, which redacts and queues them
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

_REPO = Path(__file__).resolve().parents[1]
for _p in (str(_REPO), str(_REPO / "operator")):
    if _p not in sys.path:
        sys.path.insert(0, _p)
os.environ["PYTHONPATH"] = os.pathsep.join(
    [str(_REPO / "operator"), str(_REPO), *filter(None, [os.environ.get("PYTHONPATH")])]
)

from tests.integration.edge_fixtures import AgentProc, body_of, bundle, deployment, start_agent  # noqa: E402

JS = """export default { fetch(request) {
  console.log("bench", new URL(request.url).pathname);
  return new Response("ok");
} };"""
HOST = "tail.bench"


async def _timed(s: aiohttp.ClientSession, agent: AgentProc, i: int) -> float:
    t0 = time.perf_counter()
    async with s.get(f"{agent.http_url}/{i}", headers={"Host": HOST}) as r:
        await r.read()
        if r.status != 200:
            raise RuntimeError(f"{agent.http_url}: {r.status}")
    return time.perf_counter() - t0


async def _alternate(a: AgentProc, b: AgentProc, n: int) -> tuple[list[float], list[float]]:
    xs: list[float] = []
    ys: list[float] = []
    async with aiohttp.ClientSession() as sa, aiohttp.ClientSession() as sb:
        for i in range(200):  # warm both isolates and connections
            await _timed(sa, a, i)
            await _timed(sb, b, i)
        for i in range(n):
            xs.append(await _timed(sa, a, i))
            ys.append(await _timed(sb, b, i))
    return xs, ys


def _text(xs: list[float]) -> str:
    ordered = sorted(xs)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return f"p50 {statistics.median(xs) * 1000:.3f} ms, p99 {p99 * 1000:.3f} ms"


async def _reader(agent: AgentProc, seen: list[int], ready: asyncio.Event) -> None:
    url = f"{agent.api_url}/v1/workers/ns.tail/tail"
    async with aiohttp.ClientSession() as s, s.get(url, headers=agent.headers()) as r:
        async for line in r.content:
            kind = json.loads(line)["type"]
            if kind == "ready":
                ready.set()
            elif kind == "event":
                seen[0] += 1
            elif kind == "dropped":
                seen[1] = json.loads(line)["dropped"]


async def run(n: int) -> None:
    with tempfile.TemporaryDirectory(prefix="tail-bench-") as tmp:
        off = start_agent(Path(tmp, "off"), extra_args=("--tail-rate", "0", "--cells", "1"))
        on = start_agent(Path(tmp, "on"), extra_args=("--tail-rate", "100000", "--cells", "1"))
        try:
            d = deployment(bundle("ns.tail", JS), routes=(f"{HOST}/*",))
            async with aiohttp.ClientSession() as s:
                for agent in (off, on):
                    url = f"{agent.api_url}/v1/workers/ns.tail"
                    async with s.put(url, data=body_of(d), headers=agent.headers()) as r:
                        assert r.status == 200, await r.text()
            floor, untailed = await _alternate(off, on, n)
            print(f"off (no hook):       {_text(floor)}")
            print(
                f"untailed (hook):     {_text(untailed)}  "
                f"+{(statistics.median(untailed) - statistics.median(floor)) * 1e6:.0f} µs p50"
            )
            seen, ready = [0, 0], asyncio.Event()
            task = asyncio.create_task(_reader(on, seen, ready))
            await asyncio.wait_for(ready.wait(), 10)
            floor2, tailed = await _alternate(off, on, n)
            await asyncio.sleep(1)
            task.cancel()
            print(f"off (no hook):       {_text(floor2)}")
            print(
                f"tailed (1 reader):   {_text(tailed)}  "
                f"+{(statistics.median(tailed) - statistics.median(floor2)) * 1e6:.0f} µs p50; "
                f"events streamed {seen[0]}, dropped {seen[1]}"
            )
        finally:
            off.stop()
            on.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=2000)
    asyncio.run(run(ap.parse_args().requests))


if __name__ == "__main__":
    main()
