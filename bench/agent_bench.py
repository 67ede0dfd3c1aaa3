"""Edge agent figures, each next to a floor measured in the same run. A script that prints
figures; it asserts nothing.

    PYTHONPATH=operator:. .venv/bin/python bench/agent_bench.py            # 10, 1,000, 10,000
    PYTHONPATH=operator:. .venv/bin/python bench/agent_bench.py --quick    # 10, 200: smoke run

One agent (tests/integration/edge_fixtures.start_agent, with real workerd) is filled with
tiny Workers `t<k>.w<i>` (spread over --namespaces namespaces, as tenants would be), each
routed at `w<i>.bench/*`, in concurrent PUTs (--concurrency in flight; the agent coalesces
them into batches). What is measured, and the floor each figure is read against:

- PUT→serving at each level of Workers present (--levels): --samples single updates of one
  Worker, each timed from sending the PUT to the first public request (through the agent's
  public socket, Host of the Worker's route, a fresh connection) that answers with the new
  body. Floor: the same update at the first level (10 Workers). The data plane promises a
  deploy that costs the same at 10 or 10,000 Workers, so the acceptance criterion is a
  ratio: 10,000 / 10 at most 1.5.
- Cold first request: the first request to each of --samples Workers never requested
  before, at the largest level. Floor: a bare `workerd serve` loading a never-seen Worker by
  id through a `workerLoader` binding, the runtime's own cost of a first load; the agent
  adds reading the bundle from its store and the router hop.
- Warm request: one hot Worker through the agent's public socket against the same Worker
  in a bare workerd's static config, requested directly; the requests alternate so both
  see the same machine. What is left is the price of the router (and cell) hop.
- RSS at the largest level with --hot Workers hot (requested in a loop for --hot-seconds):
  VmRSS of the agent and of every workerd in its process group (start_agent starts it in a
  session of its own). Floor: one bare workerd with the same number of Workers loaded
  through workerLoader and sent as many requests (an isolate's heap and JIT code grow with
  its traffic), i.e. what the hot isolates cost without agent, cells, router and the cold
  Workers.

p99 of 30 samples is close to their maximum: read it as "the worst seen", not as a tail.
Latencies are taken by the same aiohttp client on both sides of each comparison, so its
own overhead (a few tenths of a millisecond) is in both.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import math
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import aiohttp

# Measure the agent of this checkout, in this process and in the agent it starts.
_REPO = Path(__file__).resolve().parents[1]
for _p in (str(_REPO), str(_REPO / "operator")):
    if _p not in sys.path:
        sys.path.insert(0, _p)
os.environ["PYTHONPATH"] = os.pathsep.join(
    [str(_REPO / "operator"), str(_REPO), *filter(None, [os.environ.get("PYTHONPATH")])]
)

from tests.integration.edge_fixtures import (  # noqa: E402
    AgentProc,
    body_of,
    deployment,
    start_agent,
    text_worker,
)

from edgeplane.edge import workerd  # noqa: E402
from edgeplane.edge.render import text as capnp_text  # noqa: E402
from edgeplane.edge.workerd import find_workerd, workerd_version  # noqa: E402
from edgeplane.wire import Deployment  # noqa: E402

COMPAT_DATE = "2024-09-23"  # text_worker's compatibility date: the bare workerd uses it too
CRITERION = 1.5  # PUT→serving p50 at 10,000 Workers / at 10 Workers, at most
SERVING_TIMEOUT = 120.0  # seconds a PUT may take to be served before the run gives up


class BenchError(Exception):
    pass


# ---- figures ---------------------------------------------------------------------------
def pct(xs: Sequence[float], p: float) -> float:
    ordered = sorted(xs)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


@dataclass(frozen=True)
class Lat:
    """Latencies in seconds."""

    samples: tuple[float, ...]

    @property
    def p50(self) -> float:
        return statistics.median(self.samples)

    @property
    def p99(self) -> float:
        return pct(self.samples, 99)

    def text(self) -> str:
        return f"p50 {ms(self.p50)}, p99 {ms(self.p99)} ({len(self.samples)} samples)"


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b > 0 else "n/a"


def say(*parts: object) -> None:
    print(*parts, flush=True)


# ---- the Workers -----------------------------------------------------------------------
def worker_deployment(i: int, body: str, namespaces: int) -> Deployment:
    """Worker number `i`: answers `body` on w<i>.bench/*; its namespace is t<i mod n>."""
    bundle = text_worker(f"t{i % namespaces}.w{i}", body)
    return deployment(bundle, routes=(f"w{i}.bench/*",))


def first_body(i: int) -> str:
    return f"w{i}"


# ---- the agent's API -------------------------------------------------------------------
async def put(api: aiohttp.ClientSession, agent: AgentProc, d: Deployment) -> None:
    url = f"{agent.api_url}/v1/workers/{d.worker}"
    async with api.put(url, data=body_of(d), headers=agent.headers()) as r:
        if r.status != 200:
            raise BenchError(f"PUT {d.worker}: {r.status} {await r.text()}")


async def workers_present(api: aiohttp.ClientSession, agent: AgentProc) -> int:
    async with api.get(f"{agent.api_url}/v1/info", headers=agent.headers()) as r:
        return int((await r.json())["workers"])


async def fill(
    api: aiohttp.ClientSession,
    agent: AgentProc,
    indices: range,
    namespaces: int,
    concurrency: int,
) -> float:
    """PUT Workers `indices`, `concurrency` in flight; the seconds it took."""
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with gate:
            await put(api, agent, worker_deployment(i, first_body(i), namespaces))

    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in indices))
    return time.perf_counter() - started


# ---- public requests -------------------------------------------------------------------
Fetch = Callable[[str], Awaitable[str]]  # a key (a Worker, a path) -> the answer's body


def via_agent(session: aiohttp.ClientSession, agent: AgentProc) -> Fetch:
    """GET / of Worker `key` ("w17") through the agent's public socket."""

    async def fetch(key: str) -> str:
        async with session.get(f"{agent.http_url}/", headers={"Host": f"{key}.bench"}) as r:
            return _body_if_ok(r.status, await r.text(), key)

    return fetch


def via_bare(session: aiohttp.ClientSession, port: int) -> Fetch:
    """GET /<key> from a bare workerd's socket."""

    async def fetch(key: str) -> str:
        async with session.get(f"http://127.0.0.1:{port}/{key}") as r:
            return _body_if_ok(r.status, await r.text(), key)

    return fetch


def _body_if_ok(status: int, body: str, key: str) -> str:
    if status != 200:
        raise BenchError(f"request to {key!r}: {status} {body[:200]}")
    return body


async def timed(fetch: Fetch, key: str, expect: str | None = None) -> float:
    started = time.perf_counter()
    body = await fetch(key)
    elapsed = time.perf_counter() - started
    if expect is not None and body != expect:
        raise BenchError(f"request to {key!r} answered {body[:100]!r}, not {expect!r}")
    return elapsed


async def first_requests(fetch: Fetch, keys: Iterable[str], expect: Callable[[str], str]) -> Lat:
    """One request to each key in turn (never concurrently): each is its first."""
    return Lat(tuple([await timed(fetch, k, expect(k)) for k in keys]))


async def alternate(a: Fetch, key_a: str, b: Fetch, key_b: str, n: int) -> tuple[Lat, Lat]:
    """`n` requests to each, alternating, so both see the same machine at the same time."""
    xs, ys = [], []
    for _ in range(n):
        xs.append(await timed(a, key_a))
        ys.append(await timed(b, key_b))
    return Lat(tuple(xs)), Lat(tuple(ys))


async def heat(
    fetch: Fetch,
    keys: Sequence[str],
    *,
    seconds: float = math.inf,
    requests: float = math.inf,
    in_flight: int = 10,
) -> int:
    """Request `keys` round-robin until `seconds` have passed or `requests` were sent (at
    least one round); the requests sent."""
    cycle = itertools.cycle(keys)
    deadline = time.perf_counter() + seconds
    sent = 0

    def more() -> bool:
        return sent < len(keys) or (sent < requests and time.perf_counter() < deadline)

    async def client() -> None:
        nonlocal sent
        while more():
            sent += 1
            await fetch(next(cycle))

    await asyncio.gather(*(client() for _ in range(in_flight)))
    return sent


# ---- PUT→serving -----------------------------------------------------------------------
@dataclass(frozen=True)
class Serving:
    seconds: float
    stale: int  # public answers with the old body (or none) after the PUT's 200


async def put_to_serving(
    api: aiohttp.ClientSession,
    fresh: Fetch,
    agent: AgentProc,
    d: Deployment,
    key: str,
    body: str,
) -> Serving:
    """Seconds from sending the PUT to the first public request answering `body`. The agent
    answers the PUT once it serves, so the first request after the 200 should have it;
    `stale` counts the ones that did not."""
    started = time.perf_counter()
    await put(api, agent, d)
    stale = 0
    while time.perf_counter() - started < SERVING_TIMEOUT:
        with contextlib.suppress(aiohttp.ClientError, BenchError):
            if await fresh(key) == body:
                return Serving(time.perf_counter() - started, stale)
        stale += 1
        await asyncio.sleep(0.001)
    raise BenchError(f"{d.worker} did not answer {body!r} within {SERVING_TIMEOUT:g}s of its PUT")


async def updates(
    api: aiohttp.ClientSession,
    fresh: Fetch,
    agent: AgentProc,
    level: int,
    samples: int,
    namespaces: int,
) -> tuple[Lat, int]:
    """`samples` single updates of Worker 0, one after the other; their PUT→serving."""
    out: list[Serving] = []
    for k in range(samples):
        body = f"v{level}-{k}"
        d = worker_deployment(0, body, namespaces)
        out.append(await put_to_serving(api, fresh, agent, d, "w0", body))
    return Lat(tuple(s.seconds for s in out)), sum(s.stale for s in out)


# ---- RSS -------------------------------------------------------------------------------
def _stat_fields(pid: int) -> list[str]:
    """/proc/<pid>/stat after the command name (which may hold spaces and parentheses)."""
    raw = Path(f"/proc/{pid}/stat").read_text()
    return raw[raw.rindex(")") + 2 :].split()


def process_group(pgid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                if int(_stat_fields(int(entry.name))[2]) == pgid:  # state, ppid, pgrp
                    out.append(int(entry.name))
    return out


def rss_kib(pid: int) -> int:
    """VmRSS of `pid` in KiB (0 for a process that is gone)."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def comm(pid: int) -> str:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/comm").read_text().strip()
    return ""


@dataclass(frozen=True)
class Rss:
    agent_kib: int
    workerd_kib: int
    workerds: int
    other_kib: int  # any other process of the group (none expected)

    @property
    def total_kib(self) -> int:
        return self.agent_kib + self.workerd_kib + self.other_kib


def group_rss(agent_pid: int) -> Rss:
    """The agent (its pid is its process group's id) and every process in its group."""
    agent = workerd_kib = other = workerds = 0
    for pid in process_group(agent_pid):
        kib = rss_kib(pid)
        if pid == agent_pid:
            agent = kib
        elif comm(pid) == "workerd":
            workerd_kib, workerds = workerd_kib + kib, workerds + 1
        else:
            other += kib
    return Rss(agent, workerd_kib, workerds, other)


def mib(kib: int) -> str:
    return f"{kib / 1024:.0f} MiB"


# ---- a bare workerd: the floors --------------------------------------------------------
_LOADER_JS = """export default { async fetch(request, env) {
  const id = new URL(request.url).pathname.slice(1);
  const worker = env.LOADER.get(id, async () => ({
    compatibilityDate: %s,
    mainModule: "index.js",
    modules: { "index.js":
      `export default { fetch() { return new Response(${JSON.stringify(id)}); } };` },
  }));
  return worker.getEntrypoint().fetch(request);
} };
"""


def bare_config(tiny_js: str) -> str:
    """Socket `http`: the agent's tiny Worker in a static config. Socket `loader`: loads a
    Worker of the same shape by the id in the path (workerLoader), once per id."""
    loader_js = _LOADER_JS % json.dumps(COMPAT_DATE)

    def service(name: str, js: str, bindings: str = "") -> str:
        module = f'(name = "index.js", esModule = {capnp_text(js)})'
        date = capnp_text(COMPAT_DATE)
        worker = f"compatibilityDate = {date}, modules = [{module}]{bindings}"
        return f"(name = {capnp_text(name)}, worker = ({worker}))"

    return f"""using Workerd = import "/workerd/workerd.capnp";
const config :Workerd.Config = (
  services = [
    {service("tiny", tiny_js)},
    {service("loader", loader_js, ', bindings = [(name = "LOADER", workerLoader = ())]')},
  ],
  sockets = [
    (name = "http", address = "127.0.0.1:0", http = (), service = "tiny"),
    (name = "loader", address = "127.0.0.1:0", http = (), service = "loader"),
  ],
);
"""


async def start_bare(workdir: Path, tiny_js: str) -> workerd.Proc:
    """`workerd serve` of bare_config on ephemeral loopback ports; returns once both listen
    (`Proc.ports`)."""
    config = workdir / "bare.capnp"
    config.write_text(bare_config(tiny_js))
    sockets: dict[str, int | None] = {"http": None, "loader": None}
    return await workerd.start(find_workerd(), config, sockets=sockets, start_timeout=30.0)


# ---- the run ---------------------------------------------------------------------------
@dataclass
class Results:
    fills: list[tuple[int, int, float]]  # from, to, seconds
    serving: dict[int, tuple[Lat, int]]  # level -> PUT→serving, stale answers
    cold: Lat | None = None
    cold_floor: Lat | None = None
    warm: Lat | None = None
    warm_floor: Lat | None = None
    heat_requests: int = 0
    rss: Rss | None = None
    rss_floor_idle_kib: int = 0
    rss_floor_kib: int = 0


def keep_alive(limit: int, timeout: float) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=limit),
        timeout=aiohttp.ClientTimeout(total=timeout),
        trust_env=False,
    )


def one_shot(timeout: float) -> aiohttp.ClientSession:
    """A new connection per request: a user arriving after the change, not one holding a
    connection to what served before it."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(force_close=True),
        timeout=aiohttp.ClientTimeout(total=timeout),
        trust_env=False,
    )


async def fill_levels(
    args: argparse.Namespace, agent: AgentProc, api: aiohttp.ClientSession, res: Results
) -> None:
    """Fill the agent level by level; at each, PUT→serving of single updates."""
    async with one_shot(30) as fresh_session:
        fresh = via_agent(fresh_session, agent)
        have = 0
        for level in args.levels:
            seconds = await fill(api, agent, range(have, level), args.namespaces, args.concurrency)
            res.fills.append((have, level, seconds))
            present = await workers_present(api, agent)
            say(
                f"filled {have} -> {level} Workers in {seconds:.2f} s "
                f"({(level - have) / seconds:.0f} Workers/s); the agent reports {present}"
            )
            have = level
            lat, stale = await updates(api, fresh, agent, level, args.samples, args.namespaces)
            res.serving[level] = (lat, stale)
            say(f"  PUT->serving with {level} Workers present: {lat.text()}; stale {stale}")


async def agent_phase(args: argparse.Namespace, agent: AgentProc, res: Results) -> None:
    top = args.levels[-1]
    async with keep_alive(args.concurrency, 900) as api:
        await fill_levels(args, agent, api, res)
    hot = [f"w{i}" for i in range(args.hot)]
    cold = [f"w{i}" for i in range(top - args.samples, top)]  # filled last, never requested
    async with keep_alive(100, 60) as session:
        fetch = via_agent(session, agent)
        res.heat_requests = await heat(fetch, hot, seconds=args.hot_seconds)
        res.rss = group_rss(agent.popen.pid)
        say(
            f"RSS at {top} Workers, {args.hot} hot ({res.heat_requests} requests in "
            f"{args.hot_seconds:g} s): {rss_text(res.rss)}"
        )
        res.cold = await first_requests(fetch, cold, lambda k: k)
        say(f"cold first request at {top} Workers: {res.cold.text()}")


async def floor_phase(
    args: argparse.Namespace, agent: AgentProc, workdir: Path, res: Results
) -> None:
    """The bare workerd's figures; warm requests alternate between it and the agent."""
    tiny_js = text_worker("bench.w1", first_body(1)).modules[0].content
    bare = await start_bare(workdir, tiny_js)
    try:
        async with keep_alive(100, 60) as session:
            loader = via_bare(session, bare.ports["loader"])
            res.rss_floor_idle_kib = rss_kib(bare.pid)
            # As many requests per hot Worker as the agent's had: JIT and heap grow with them.
            hot = [f"h{i}" for i in range(args.hot)]
            await heat(loader, hot, requests=res.heat_requests)
            res.rss_floor_kib = rss_kib(bare.pid)
            say(
                f"RSS floor: bare workerd {mib(res.rss_floor_idle_kib)} idle, "
                f"{mib(res.rss_floor_kib)} with {args.hot} Workers loaded by workerLoader "
                f"and sent {res.heat_requests} requests"
            )
            ids = [f"c{i}" for i in range(args.samples)]
            res.cold_floor = await first_requests(loader, ids, lambda k: k)
            say(f"cold floor (workerLoader first load, bare workerd): {res.cold_floor.text()}")
            agent_fetch = via_agent(session, agent)
            direct = via_bare(session, bare.ports["http"])
            for _ in range(10):  # both warm, connections open, the same answer
                await timed(agent_fetch, "w1", expect="w1")
                await timed(direct, "w1", expect="w1")
            res.warm, res.warm_floor = await alternate(
                agent_fetch, "w1", direct, "w1", args.warm_requests
            )
            say(f"warm via agent: {res.warm.text()}")
            say(f"warm direct to bare workerd: {res.warm_floor.text()}")
    finally:
        await workerd.kill(bare)


def rss_text(r: Rss) -> str:
    other = f" + other {mib(r.other_kib)}" if r.other_kib else ""
    return (
        f"agent {mib(r.agent_kib)} + workerd {mib(r.workerd_kib)} "
        f"({r.workerds} process{'' if r.workerds == 1 else 'es'}){other} = {mib(r.total_kib)}"
    )


# ---- the table -------------------------------------------------------------------------
def table(args: argparse.Namespace, res: Results) -> list[str]:
    rows: list[tuple[str, str, str, str]] = []

    def row(label: str, lat: Lat | None, note: str) -> None:
        if lat is not None:
            rows.append((label, f"{lat.p50 * 1000:.2f}", f"{lat.p99 * 1000:.2f}", note))

    base_level = args.levels[0]
    base = res.serving[base_level][0]
    for level, (lat, stale) in res.serving.items():
        note = f"/{base_level}: p50 {ratio(lat.p50, base.p50)}, p99 {ratio(lat.p99, base.p99)}"
        if level == base_level:
            note = "floor"
        if level == 10_000 and base_level == 10:
            note += f" (criterion: p50 <= {CRITERION})"
        if stale:
            note += f"; {stale} stale answers after the 200"
        row(f"PUT->serving, {level:,} Workers present", lat, note)
    top = args.levels[-1]
    cold, cold_floor = res.cold, res.cold_floor
    if cold and cold_floor:
        note = f"p50 {ratio(cold.p50, cold_floor.p50)} the floor"
        row(f"cold first request, {top:,} present", cold, note)
        row("  floor: workerLoader first load (bare)", cold_floor, "floor")
    warm, warm_floor = res.warm, res.warm_floor
    if warm and warm_floor:
        note = f"p50 {ratio(warm.p50, warm_floor.p50)}, p99 {ratio(warm.p99, warm_floor.p99)}"
        row("warm request via the agent", warm, note)
        row("  floor: direct to a bare workerd", warm_floor, "floor")
    out = [f"{'figure':<42}{'p50 ms':>10}{'p99 ms':>10}   vs floor", "-" * 90]
    out += [f"{a:<42}{b:>10}{c:>10}   {d}" for a, b, c, d in rows]
    out.append("-" * 90)
    for start, stop, seconds in res.fills:
        rate = (stop - start) / seconds
        out.append(f"fill {start:,} -> {stop:,} Workers: {seconds:.2f} s, {rate:.0f} Workers/s")
    if res.rss:
        floor = res.rss_floor_kib
        out.append(f"RSS at {top:,} Workers, {args.hot} hot: {rss_text(res.rss)}")
        out.append(
            f"  floor: one bare workerd with {args.hot} Workers loaded {mib(floor)} "
            f"({mib(res.rss_floor_idle_kib)} idle); total {ratio(res.rss.total_kib, floor)}"
        )
    return out


# ---- main ------------------------------------------------------------------------------
def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--levels", default="10,1000,10000", help="Workers present, ascending")
    ap.add_argument("--samples", type=int, default=30, help="PUT->serving and cold samples")
    ap.add_argument("--hot", type=int, default=100, help="Workers kept hot for RSS")
    ap.add_argument("--hot-seconds", type=float, default=10.0, help="traffic before RSS")
    ap.add_argument("--warm-requests", type=int, default=300, help="to the agent and bare each")
    ap.add_argument("--namespaces", type=int, default=100, help="Workers spread over these")
    ap.add_argument("--concurrency", type=int, default=200, help="PUTs in flight when filling")
    ap.add_argument("--quick", action="store_true", help="levels 10,200 and few samples")
    args = ap.parse_args(argv)
    if args.quick:
        args.levels, args.samples, args.hot_seconds, args.warm_requests = "10,200", 5, 6.0, 50
    try:
        args.levels = [int(x) for x in args.levels.split(",")]
    except ValueError:
        ap.error("--levels: comma-separated numbers of Workers")
    if args.levels != sorted(set(args.levels)) or args.levels[0] < 1:
        ap.error("--levels: ascending, distinct, at least 1")
    if args.samples < 1 or args.hot < 1 or args.namespaces < 1:
        ap.error("--samples, --hot and --namespaces: at least 1")
    if args.hot + args.samples > args.levels[-1]:
        ap.error("the largest level needs --hot Workers plus --samples never requested")
    return args


async def run(args: argparse.Namespace) -> None:
    say(
        f"workerd {workerd_version(find_workerd())}, {os.cpu_count()} CPUs; levels "
        f"{args.levels}, {args.samples} samples, {args.hot} hot, {args.namespaces} namespaces"
    )
    res = Results(fills=[], serving={})
    with tempfile.TemporaryDirectory(prefix="agent-bench-") as tmp:
        agent = await asyncio.to_thread(start_agent, Path(tmp) / "agent", timeout=120)
        try:
            await agent_phase(args, agent, res)
            await floor_phase(args, agent, Path(tmp), res)
        except BaseException:
            say(f"agent log, last lines:\n{agent.log_tail()}")
            raise
        finally:
            await asyncio.to_thread(agent.stop)
    say("")
    for line in table(args, res):
        say(line)


def main() -> None:
    asyncio.run(run(parse_args(sys.argv[1:])))


if __name__ == "__main__":
    main()
