"""A Worker's `status.cron` (pure): where its cron triggers run, the next occurrence, and
the last run any location reported."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence

from edgeplane.api.worker import CronStatus
from edgeplane.plan import cron
from edgeplane.wire import CronRun


def last_run(runs: Mapping[str, CronRun]) -> tuple[str, CronRun] | None:
    """The latest run by its occurrence's time, with its location (by name on a tie)."""
    return max(runs.items(), key=lambda item: (item[1].scheduled_time, item[0]), default=None)


def cron_status(
    crons: Sequence[str],
    location: str | None,
    runs: Mapping[str, CronRun],
    now: dt.datetime,
) -> CronStatus | None:
    """None for a Worker without cron triggers. `location`: the one that holds the lease
    for it now; `runs`: each location's last run of it."""
    if not crons:
        return None
    parsed = []
    for text in crons:
        try:
            parsed.append(cron.parse(text))
        except cron.CronError:
            continue  # admitted before a rule; the model check stalls the Worker
    soonest = cron.next_of_all(parsed, int(now.timestamp() * 1000))
    at = None if soonest is None else dt.datetime.fromtimestamp(soonest[0] / 1000, dt.UTC)
    status = CronStatus.model_validate({"location": location, "nextRun": at})
    last = last_run(runs)
    if last is None:
        return status
    where, run = last
    return status.model_copy(update={
        "last_run": dt.datetime.fromisoformat(run.scheduled_time.replace("Z", "+00:00")),
        "last_location": where,
        "last_outcome": run.outcome,
    })


def shown_location(leased: str | None, settled: bool, written: str | None) -> str | None:
    """status.cron.location: where this operator leased the schedule; before its leases
    settle (just started), the location written before, which still holds its lease from
    the operator before and runs the schedule, so a restart rewrites nothing."""
    return leased if leased is not None or settled else written
