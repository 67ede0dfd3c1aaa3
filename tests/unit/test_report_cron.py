"""`status.cron` (report/cron.py): where the schedule runs, the next and the last run."""

from __future__ import annotations

import datetime as dt

import pytest

from edgeplane.report.cron import cron_status, last_run, shown_location
from edgeplane.wire import CronRun

NOW = dt.datetime(2024, 2, 3, 10, 0, 30, tzinfo=dt.UTC)


def run(at: str, outcome: str = "ok") -> CronRun:
    return CronRun("* * * * *", at, outcome, 1)


def test_no_crons_no_status() -> None:
    assert cron_status([], "x", {"x": run("2024-02-03T10:00:00Z")}, NOW) is None


def test_next_run_location_and_the_latest_run_anywhere() -> None:
    runs = {"ams": run("2024-02-03T09:59:00Z"), "fra": run("2024-02-03T10:00:00Z", "exception")}
    status = cron_status(["0 12 * * *", "*/15 * * * *"], "ams", runs, NOW)
    assert status is not None
    wire = status.to_wire()
    assert wire == {
        "location": "ams",
        "nextRun": "2024-02-03T10:15:00Z",
        "lastRun": "2024-02-03T10:00:00Z",
        "lastLocation": "fra",
        "lastOutcome": "exception",
    }


def test_before_any_run_and_without_a_location() -> None:
    status = cron_status(["0 0 1 1 *"], None, {}, NOW)
    assert status is not None
    assert status.to_wire() == {"nextRun": "2025-01-01T00:00:00Z"}


def test_last_run_ties_go_by_location_name() -> None:
    same = "2024-02-03T10:00:00Z"
    assert last_run({"b": run(same), "a": run(same)}) == ("b", run(same))
    assert last_run({}) is None


@pytest.mark.parametrize(
    ("leased", "settled", "written", "shown"),
    [
        ("ams", False, "fra", "ams"),  # leased by this operator: that
        ("ams", True, "fra", "ams"),
        # Just started: the location that holds the lease of the operator before still
        # runs it; a restart rewrites nothing.
        (None, False, "fra", "fra"),
        (None, False, None, None),
        (None, True, "fra", None),  # settled and leased nowhere: nowhere
    ],
)
def test_shown_location(leased: str | None, settled: bool, written: str | None,
                        shown: str | None) -> None:
    assert shown_location(leased, settled, written) == shown
