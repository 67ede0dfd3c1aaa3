"""When to try again (pure): the work queue's per-key backoff, with jitter, and how to
spread many requeues over a short window instead of queueing them all at once."""

from __future__ import annotations

BACKOFF_BASE = 0.5  # seconds, the first retry
BACKOFF_CAP = 30.0  # seconds, the longest step
JITTER = 0.2  # each delay is its step ± this fraction


def backoff_delay(retries: int, u: float) -> float:
    """The delay before retry number `retries + 1` of one key: 0.5 s doubling up to 30 s,
    moved by up to ±20 % by `u` (uniform in [0, 1), from the caller's random source), so
    keys that failed together do not retry together. `u = 0.5` gives the step itself."""
    step = min(BACKOFF_BASE * 2 ** min(retries, 16), BACKOFF_CAP)
    return step * (1 - JITTER + 2 * JITTER * min(max(u, 0.0), 1.0))


def spread(count: int, concurrency: int, max_window: float = 10.0) -> list[float]:
    """Delays for `count` requeues that happen at once (e.g. a location went down or came
    back): none while they fit in the queue's `concurrency`, else evenly over a window of
    about `count / concurrency` seconds (at most `max_window`), so one event never fills
    the queue ahead of everything else."""
    if count <= concurrency:
        return [0.0] * count
    window = min(max_window, count / max(concurrency, 1))
    return [window * i / count for i in range(count)]
