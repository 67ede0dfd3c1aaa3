"""Edge agent figures (a script, not a timed test): run `python bench/agent_bench.py`.

Prints PUT→serving latency p50/p99 against the floor of a bare workerd start with the same
config measured in the same run, and the time for one reload and for a batch of PUTs at
10, 100 and 1,000 Workers on one location.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.integration.edge_fixtures import (
    AgentProc,
    body_of,
    deployment,
    start_agent,
    text_worker,
)

from edgeplane.edge import workerd
from edgeplane.edge.workerd import find_workerd


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))]


async def put(s: aiohttp.ClientSession, agent: AgentProc, d) -> float:  # type: ignore[no-untyped-def]
    t = time.perf_counter()
    async with s.put(
        f"{agent.api_url}/v1/workers/{d.worker}", data=body_of(d), headers=agent.headers()
    ) as r:
        body = await r.text()
        if r.status != 200:
            raise RuntimeError(f"{r.status} {body}")
    return time.perf_counter() - t


async def bare_start(config: Path, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        p = await workerd.start(find_workerd(), config, socket_fd=None, start_timeout=120)
        out.append(time.perf_counter() - t)
        await workerd.kill(p)
    return out


def latest_config(agent: AgentProc) -> Path:
    return max((agent.state_dir / "run").glob("config-*.capnp"), key=os.path.getmtime)


async def fill(s: aiohttp.ClientSession, agent: AgentProc, start: int, stop: int) -> float:
    t = time.perf_counter()
    await asyncio.gather(
        *(
            put(
                s, agent, deployment(text_worker(f"bench.w{i}", f"w{i}"), routes=(f"w{i}.bench/*",))
            )
            for i in range(start, stop)
        )
    )
    return time.perf_counter() - t


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        agent = start_agent(Path(tmp) / "agent")
        try:
            async with aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=1100), timeout=aiohttp.ClientTimeout(600)
            ) as s:
                print("workerd", find_workerd())
                await fill(s, agent, 0, 10)
                lat = [
                    await put(
                        s,
                        agent,
                        deployment(text_worker("bench.live", f"v{i}"), routes=("live.bench/*",)),
                    )
                    for i in range(30)
                ]
                floor = await bare_start(latest_config(agent), 15)
                p50, p99, f50 = statistics.median(lat), pct(lat, 99), statistics.median(floor)
                print(
                    f"PUT->serving at 11 Workers, 30 PUTs: p50 {p50 * 1000:.0f} ms, "
                    f"p99 {p99 * 1000:.0f} ms"
                )
                print(
                    f"bare workerd start, same config, 15 runs: p50 {f50 * 1000:.0f} ms, "
                    f"p99 {pct(floor, 99) * 1000:.0f} ms"
                )
                print(f"ratio PUT->serving p50 / bare start p50: {p50 / f50:.2f}x")
                have = 10
                for n in (10, 100, 1000):
                    batch = await fill(s, agent, have, n) if n > have else 0.0
                    have = max(have, n)
                    one = [
                        await put(
                            s,
                            agent,
                            deployment(
                                text_worker("bench.live", f"n{n}-{i}"), routes=("live.bench/*",)
                            ),
                        )
                        for i in range(3)
                    ]
                    f = await bare_start(latest_config(agent), 3)
                    print(
                        f"{n:>5} Workers: one-Worker reload (PUT->serving) p50 "
                        f"{statistics.median(one) * 1000:.0f} ms; "
                        f"bare start {statistics.median(f) * 1000:.0f} ms"
                        + (f"; the concurrent PUTs to reach it took {batch:.2f} s" if batch else "")
                    )
                async with s.get(f"{agent.api_url}/metrics", headers=agent.headers()) as r:
                    m = await r.text()
                for line in m.splitlines():
                    if line.startswith(
                        ("edgeplane_agent_reloads_total", "edgeplane_agent_validation_runs_total")
                    ):
                        print(line)
        finally:
            agent.stop()


if __name__ == "__main__":
    asyncio.run(main())
