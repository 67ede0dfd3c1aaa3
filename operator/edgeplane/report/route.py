"""A WorkerRoute's Ready condition (pure)."""

from __future__ import annotations

from collections.abc import Sequence

from edgeplane.report.status import ConditionFields


def route_condition(
    pattern: str,
    namespace: str,
    worker: str,
    conflicts: Sequence[str],
    worker_exists: bool,
    shares: Sequence[str] = (),
    failure: ConditionFields | None = None,
) -> ConditionFields:
    """`conflicts`: the other routes claiming the pattern; `shares`: the traffic split as
    text (`90% 9bcdb4caa8d8`, `10% latest`); `failure`: why the split could not be
    resolved."""
    if conflicts:
        return (
            False,
            "RouteConflict",
            f"pattern {pattern!r} is also claimed by {', '.join(conflicts)}; "
            "neither route is served until one of them changes its pattern",
        )
    if not worker_exists:
        return (False, "WorkerNotFound", f"Worker {namespace}/{worker} does not exist")
    if failure is not None:
        return failure
    split = f" ({', '.join(shares)})" if shares else ""
    return (True, "Routed", f"requests matching the pattern go to {worker}{split}")
