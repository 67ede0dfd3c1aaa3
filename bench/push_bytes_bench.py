"""Bytes sent to a location for a one-line change of a 300 KB Worker (issue #19 item 3). A
script that prints figures; it asserts nothing.

    PYTHONPATH=operator:. .venv/bin/python bench/push_bytes_bench.py [--modules 10]

One real agent (localstack.stack.Agent, with workerd) and the operator's own client
(distribute/client.AgentClient). The Worker is a main module and --modules libraries of
300 KB / --modules each, random text that gzip cannot squash (~75 % of its size gzipped).
Each figure is read from the agent's `edgeplane_agent_received_bytes_total{kind}` (bytes as
sent, gzipped when large), around one push:

- first deploy: everything the location lacks;
- a one-line change of one library, modules by reference (this release): the deployment
  record and the changed library's blob;
- the same change sent whole (an agent that does not take modules by reference, and every
  push before this release): the floor it is compared with, and the target, the changed
  module's own size.
Then the same for a second Worker sharing all libraries: only its record and main module.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import string
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

_REPO = Path(__file__).resolve().parents[1]
for _p in (str(_REPO), str(_REPO / "operator")):
    if _p not in sys.path:
        sys.path.insert(0, _p)

from edgeplane.distribute.client import AgentClient, Endpoint  # noqa: E402
from edgeplane.localstack.stack import Agent  # noqa: E402
from edgeplane.wire import Bundle, BundleModule, Deployment, ModuleType, Route  # noqa: E402

TOTAL = 300_000


def library(i: int, size: int, variant: str = "") -> str:
    rng = random.Random(i)
    head = f"export const name{i} = {i}{variant};\nexport const text{i} = '"
    body = "".join(rng.choices(string.ascii_letters + " ", k=size - len(head) - 3))
    return f"{head}{body}';\n"


def worker(name: str, libs: list[str], tag: str) -> Deployment:
    imports = "".join(f'import {{ name{i} }} from "lib{i}.js";\n' for i in range(len(libs)))
    names = " + ".join(f"name{i}" for i in range(len(libs)))
    main = imports + (
        f"export default {{ fetch() {{ return new Response('{tag}:' + ({names})); }} }};"
    )
    modules = [BundleModule(name="index.js", type=ModuleType.ES_MODULE, content=main)]
    modules += [
        BundleModule(name=f"lib{i}.js", type=ModuleType.ES_MODULE, content=text)
        for i, text in enumerate(libs)
    ]
    b = Bundle(
        worker=name, compatibilityDate="2025-01-01", mainModule="index.js", modules=tuple(modules)
    ).with_version()
    host = name.split(".")[1]
    return Deployment(
        worker=name, primary=b.version or "", versions=(b,),
        routes=(Route(pattern=f"{host}.bench/*"),),
    )


async def received(s: aiohttp.ClientSession, agent: Agent) -> dict[str, float]:
    auth = {"Authorization": f"Bearer {agent.token}"}
    async with s.get(f"{agent.api_url}/metrics", headers=auth) as r:
        text = await r.text()
    sample = r'^edgeplane_agent_received_bytes_total\{kind="(\w+)"\} (\S+)$'
    found = re.findall(sample, text, re.M)
    return {k: float(v) for k, v in found}


async def push(
    s: aiohttp.ClientSession, agent: Agent, client: AgentClient, d: Deployment, by_ref: bool
) -> tuple[float, float, float]:
    """(record bytes, blob bytes, seconds) of one push."""
    ep = Endpoint("bench", agent.api_url, agent.token)
    before = await received(s, agent)
    started = time.monotonic()
    await client.put(ep, d, by_reference=by_ref)
    took = time.monotonic() - started
    after = await received(s, agent)
    return (
        after.get("deployment", 0) - before.get("deployment", 0),
        after.get("blob", 0) - before.get("blob", 0),
        took,
    )


def line(what: str, figures: tuple[float, float, float]) -> None:
    record, blob, took = figures
    print(f"  {what:<44} {record:>9,.0f} B record {blob:>9,.0f} B blobs  "
          f"{record + blob:>9,.0f} B total  {took * 1000:6.0f} ms")


async def run(modules: int, root: Path) -> None:
    agent = Agent("bench", "bench", root)
    agent.start()
    client = AgentClient()
    size = TOTAL // modules
    libs = [library(i, size) for i in range(modules)]
    changed = [*libs[:3], library(3, size, variant="0"), *libs[4:]]
    try:
        async with aiohttp.ClientSession() as s:
            print(f"One Worker of {modules} libraries x {size:,} B (+ main module); one real agent")
            first = await push(s, agent, client, worker("b.app", libs, "v1"), True)
            line("first deploy, by reference", first)
            by_ref = await push(s, agent, client, worker("b.app", changed, "v1"), True)
            line("one-line change, by reference", by_ref)
            back = await push(s, agent, client, worker("b.app", libs, "v1"), True)
            line("the change back (both versions held)", back)
            whole = await push(s, agent, client, worker("b.app", changed, "v2"), False)
            line("one-line change, sent whole (floor)", whole)
            shared = await push(s, agent, client, worker("b.other", libs, "o1"), True)
            line("a second Worker sharing the libraries", shared)
            target = len(changed[3].encode())
            sent = by_ref[0] + by_ref[1]
            print(f"\nchanged module: {target:,} B; sent for the change: {sent:,.0f} B "
                  f"({by_ref[1]:,.0f} B of it blob); sent whole: {whole[0] + whole[1]:,.0f} B; "
                  f"ratio whole / by reference: {(whole[0] + whole[1]) / sent:.1f}x")
            verdict = "PASS" if by_ref[1] == target else "FAIL"
            print(f"{verdict}: the blob bytes for the change are the changed module only "
                  f"({by_ref[1]:,.0f} == {target:,})")
    finally:
        await client.close()
        agent.stop()


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    p.add_argument("--modules", type=int, default=10, help="libraries the 300 KB is split into")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="push-bytes-") as tmp:
        asyncio.run(run(args.modules, Path(tmp)))


if __name__ == "__main__":
    main()
