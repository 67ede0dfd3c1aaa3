"""Which WorkerRoutes conflict, and which patterns each namespace excludes (pure): two
routes claiming the same pattern are both refused, never a silent winner."""

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


def exclusions(
    routes: Mapping[RouteKey, tuple[str, str | None]], conflicts: Mapping[RouteKey, list[str]]
) -> dict[str, tuple[str, ...]]:
    """Namespace -> the patterns of its routes without a Worker (`routes`: route ->
    (pattern, worker)), in name order; a conflicting one is served by no one, as a route
    with a Worker would not be."""
    out: dict[str, list[str]] = {}
    for (ns, name), (pattern, worker) in sorted(routes.items()):
        if worker is None and (ns, name) not in conflicts:
            out.setdefault(ns, []).append(pattern)
    return {ns: tuple(patterns) for ns, patterns in out.items()}
