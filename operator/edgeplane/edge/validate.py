"""Validation of new bundles in throw-away workerds, before they reach the serving config.

`narrow` is the search for the bundles that do not load, given a coroutine that tries a set
of bundles; `Validator` tries them in a workerd of their own, on ephemeral loopback ports."""

from __future__ import annotations

import asyncio
import re
import shutil
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path

from edgeplane.edge import render, workerd
from edgeplane.edge.metrics import Metrics
from edgeplane.wire import Bundle, Deployment, redact, secrets_of

_SERVICE_RE = re.compile(r"service w:([a-z0-9.-]+)@([0-9a-f]{64})\b")
MAX_MESSAGE = 4000

# Loads the bundles together: None when they all load, else workerd's message.
Attempt = Callable[[list[Bundle]], Awaitable[str | None]]


async def narrow(bundles: list[Bundle], attempt: Attempt) -> dict[str, str]:
    """Version -> the message for each bundle that does not load. One attempt when all are
    good; when the message names the failing service, that bundle is dropped and the rest
    retried; when it names none (e.g. a timeout), the set is bisected down to the culprits."""
    errors: dict[str, str] = {}
    todo = list(bundles)
    while todo:
        msg = await attempt(todo)
        if msg is None:
            return errors
        m = _SERVICE_RE.search(msg)
        named = m.group(2) if m else None
        if named and any(b.version == named for b in todo):
            errors[named] = msg
            todo = [b for b in todo if b.version != named]
            continue
        if len(todo) == 1:
            errors[todo[0].version or ""] = msg
            return errors
        half = len(todo) // 2
        errors.update(await narrow(todo[:half], attempt))
        errors.update(await narrow(todo[half:], attempt))
        return errors
    return errors


def as_deployments(bundles: list[Bundle]) -> list[Deployment]:
    """The bundles as deployments without routes, one per Worker, its first bundle primary:
    versions of one Worker load together, as they are served (Durable Object classes live
    in the primary)."""
    by_worker: dict[str, list[Bundle]] = {}
    for b in bundles:
        by_worker.setdefault(b.worker, []).append(b)
    return [
        Deployment(worker=w, primary=bs[0].version or "", versions=tuple(bs))
        for w, bs in by_worker.items()
    ]


class Validator:
    def __init__(self, workerd_bin: Path, run_dir: Path, metrics: Metrics, timeout: float) -> None:
        self.workerd_bin = workerd_bin
        self.run_dir = run_dir
        self.metrics = metrics
        self.timeout = timeout
        self._runs = 0

    async def validate(self, bundles: list[Bundle]) -> dict[str, str]:
        """Version -> workerd's message for each of `bundles` that does not load."""
        return await narrow(bundles, self._attempt)

    async def _attempt(self, bundles: list[Bundle]) -> str | None:
        self.metrics.validation_runs.inc()
        deps = as_deployments(bundles)
        self._runs += 1
        vdir = self.run_dir / f"validate-{self._runs}"
        try:
            paths = render.Paths(do_dir=vdir / "do", kv_dir=vdir / "kv")
            cfg = vdir / "config.capnp"
            await asyncio.to_thread(workerd.write_config, cfg, deps, paths)
            try:
                p = await workerd.start(
                    self.workerd_bin,
                    cfg,
                    socket_fd=None,
                    # Loading many bundles takes longer; a lone bundle gets the plain limit.
                    start_timeout=self.timeout + 0.05 * (len(bundles) - 1),
                    kill_on_parent_death=signal.SIGKILL,
                )
            except workerd.StartFailed as e:
                return redact(e.message, secrets_of(deps))[:MAX_MESSAGE]
            await workerd.kill(p)
            return None
        finally:
            await asyncio.to_thread(shutil.rmtree, vdir, True)
