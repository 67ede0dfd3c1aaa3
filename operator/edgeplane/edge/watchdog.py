"""The watchdog's decisions (pure): which version a hung cell was running, and when a
version that keeps hanging its cell is quarantined at the location."""

from __future__ import annotations

import errno
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

HANGS_TO_QUARANTINE = 3
WINDOW = 600.0  # seconds: 3 hangs in 10 minutes


# Errors of the agent's own side when it pings a process: out of file descriptors or
# buffers. They say nothing about the process, so they never get it replaced (a replacement
# could not even start: it needs fds too).
_AGENT_SIDE = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}


def says_nothing(error_number: int | None) -> bool:
    """Whether a ping that failed with this errno leaves the process's health unknown."""
    return error_number in _AGENT_SIDE


@dataclass(frozen=True)
class Suspect:
    worker: str
    version: str
    path: str


def culprit(inflight: Sequence[Mapping[str, object]], cell: str) -> Suspect | None:
    """The request that has waited longest on `cell`: a cell runs one thing at a time, so the
    request it is stuck in is the oldest it has not answered. None if it had none (the
    cell hung on its own, e.g. a timer)."""
    mine = [r for r in inflight if r.get("cell") == cell]
    if not mine:
        return None
    r = max(mine, key=lambda r: float(str(r.get("ageMs", 0))))
    return Suspect(str(r["worker"]), str(r["version"]), str(r.get("path", "")))


def recent(times: Sequence[float], now: float) -> list[float]:
    """The hangs that still count: those within WINDOW of `now`."""
    return [t for t in times if now - t <= WINDOW]


def quarantine_reason(times: Sequence[float], now: float, last: Suspect) -> str | None:
    """Why `last.version` is quarantined once it hung its cell HANGS_TO_QUARANTINE times
    within WINDOW; None while it has not."""
    n = len(recent(times, now))
    if n < HANGS_TO_QUARANTINE:
        return None
    return (
        f"it hung its cell {n} times in {int(WINDOW // 60)} minutes (last: a request to "
        f"{last.path or '/'}); a request to it did not finish, so every Worker of that cell "
        "stopped answering until the cell was replaced"
    )
