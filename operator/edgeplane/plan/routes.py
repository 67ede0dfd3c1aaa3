"""Which WorkerRoutes conflict (pure): two routes claiming the same pattern are both
refused, never a silent winner."""

from __future__ import annotations

from collections.abc import Mapping

from edgeplane.routing import conflict_key

RouteKey = tuple[str, str]  # (namespace, WorkerRoute name)


def route_conflicts(patterns: Mapping[RouteKey, str]) -> dict[RouteKey, list[str]]:
    """Routes whose pattern another route also claims -> the other routes' names."""
    by_key: dict[str, list[RouteKey]] = {}
    for route, pattern in patterns.items():
        by_key.setdefault(conflict_key(pattern), []).append(route)
    out: dict[RouteKey, list[str]] = {}
    for routes in by_key.values():
        if len(routes) > 1:
            for route in routes:
                out[route] = sorted(f"{ns}/{n}" for ns, n in routes if (ns, n) != route)
    return out
