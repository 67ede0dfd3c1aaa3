"""Cron triggers at a location (I/O): the schedules the operator hands this location, each
occurrence run through the Worker's `scheduled` handler, and what the last run did.

The operator chooses one location per Worker and tells it with a lease (`PUT /v1/cron`:
the Workers it schedules, and for how many seconds). The lease is renewed for the whole
location at once, not per Worker, and is relative: the agent counts its seconds on its own
monotonic clock, so a skewed clock between the two changes nothing. An occurrence runs only
while the lease holds; one that comes due after it lapsed (the operator stopped renewing:
it moved the Worker away, or cannot reach this location) is skipped, so a Worker the
operator moves is never run at two locations for one occurrence. The times themselves are
the wall clock's, in UTC, as Cloudflare's crons are.

An occurrence goes to the cell serving the Worker (`POST /__edgeplane/scheduled` with the
primary version; HOST_JS calls the loaded Worker's `scheduled()` through workerd's
`Fetcher.scheduled`). A failed run is tried again, as workerd's cron.js does: up to 6
retries, the nth 2 s * 2^(n-1) after the attempt before, but never past the next occurrence,
which wins.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

import aiohttp
from prometheus_client import CollectorRegistry, Counter

from edgeplane.plan import cron

log = logging.getLogger("edgeplane.agent.cron")

RETRIES = 6
BACKOFF = 2.0  # seconds before the first retry, doubling
RUN_TIMEOUT = 600.0  # one run may take 10 minutes, as at Cloudflare and in cron.js
# An occurrence this late (the agent was stopped, the loop stalled) is skipped, not run late.
LATE = 30.0

# (worker, cron expression, scheduled time in ms) -> (outcome, no retry)
Fire = Callable[[str, str, int], Awaitable[tuple[str, bool]]]


@dataclass(frozen=True)
class LastRun:
    cron: str
    scheduled_ms: int
    outcome: str  # workerd's: ok, exception, exceededCpu, ...; or unreachable, notDeployed
    attempts: int

    def wire(self) -> dict[str, object]:
        at = dt.datetime.fromtimestamp(self.scheduled_ms / 1000, dt.UTC)
        return {
            "cron": self.cron,
            "scheduledTime": at.isoformat().replace("+00:00", "Z"),
            "outcome": self.outcome,
            "attempts": self.attempts,
        }


class Scheduler:
    """One task per scheduled Worker, sleeping to its next occurrence."""

    def __init__(self, fire: Fire, registry: CollectorRegistry,
                 backoff: float = BACKOFF) -> None:
        self._fire = fire
        self._backoff = backoff
        self.runs = Counter("edgeplane_agent_cron_runs", "Cron trigger occurrences run at "
                            "this location, by Worker and outcome (after retries)",
                            ["worker", "outcome"], registry=registry)
        self._until = 0.0  # monotonic end of the lease
        self._holder = ("", 0)  # who granted the lease in force, and its seq
        self.schedules: dict[str, tuple[str, ...]] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self.last: dict[str, LastRun] = {}
        self.ran: set[str] = set()  # Workers with a new last run (the agent's inventory drains it)

    def holds(self) -> bool:
        return time.monotonic() < self._until

    def lease_left(self) -> float:
        return max(0.0, self._until - time.monotonic())

    def grant(self, ttl: float, schedules: Mapping[str, tuple[str, ...]],
              holder: str = "", seq: int = 0) -> bool:
        """The operator's lease: these Workers' schedules, for `ttl` seconds from now. A
        Worker left out stops at once. False (and nothing changes) for a lease older than
        the last one of the same holder."""
        if holder and holder == self._holder[0] and seq <= self._holder[1]:
            log.warning("ignored a stale cron lease (%d after %d)", seq, self._holder[1])
            return False
        self._holder = (holder, seq)
        self._until = time.monotonic() + ttl
        for worker in set(self._tasks) - set(schedules):
            self._tasks.pop(worker).cancel()
        for worker, crons in schedules.items():
            if self.schedules.get(worker) != crons or worker not in self._tasks:
                if (old := self._tasks.pop(worker, None)) is not None:
                    old.cancel()
                parsed = tuple(cron.parse(c) for c in crons)
                self._tasks[worker] = asyncio.create_task(self._run(worker, parsed))
        self.schedules = dict(schedules)
        return True

    async def close(self) -> None:
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t

    async def _run(self, worker: str, crons: tuple[cron.Cron, ...]) -> None:
        after = _now_ms()
        while (nxt := cron.next_of_all(crons, after)) is not None:
            at, due = nxt
            await asyncio.sleep(max(0.0, (at - _now_ms()) / 1000))
            after = at
            if _now_ms() - at > LATE * 1000:
                log.warning("%s: skipped the occurrence of %s, %.0fs late", worker, at,
                            (_now_ms() - at) / 1000)
                continue
            following = cron.next_of_all(crons, at)
            deadline = following[0] if following else None
            # Several expressions due on one minute run side by side, as in cron.js.
            await asyncio.gather(*(self._occurrence(worker, c, at, deadline) for c in due))

    async def _occurrence(self, worker: str, expression: str, at: int,
                          deadline: int | None) -> None:
        """One occurrence, with its retries; counted and recorded once, when it ends."""
        outcome, attempts = "", 0
        for attempt in range(RETRIES + 1):
            if not self.holds():
                if attempts == 0:  # not ours to run: the lease lapsed
                    log.info("%s: not running %s at %s: no lease", worker, expression, at)
                    return
                break
            attempts += 1
            try:
                outcome, no_retry = await self._fire(worker, expression, at)
            except Exception:  # the schedule must outlive any one run
                log.exception("%s: cron run of %s failed", worker, expression)
                outcome, no_retry = "error", False
            if outcome == "ok" or no_retry:
                break
            delay = self._backoff * 2**attempt
            if attempt == RETRIES or (deadline is not None
                                      and _now_ms() + delay * 1000 >= deadline):
                break  # the next occurrence wins over a retry
            await asyncio.sleep(delay)
        self.runs.labels(worker, outcome).inc()
        self.last[worker] = LastRun(expression, at, outcome, attempts)
        self.ran.add(worker)
        log.info("%s: ran %s for %s: %s after %d attempt(s)", worker, expression, at, outcome,
                 attempts)


def _now_ms() -> int:
    return int(time.time() * 1000)


async def fire_at_cell(session: aiohttp.ClientSession, port: int, key: str, version: str,
                       expression: str, at: int) -> tuple[str, bool]:
    """One run in the cell on `port`: `version`'s scheduled handler, as workerd reports it;
    ("unreachable", False) when the cell does not answer."""
    headers = {"edgeplane-internal": key, "edgeplane-version": version}
    body = {"cron": expression, "scheduledTime": at}
    url = f"http://127.0.0.1:{port}/__edgeplane/scheduled"
    try:
        async with asyncio.timeout(RUN_TIMEOUT):
            async with session.post(url, json=body, headers=headers) as resp:
                answer = await resp.json(content_type=None)
    except (TimeoutError, aiohttp.ClientError, OSError, ValueError) as e:
        log.warning("cron run of %s did not reach its cell: %r", version[:12], e)
        return "unreachable", False
    if not isinstance(answer, dict):
        return "unreachable", False
    if answer.get("error"):
        log.info("cron run of %s: %s", version[:12], str(answer["error"])[:500])
    return str(answer.get("outcome") or "unknown"), bool(answer.get("noRetry"))
