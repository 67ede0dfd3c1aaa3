"""A WorkerRoute's Ready condition (pure)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from edgeplane.api import HostClaimStatus, WorkerRouteStatus, set_condition
from edgeplane.report.status import ConditionFields


def route_condition(
    pattern: str,
    namespace: str,
    worker: str | None,
    blocked: Blocked,
    worker_exists: bool,
    shares: Sequence[str] = (),
    failure: ConditionFields | None = None,
) -> ConditionFields:
    """`worker` None: a route without a Worker, excluding its pattern. `blocked`: why the
    route may not be served at all; `shares`: the traffic split as text (`90%
    9bcdb4caa8d8`, `10% latest`); `failure`: why the split (or, without a Worker, the
    exclusion at a location) failed."""
    if blocked.unclaimed is not None:
        return (False, "HostNotClaimed", _unclaimed_message(pattern, namespace, blocked.unclaimed))
    if blocked.holder is not None:
        return (
            False,
            "RouteConflict",
            f"pattern {pattern!r} is already held by WorkerRoute {blocked.holder}, which is "
            "older; this route is served once that one changes its pattern or is deleted",
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


@dataclass(frozen=True)
class Blocked:
    unclaimed: str | None = None  # the pattern's host, when no HostClaim grants it
    holder: str | None = None  # the older route holding the same pattern


def _unclaimed_message(pattern: str, namespace: str, host: str) -> str:
    message = (
        f"host {host!r} of pattern {pattern!r} is not granted to namespace {namespace} by "
        f"any HostClaim; the route is not served until a HostClaim lists {host!r} (or a "
        f"wildcard covering it) in spec.hosts and {namespace} in spec.namespaces"
    )
    if host.startswith("*") and not host.startswith("*."):
        literal = host[1:]
        message += (
            f"; a host starting with '*' but not '*.' also matches other domains (e.g. "
            f"'my{literal}'), so only a claim of '*' grants it: use '{literal}' and "
            f"'*.{literal}' instead"
            if literal
            else "; '*' alone matches every host, so only a claim of '*' grants it"
        )
    return message


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


def claim_condition(hosts: Sequence[str], namespaces: Sequence[str]) -> ConditionFields:
    """A HostClaim's Ready condition: the operator applies it as soon as it sees it."""
    return (
        True,
        "Accepted",
        f"grants {', '.join(hosts)} to namespace{'s' if len(namespaces) > 1 else ''} "
        f"{', '.join(namespaces)}",
    )


S = TypeVar("S", WorkerRouteStatus, HostClaimStatus)


def ready_status(
    kind: type[S], prev: S | None, body: dict[str, Any], cond: ConditionFields
) -> S:
    """A status with one Ready condition and the generation it was judged for."""
    generation = int(body["metadata"].get("generation") or 0)
    conditions = list(prev.conditions) if prev is not None else []
    return kind(
        observed_generation=generation,
        conditions=set_condition(conditions, "Ready", *cond, observed_generation=generation),
    )

