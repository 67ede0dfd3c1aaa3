"""A WorkerRoute's Ready condition (pure)."""

from __future__ import annotations

from collections.abc import Sequence

from edgeplane.report.status import ConditionFields


def route_condition(
    pattern: str,
    namespace: str,
    worker: str | None,
    conflicts: Sequence[str],
    worker_exists: bool,
    shares: Sequence[str] = (),
    failure: ConditionFields | None = None,
) -> ConditionFields:
    """`worker` None: a route without a Worker, excluding its pattern. `conflicts`: the
    other routes claiming the pattern; `shares`: the traffic split as text (`90%
    9bcdb4caa8d8`, `10% latest`); `failure`: why the split (or, without a Worker, the
    exclusion at a location) failed."""
    if conflicts:
        return (
            False,
            "RouteConflict",
            f"pattern {pattern!r} is also claimed by {', '.join(conflicts)}; "
            "neither route is served until one of them changes its pattern",
        )
    if worker is None:
        return failure or (
            True,
            "Excluded",
            "requests matching the pattern bypass Workers: less specific routes do not see "
            "them, and each location answers them with its bypass response",
        )
    if not worker_exists:
        return (False, "WorkerNotFound", f"Worker {namespace}/{worker} does not exist")
    if failure is not None:
        return failure
    split = f" ({', '.join(shares)})" if shares else ""
    return (True, "Routed", f"requests matching the pattern go to {worker}{split}")


def exclusion_condition(pending: Sequence[str], refused: Sequence[str]) -> ConditionFields | None:
    """Why a route without a Worker is not in force everywhere: locations that refused the
    namespace's exclusions (`refused`: their messages), or that do not hold them yet."""
    if refused:
        return (False, "ExclusionRefused", "; ".join(refused))
    if pending:
        return (
            False,
            "Excluding",
            f"not yet excluded at {', '.join(pending)}; retrying with backoff",
        )
    return None
