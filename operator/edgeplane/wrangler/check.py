"""`edgeplane import --check`: start each imported Worker in a throw-away workerd (the one
edgeplane pins) and ask it for `/`, before anything is written."""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from edgeplane.edge import workerd
from edgeplane.wrangler.trial import trial_config

START_TIMEOUT = 30.0
REQUEST_TIMEOUT = 10.0


@dataclass(frozen=True)
class Outcome:
    worker: str
    started: bool
    detail: str  # the response to GET /, or why it did not start

    def line(self) -> str:
        verdict = "starts in workerd" if self.started else "does NOT start in workerd"
        return f"check: {self.worker} {verdict}: {self.detail}"


def check_all(docs: list[dict[str, Any]]) -> list[Outcome]:
    maps = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ConfigMap"}
    workers = [d for d in docs if d["kind"] == "Worker"]
    return asyncio.run(_check_all(workers, maps))


async def _check_all(
    workers: list[dict[str, Any]], maps: Mapping[str, Mapping[str, Any]]
) -> list[Outcome]:
    return [await check_one(w, maps) for w in workers]


async def check_one(worker: Mapping[str, Any], maps: Mapping[str, Mapping[str, Any]]) -> Outcome:
    name = worker["metadata"]["name"]
    with tempfile.TemporaryDirectory(prefix="edgeplane-check-") as tmp:
        config = Path(tmp) / "worker.capnp"
        config.write_text(trial_config(worker, maps))
        try:
            proc = await workerd.start(workerd.find_workerd(), config,
                                       sockets={"http": None}, start_timeout=START_TIMEOUT)
        except workerd.StartFailed as e:
            return Outcome(name, False, first_error(e.message))
        try:
            return Outcome(name, True, await _get(proc))
        finally:
            await workerd.kill(proc)


async def _get(proc: workerd.Proc) -> str:
    url = f"http://127.0.0.1:{proc.ports['http']}/"
    begun = time.monotonic()
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
    try:
        async with aiohttp.ClientSession(timeout=timeout, trust_env=False) as s, \
                s.get(url, headers={"Host": "localhost"}) as r:
            await r.read()
            status = r.status
    except (aiohttp.ClientError, TimeoutError) as e:
        return f"GET / failed: {type(e).__name__}"
    ms = (time.monotonic() - begun) * 1000
    errors = first_error(proc.stderr_text()) if status >= 500 else ""
    return f"GET / -> {status} in {ms:.0f} ms" + (f" ({errors})" if errors else "")


def first_error(stderr: str) -> str:
    """The line of workerd's output that says what went wrong."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    for ln in lines:
        if "rror" in ln or "Uncaught" in ln:
            return ln[:300]
    return (lines[0] if lines else "workerd exited")[:300]
