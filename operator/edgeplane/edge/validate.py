"""Validation of new versions before a push is accepted: each is loaded in a validator, a
cell of its own that serves nothing, through the same loader the serving cells use, under a
check module that also asks for a fetch handler (host_js.py). A few processes for all
checks (a check is CPU in workerd: one per core), none per check; a version that does not
finish loading within the timeout (a loop at top level) gets its process killed and
replaced, and the versions checked alongside it are checked again one at a time."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import aiohttp

from edgeplane.edge import render, workerd
from edgeplane.edge.batch import MAX_MESSAGE
from edgeplane.edge.metrics import Metrics
from edgeplane.edge.store import private_dir, write_private
from edgeplane.wire import Bundle, redact

CONCURRENCY = 8  # checks sent to one validator at once
PROCESSES = max(1, min(4, os.cpu_count() or 1))
# Each check leaves its isolate cached in the validator (about 1.5 MB): the process is
# replaced after this many checks, and stopped once idle, so its memory stays bounded.
RECYCLE_AFTER = 100
IDLE_STOP = 5.0
_TIMED_OUT = "timeout"


class Validator:
    """Checks new versions, spread over PROCESSES validators."""

    def __init__(
        self,
        workerd_bin: Path,
        run_dir: Path,
        metrics: Metrics,
        timeout: float,
        internal_key: str,
        http: Callable[[], aiohttp.ClientSession],
    ) -> None:
        self.dir = run_dir / "check"
        self.checkers = [
            _Checker(workerd_bin, run_dir, self.dir, metrics, timeout, internal_key, http, i)
            for i in range(PROCESSES)
        ]

    async def validate(self, bundles: list[Bundle]) -> dict[str, str]:
        """Version -> why it does not load, for each of `bundles` that does not."""
        n = len(self.checkers)
        # Idle validators first: one busy with a slow check does not hold the next batch.
        checkers = sorted(self.checkers, key=lambda c: c.busy)
        found = await asyncio.gather(
            *(c.validate(bundles[i::n]) for i, c in enumerate(checkers) if bundles[i::n])
        )
        return {v: e for errors in found for v, e in errors.items()}

    async def close(self) -> None:
        await asyncio.gather(*(c.close() for c in self.checkers))
        await asyncio.to_thread(shutil.rmtree, self.dir, True)


class _Checker:
    """One validator process and the checks sent to it."""

    def __init__(
        self,
        workerd_bin: Path,
        run_dir: Path,
        check_dir: Path,
        metrics: Metrics,
        timeout: float,
        internal_key: str,
        http: Callable[[], aiohttp.ClientSession],
        index: int,
    ) -> None:
        self.index = index
        self.workerd_bin = workerd_bin
        self.run_dir = run_dir
        self.dir = check_dir  # the code specs it loads, shared by every validator
        self.metrics = metrics
        self.timeout = timeout
        self.internal_key = internal_key
        self._http = http  # the agent's client for its own processes
        self.proc: workerd.Proc | None = None
        self._checks = 0  # since the process started
        self._idle: asyncio.TimerHandle | None = None
        self._lock = asyncio.Lock()  # one batch of checks at a time
        self._starting = asyncio.Lock()

    @property
    def busy(self) -> bool:
        return self._lock.locked()

    async def close(self) -> None:
        if self._idle is not None:
            self._idle.cancel()
        if self.proc is not None:
            await workerd.kill(self.proc)
            self.proc = None

    async def validate(self, bundles: list[Bundle]) -> dict[str, str]:
        errors: dict[str, str] = {}
        async with self._lock:
            if self._idle is not None:
                self._idle.cancel()
            for i in range(0, len(bundles), CONCURRENCY):
                if self._checks >= RECYCLE_AFTER:
                    await self._restart()
                chunk = bundles[i : i + CONCURRENCY]
                found = await asyncio.gather(*(self._check(b) for b in chunk))
                timed_out = [b for b, e in zip(chunk, found, strict=True) if e == _TIMED_OUT]
                errors |= {
                    b.version or "": e
                    for b, e in zip(chunk, found, strict=True)
                    if e is not None and e != _TIMED_OUT
                }
                if timed_out:
                    await self._restart()  # it is stuck in one of them: find which
                for b in timed_out:
                    err = _TIMED_OUT if len(chunk) == 1 else await self._check_alone(b)
                    if err is not None:
                        errors[b.version or ""] = self._message(err)
            loop = asyncio.get_running_loop()
            self._idle = loop.call_later(
                IDLE_STOP, lambda: asyncio.ensure_future(self._stop_idle())
            )
        return errors

    async def _stop_idle(self) -> None:
        if not self._lock.locked():
            async with self._lock:  # a check that starts meanwhile waits for a new process
                await self._restart()

    async def _check_alone(self, b: Bundle) -> str | None:
        err = await self._check(b)
        if err == _TIMED_OUT:
            await self._restart()
        return err

    def _message(self, err: str) -> str:
        if err != _TIMED_OUT:
            return err
        return (
            f"the Worker did not finish loading within {self.timeout:g}s (a loop at the top "
            "level of a module, or a very slow one?)"
        )

    async def _check(self, b: Bundle) -> str | None:
        """None if `b` loads and has a fetch handler, _TIMED_OUT, or workerd's message."""
        version = b.version or ""
        spec = self.dir / f"{version}.json"
        self.metrics.validation_runs.inc()
        self._checks += 1
        try:
            proc = await self._ensure()
            await asyncio.to_thread(_write_spec, spec, b)
            url = f"http://127.0.0.1:{proc.ports['http']}/__edgeplane/check"
            try:
                async with asyncio.timeout(self.timeout):
                    headers = {
                        "edgeplane-version": version,
                        "edgeplane-internal": self.internal_key,
                    }
                    async with self._http().post(url, headers=headers) as r:
                        doc = await r.json()
            except TimeoutError:
                return _TIMED_OUT
            except (aiohttp.ClientError, OSError, ValueError) as e:
                return f"the validator failed: {e!r}"
            if r.status == 200:
                return None
            return redact(str(doc.get("error", doc)), b.secrets())[:MAX_MESSAGE]
        except workerd.StartFailed as e:
            return f"the validator did not start: {e.message}"[:MAX_MESSAGE]
        finally:
            await asyncio.to_thread(spec.unlink, True)

    async def _ensure(self) -> workerd.Proc:
        async with self._starting:  # concurrent checks share one start
            if self.proc is None or not self.proc.alive():
                self.proc = await self._start()
            return self.proc

    async def _start(self) -> workerd.Proc:
        private_dir(self.dir)
        paths = render.Paths(
            do_dir=self.dir / "do", kv_dir=self.dir / "kv", code_dir=self.dir, front_dir=self.dir
        )
        cfg = self.run_dir / f"config-validator-{self.index}.capnp"
        # No front: a check loads code, and top-level code cannot make requests.
        await asyncio.to_thread(
            write_private, cfg, render.cell_config(paths, 9, self.internal_key).encode()
        )
        try:
            return await workerd.start(
                self.workerd_bin, cfg, sockets={"http": None}, start_timeout=30.0
            )
        finally:
            with contextlib.suppress(OSError):
                cfg.unlink()

    async def _restart(self) -> None:
        """End the process; the next check starts a new one."""
        if self.proc is not None:
            await workerd.kill(self.proc)
            self.proc = None
        self._checks = 0


def _write_spec(path: Path, b: Bundle) -> None:
    """Rendered in the thread too: for the largest Workers that takes seconds."""
    write_private(path, json.dumps(render.code_spec(b)).encode())
