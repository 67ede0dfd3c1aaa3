"""Validation of new bundles in throw-away workerds, before they reach the serving config:
`Validator` tries a set of bundles in a workerd of its own, on ephemeral loopback ports;
`batch.narrow` decides which sets to try."""

from __future__ import annotations

import asyncio
import shutil
import signal
from pathlib import Path

from edgeplane.edge import render, workerd
from edgeplane.edge.batch import MAX_MESSAGE, as_deployments, narrow
from edgeplane.edge.metrics import Metrics
from edgeplane.wire import Bundle, redact, secrets_of


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
            await asyncio.to_thread(workerd.write_config, cfg, deps, paths, render.RouterSettings())
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
