"""Faults in the agent's state dir, injected for real between two runs of a real agent (real
workerd): a corrupt or truncated store file is set aside, counted and logged, and the rest
is served; a stored Durable Object Worker whose cell no longer starts is reported failed,
and neither stops the agent nor the watchdog's restart of the other cells. And a full disk
under a running agent (a real small filesystem: a tmpfs in a mount namespace of its own):
a batch is stored whole or not at all, and the location keeps serving."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import resource
import signal
import time
from pathlib import Path

import aiohttp
import pytest

from edgeplane.wire import BundleBinding, Deployment
from tests.integration.edge_fixtures import (
    AgentProc,
    body_of,
    bundle,
    deployment,
    edge_agents,  # noqa: F401 (fixture)
    small_fs,
    start_agent,
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
                # Wide: a request given up on may still reach (and count in) the Durable Object.
                st, body = await get(s, agent, host, timeout=aiohttp.ClientTimeout(total=8))
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


# The full-disk test's big Worker: its code file and its deployment file are each about PAD
# bytes (text bindings: modules are blobs, stored once), so a disk with 1.5 PAD free takes
# the code and not the deployment.
PAD = 300_000
COALESCE_ARGS = ("--coalesce", "0.5")
BINDING = 5000  # the largest text binding


def _padded(worker: str, body: str, pad: int = 0) -> Deployment:
    js = f"export default {{ fetch() {{ return new Response({body!r}) }} }};"
    fill = tuple(
        BundleBinding(name=f"PAD{i}", text=body[0] * BINDING) for i in range(pad // BINDING)
    )
    return deployment(bundle(worker, js, bindings=fill), routes=(f"{worker.split('.')[1]}.test/*",))


def _durable(body: str) -> Deployment:
    """A Worker with a Durable Object class (so it runs in a cell of its own) answering
    `body`."""
    js = (
        'import { DurableObject } from "cloudflare:workers";\n'
        "export class Room extends DurableObject {}\n"
        f"export default {{ fetch() {{ return new Response({body!r}) }} }};"
    )
    b = bundle("ns.d", js, bindings=(BundleBinding(name="ROOM", durableObjectClass="Room"),))
    return deployment(b, routes=("d.test/*",))


def _free(d: Path) -> int:
    st = os.statvfs(d)
    return st.f_bavail * st.f_frsize


def _fill(filler: Path, leave: int) -> None:
    """Grow `filler` until its filesystem has at most `leave` bytes free."""
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        while (free := _free(filler.parent)) > leave:
            try:
                os.write(fd, b"\0" * min(1 << 16, free - leave))
            except OSError as e:
                if e.errno == errno.ENOSPC:
                    return
                raise
    finally:
        os.close(fd)


async def _metric(s: aiohttp.ClientSession, agent: AgentProc, sample: str) -> float:
    async with s.get(f"{agent.api_url}/metrics", headers=agent.headers()) as r:
        text = await r.text()
    found = [x.rsplit(" ", 1)[1] for x in text.splitlines() if x.startswith(sample + " ")]
    return float(found[0]) if found else 0.0


async def _serves(s: aiohttp.ClientSession, agent: AgentProc, expected: dict[str, str]) -> None:
    within = aiohttp.ClientTimeout(total=30)
    got = {h: await get(s, agent, h, timeout=within) for h in expected}
    assert got == {h: (200, body) for h, body in expected.items()}


def _leftovers(state: Path) -> list[str]:
    return sorted(p.name for d in ("deployments", "code") for p in (state / d).glob(".*.tmp-*"))


async def _push_together(s: aiohttp.ClientSession, agent: AgentProc, *ds: Deployment):  # type: ignore[no-untyped-def]
    """PUT `ds` at once, so that they share one batch (within its coalescing window)."""
    return await asyncio.gather(*(put(s, agent, d) for d in ds))


async def _front_on_a_full_disk(s: aiohttp.ClientSession, agent: AgentProc) -> None:
    """Not a byte free: a front that crashes is started again (its config is never on disk,
    its state file is written if it can be), and a push is answered 5xx, never refused."""
    state = agent.state_dir
    _fill(state / "filler", 0)
    assert _free(state) == 0
    front = json.loads((state / "run" / "dataplane.json").read_text())["front"]["pid"]
    os.kill(front, signal.SIGKILL)
    # The public socket is the agent's: requests wait in its backlog for the new front.
    assert await _until_ok(agent, "a.test", 20) == "a1"
    await _serves(s, agent, {"a.test": "a1", "b.test": "b1"})
    async with s.get(f"{agent.api_url}/readyz") as r:
        assert r.status == 200, await r.text()
    # Its state file could not be written: counted (and logged), not raised.
    sample = 'edgeplane_agent_store_write_failures_total{file="front-state"}'
    assert await _metric(s, agent, sample) >= 1.0
    status, body = await put(s, agent, _padded("ns.c", "c1"))
    assert status in (503, 507), (status, body)
    # Routes without a Worker: not taken in memory either when they cannot be stored.
    url, patterns = f"{agent.api_url}/v1/exclusions/ns", {"patterns": ["static.test/*"]}
    async with s.put(url, json=patterns, headers=agent.headers()) as r:
        assert r.status == 507, await r.text()
    os.truncate(state / "filler", 0)
    async with s.put(url, json=patterns, headers=agent.headers()) as r:
        assert (r.status, (await r.json())["changed"]) == (200, True)


async def test_a_full_disk_stores_a_batch_whole_or_not_at_all(tmp_path: Path) -> None:
    with small_fs(tmp_path / "agent", "12m") as ns:
        # The three pushes must share a batch: on a loaded machine the large one could
        # arrive more than the default 20 ms after the others and make a batch of its own.
        agent = start_agent(tmp_path / "agent", mount_ns=ns, extra_args=COALESCE_ARGS)
        try:
            await _full_disk(agent, tmp_path, ns)
        finally:
            agent.stop()


async def _full_disk(agent: AgentProc, tmp_path: Path, ns: int) -> None:
    state = agent.state_dir
    a1, b1, d1 = _padded("ns.a", "a1", PAD), _padded("ns.b", "b1"), _durable("d1")
    a2, b2, d2 = _padded("ns.a", "a2", PAD), _padded("ns.b", "b2"), _durable("d2")
    before = {"a.test": "a1", "b.test": "b1", "d.test": "d1"}
    async with aiohttp.ClientSession() as s:
        assert [r[0] for r in await _push_together(s, agent, a1, b1, d1)] == [200] * 3
        # The fault: room for a2's code file, not for its deployment file as well. b2 (small)
        # comes first in the batch: stored one file at a time, it would be on disk, and
        # served after a restart, although its push was refused; d2's own cell would be
        # started, and served, before the store write failed.
        _fill(state / "filler", int(1.5 * PAD))
        room = _free(state)
        offset = agent.log.stat().st_size
        answers = await _push_together(s, agent, b2, d2, a2)
        assert [st for st, _ in answers] == [507] * 3, answers
        assert all("out of disk space" in str(body["error"]) for _, body in answers), answers
        await _serves(s, agent, before)
        # Nothing of the batch was left behind: no temp file, no code file, no room taken.
        assert _leftovers(state) == []
        assert not (state / "code" / f"{a2.primary}.json").exists()
        assert _free(state) >= room - 64 * 1024
        assert await _metric(
            s, agent, 'edgeplane_agent_store_write_failures_total{file="batch"}'
        ) == 1.0
        lines = [x for x in _log_since(agent, offset) if "could not store the batch" in x]
        assert len(lines) == 1 and "No space left on device" in lines[0], lines
        await _front_on_a_full_disk(s, agent)
    # Disk and memory agree: a new agent (nothing adopted) serves what was answered.
    agent.kill()
    agent = start_agent(tmp_path / "agent", mount_ns=ns, extra_args=COALESCE_ARGS)
    try:
        async with aiohttp.ClientSession() as s:
            await _serves(s, agent, before)
            # Room again: the same push now succeeds.
            (state / "filler").unlink()
            assert [r[0] for r in await _push_together(s, agent, b2, d2, a2)] == [200] * 3
            await _serves(s, agent, {"a.test": "a2", "b.test": "b2", "d.test": "d2"})
    finally:
        agent.kill()


async def test_out_of_file_descriptors_refuses_nothing_and_replaces_nothing(edge_agents) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    agent = edge_agents("a")
    pid = agent.popen.pid
    async with aiohttp.ClientSession() as s:  # one kept-alive connection: no accept needed
        assert (await put(s, agent, _padded("ns.a", "a1")))[0] == 200
        restarts = 'edgeplane_agent_workerd_restarts_total{process="cell",reason="crash"}'
        limit = resource.prlimit(pid, resource.RLIMIT_NOFILE)
        # The fault: the agent keeps the fds it has open, and gets no new one (an fd's
        # number must be below the limit: 3 leaves it stdin, stdout and stderr).
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (3, limit[1]))
        try:
            status, body = await put(s, agent, _padded("ns.b", "b1"))
            # Not a refusal the operator would keep: retryable, and says why.
            assert status == 503, body
            assert "Too many open files" in body["error"], body
            await asyncio.sleep(3)  # several watchdog passes, none able to ping
            await _serves(s, agent, {"a.test": "a1"})  # the front's fds are its own
            async with s.get(f"{agent.api_url}/readyz", timeout=aiohttp.ClientTimeout(30)) as r:
                assert r.status == 200, await r.text()
            # Pings it could not send are no reason to replace a process.
            assert await _metric(s, agent, restarts) == 0.0
            assert await _metric(s, agent, restarts.replace("crash", "hang")) == 0.0
        finally:
            resource.prlimit(pid, resource.RLIMIT_NOFILE, limit)
        assert (await put(s, agent, _padded("ns.b", "b1")))[0] == 200
        await _serves(s, agent, {"a.test": "a1", "b.test": "b1"})


async def test_a_version_whose_code_went_missing_is_served_once_it_is_back(edge_agents) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """A cell that failed to load a version (its code file gone: a crash, a cold load in the
    middle of a switch) loads it again once the file is back, as when it is pinned again;
    the failed load is not kept for the life of the cell."""
    agent = edge_agents("a")
    a, b = text_worker("ns.lost", "A"), text_worker("ns.lost", "B")
    async with aiohttp.ClientSession() as s:
        assert (await put(s, agent, deployment(a, routes=("lost.test/*",))))[0] == 200
        # Lost before any request loaded it.
        next(agent.state_dir.rglob(f"code/{a.version}.json")).unlink()
        assert (await get(s, agent, "lost.test"))[0] == 500
        assert (await put(s, agent, deployment(b, routes=("lost.test/*",))))[0] == 200
        assert await get(s, agent, "lost.test") == (200, "B")
        # Pinned back: pushed again, its code file written again.
        assert (await put(s, agent, deployment(a, routes=("lost.test/*",))))[0] == 200
        assert next(agent.state_dir.rglob(f"code/{a.version}.json")).exists()
        answers = [await get(s, agent, "lost.test") for _ in range(3)]
        assert answers == [(200, "A")] * 3, answers
