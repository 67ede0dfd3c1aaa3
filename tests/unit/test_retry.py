"""The work queue's backoff with jitter, and the spread of many requeues (pure)."""

from __future__ import annotations

import pytest

from edgeplane.plan.retry import backoff_delay, spread


@pytest.mark.parametrize(
    ("retries", "u", "delay"),
    [
        (0, 0.5, 0.5),  # the step itself
        (0, 0.0, 0.4),  # -20 %
        (0, 1.0, 0.6),  # +20 %
        (1, 0.5, 1.0),
        (3, 0.25, 4 * 0.9),
        (5, 0.5, 16.0),
        (6, 0.5, 30.0),  # capped
        (6, 1.0, 36.0),  # the cap is jittered too: keys at the cap stay spread
        (6, 0.0, 24.0),
        (500, 0.5, 30.0),  # no overflow after many retries
        (2, -1.0, 1.6),  # a source out of range is clamped
        (2, 7.0, 2.4),
    ],
)
def test_backoff_delay(retries: int, u: float, delay: float) -> None:
    assert backoff_delay(retries, u) == pytest.approx(delay)


@pytest.mark.parametrize(
    ("count", "concurrency", "first", "last", "max_window"),
    [
        (0, 32, None, None, 10.0),
        (5, 32, 0.0, 0.0, 10.0),  # fits in the queue: all now
        (32, 32, 0.0, 0.0, 10.0),
        (64, 32, 0.0, 2.0 * 63 / 64, 10.0),  # two rounds' worth over ~2 s
        (1000, 32, 0.0, 10.0 * 999 / 1000, 10.0),  # capped window
        (10, 0, 0.0, 10.0 * 9 / 10, 10.0),  # no concurrency given: the whole window
    ],
)
def test_spread(
    count: int, concurrency: int, first: float | None, last: float | None, max_window: float
) -> None:
    delays = spread(count, concurrency, max_window)
    assert len(delays) == count
    assert delays == sorted(delays)
    if count:
        assert delays[0] == pytest.approx(first)
        assert delays[-1] == pytest.approx(last)
