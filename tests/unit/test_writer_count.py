"""The Workers-by-readiness gauge, kept by counting each Worker's change, not by summing
every Worker at each status write."""

from __future__ import annotations

import pytest

from edgeplane.report import metrics
from edgeplane.report.writer import StatusWriter

A, B = ("ns", "a"), ("ns", "b")


@pytest.mark.parametrize(
    ("steps", "ready", "not_ready"),
    [
        ([(A, True)], 1, 0),
        ([(A, False)], 0, 1),
        ([(A, True), (A, True)], 1, 0),  # reported again
        ([(A, True), (A, False)], 0, 1),
        ([(A, False), (A, True), (B, True)], 2, 0),
        ([(A, True), (B, False), (A, None)], 0, 1),  # a deleted
        ([(A, None)], 0, 0),  # never reported
        ([(A, True), (A, None), (A, None), (B, True)], 1, 0),
    ],
)
def test_the_gauge_follows_each_workers_readiness(
    steps: list[tuple[tuple[str, str], bool | None]], ready: int, not_ready: int
) -> None:
    writer = StatusWriter(None, {})  # type: ignore[arg-type]  # no writes here
    for key, is_ready in steps:
        if is_ready is None:
            writer.forget(key)
        else:
            writer._count(key, is_ready)
    values = {lab: metrics.WORKERS.labels(lab)._value.get() for lab in ("true", "false")}
    assert values == {"true": ready, "false": not_ready}
