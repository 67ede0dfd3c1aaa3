"""Validation of new versions before a push is accepted: each is loaded in a validator, a
cell of its own that serves nothing, through the same loader the serving cells use, under a
check module that also asks for a fetch handler (host_js.py). A few processes for all
checks (a check is CPU in workerd: one per core), none per check; a version that does not
finish loading within the timeout (a loop at top level) gets its process killed and
replaced, and the versions checked alongside it, or alongside one that ended the process
(a heap bomb), are checked again one at a time: only a version that fails alone is
refused. A validator that cannot check at all (it did not start, no file descriptors, no
disk) refuses nothing: those versions are answered 503, retryable."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from edgeplane.edge import batch as batches
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


@dataclass(frozen=True)
class Outcome:
    kind: str  # batch.CHECK_*
    message: str = ""


def _unavailable(why: str) -> str:
    return f"this location cannot check new versions now, retry: {why}"[:MAX_MESSAGE]


@dataclass
class Found:
    """What a validation found: version → why it does not load (refused: 422), and version
    → why it could not be checked (503, retryable)."""

    errors: dict[str, str] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)

    def add(self, b: Bundle, outcome: Outcome, *, alone: bool) -> bool:
        """Record `outcome` for `b`; True if `b` must be checked again on its own."""
        verdict = batches.check_verdict(outcome.kind, alone)
        if verdict == "blame":
            self.errors[b.version or ""] = outcome.message
        elif verdict == "unavailable":
            self.unavailable[b.version or ""] = outcome.message
        return verdict == "again"


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

    async def validate(self, bundles: list[Bundle]) -> Found:
        """Which of `bundles` do not load, and which could not be checked."""
        n = len(self.checkers)
        # Idle validators first: one busy with a slow check does not hold the next batch.
        checkers = sorted(self.checkers, key=lambda c: c.busy)
        parts = await asyncio.gather(
            *(c.validate(bundles[i::n]) for i, c in enumerate(checkers) if bundles[i::n])
        )
        out = Found()
        for f in parts:
            out.errors |= f.errors
            out.unavailable |= f.unavailable
        return out

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

    async def validate(self, bundles: list[Bundle]) -> Found:
        found = Found()
        async with self._lock:
            if self._idle is not None:
                self._idle.cancel()
            for i in range(0, len(bundles), CONCURRENCY):
                if self._checks >= RECYCLE_AFTER:
                    await self._restart()
                chunk = bundles[i : i + CONCURRENCY]
                outcomes = await asyncio.gather(*(self._check(b) for b in chunk))
                again = [
                    b
                    for b, o in zip(chunk, outcomes, strict=True)
                    if found.add(b, o, alone=len(chunk) == 1)
                ]
                if again:
                    # One of them timed out or killed the process: a fresh process, then
                    # each on its own, so that only the one at fault is refused.
                    await self._restart()
                for b in again:
                    outcome = await self._check(b)
                    if outcome.kind in (batches.CHECK_TIMED_OUT, batches.CHECK_CRASHED):
                        await self._restart()
                    found.add(b, outcome, alone=True)
            loop = asyncio.get_running_loop()
            self._idle = loop.call_later(
                IDLE_STOP, lambda: asyncio.ensure_future(self._stop_idle())
            )
        return found

    async def _stop_idle(self) -> None:
        if not self._lock.locked():
            async with self._lock:  # a check that starts meanwhile waits for a new process
                await self._restart()

    def _timed_out(self) -> Outcome:
        return Outcome(
            batches.CHECK_TIMED_OUT,
            f"the Worker did not finish loading within {self.timeout:g}s (a loop at the top "
            "level of a module, or a very slow one?)",
        )

    async def _check(self, b: Bundle) -> Outcome:
        """What loading `b` in the validator found (ok: it loads and has a fetch handler)."""
        version = b.version or ""
        spec = self.dir / f"{version}.json"
        self.metrics.validation_runs.inc()
        self._checks += 1
        try:
            proc = await self._ensure()
            await asyncio.to_thread(_write_spec, spec, b)
            return await self._ask(proc, b)
        except workerd.StartFailed as e:
            why = f"the validator did not start: {e.message}"
            return Outcome(batches.CHECK_UNAVAILABLE, _unavailable(why))
        except OSError as e:  # no fds, no disk for the spec or the config
            return Outcome(batches.CHECK_UNAVAILABLE, _unavailable(f"{type(e).__name__}: {e}"))
        finally:
            with contextlib.suppress(OSError):
                await asyncio.to_thread(spec.unlink, True)

    async def _ask(self, proc: workerd.Proc, b: Bundle) -> Outcome:
        url = f"http://127.0.0.1:{proc.ports['http']}/__edgeplane/check"
        headers = {"edgeplane-version": b.version or "", "edgeplane-internal": self.internal_key}
        try:
            async with asyncio.timeout(self.timeout):
                async with self._http().post(url, headers=headers) as r:
                    doc = await r.json()
        except TimeoutError:
            return self._timed_out()
        except (ValueError, aiohttp.ContentTypeError) as e:
            # An answer that is no verdict: about this version when it was alone.
            why = f"the validator gave no verdict on the Worker: {e!r}"
            return Outcome(batches.CHECK_CRASHED, redact(why, b.secrets())[:MAX_MESSAGE])
        except (aiohttp.ClientError, OSError) as e:
            with contextlib.suppress(TimeoutError):  # a dying process: let its exit be seen
                async with asyncio.timeout(1.0):
                    await proc.wait()
                    if proc.reader is not None:
                        await proc.reader  # its last words
            if proc.alive():  # it did not die: the failure is the agent's side (fds...)
                why = f"the validator did not answer: {e!r}"
                return Outcome(batches.CHECK_UNAVAILABLE, _unavailable(why))
            why = redact(batches.crash_reason(proc.stderr_text()), b.secrets())
            return Outcome(batches.CHECK_CRASHED, f"loading the Worker ended workerd: {why}")
        if r.status == 200:
            return Outcome(batches.CHECK_OK)
        message = redact(str(doc.get("error", doc)), b.secrets())[:MAX_MESSAGE]
        return Outcome(batches.CHECK_REFUSED, message)

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
        # No front: a check loads code, and top-level code cannot make requests.
        return await workerd.start_in_memory(
            self.workerd_bin,
            render.cell_config(paths, 9, self.internal_key),
            sockets={"http": None},
            start_timeout=30.0,
        )

    async def _restart(self) -> None:
        """End the process; the next check starts a new one."""
        if self.proc is not None:
            await workerd.kill(self.proc)
            self.proc = None
        self._checks = 0


def _write_spec(path: Path, b: Bundle) -> None:
    """Rendered in the thread too: for the largest Workers that takes seconds."""
    write_private(path, json.dumps(render.code_spec(b)).encode())
