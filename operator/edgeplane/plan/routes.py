"""Which WorkerRoutes are served (pure): a route's host must be granted to its namespace by
a HostClaim (no claim, no route), and of two granted routes with one pattern the older
holds it while the newer reports the conflict; then which patterns each namespace
excludes with its routes without a Worker."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from edgeplane.routing import conflict_key, parse_pattern

RouteKey = tuple[str, str]  # (namespace, WorkerRoute name)


@dataclass(frozen=True)
class RouteFacts:
    pattern: str
    worker: str | None  # None: a route without a Worker, excluding its pattern
    created: str = ""  # metadata.creationTimestamp (RFC 3339 sorts as time)


@dataclass(frozen=True)
class Grant:
    """One HostClaim: these hosts, to these namespaces."""

    hosts: tuple[str, ...]
    namespaces: frozenset[str]


def pattern_host(pattern: str) -> str:
    """The host part of a pattern as written in a claim would cover it: `shop.example.com`,
    `*.example.com`, `*example.com` or `*`."""
    p = parse_pattern(pattern)
    return f"*{p.host}" if p.host_wildcard else p.host


def host_granted(host: str, claimed: str) -> bool:
    """Whether a claim of `claimed` covers the pattern host `host` (as `pattern_host`
    gives it). `*` covers every host; `*.S` covers S's subdomains, so also a pattern host
    `*.T` where T is S or one of its subdomains; an exact claim covers that host only. A
    pattern host `*S` without the dot also matches other domains (`myS`): only `*` covers
    it."""
    if claimed == "*":
        return True
    if host.startswith("*") and not host.startswith("*."):
        return False
    if claimed.startswith("*."):
        suffix = claimed[1:]  # ".example.com"
        literal = host[1:] if host.startswith("*.") else host
        return literal.endswith(suffix)
    return host == claimed


def granted(pattern: str, namespace: str, grants: Iterable[Grant]) -> bool:
    host = pattern_host(pattern)
    return any(
        namespace in g.namespaces and any(host_granted(host, c) for c in g.hosts) for g in grants
    )


def route_conflicts(routes: Mapping[RouteKey, RouteFacts]) -> dict[RouteKey, str]:
    """Route -> the route that holds its pattern (`ns/name`), for every route that another,
    older one (creation time, then name) holds; the holder itself is not listed."""
    by_key: dict[str, list[RouteKey]] = {}
    for route, facts in routes.items():
        by_key.setdefault(conflict_key(facts.pattern), []).append(route)
    out: dict[RouteKey, str] = {}
    for claimants in by_key.values():
        holder, *others = sorted(claimants, key=lambda r: (routes[r].created, r))
        for route in others:
            out[route] = f"{holder[0]}/{holder[1]}"
    return out


@dataclass(frozen=True)
class Standing:
    """Why routes are not served: their host is not granted (route -> host), or an older
    route holds their pattern (route -> holder)."""

    unclaimed: dict[RouteKey, str] = field(default_factory=dict)
    conflicts: dict[RouteKey, str] = field(default_factory=dict)

    def served(self, route: RouteKey) -> bool:
        return route not in self.unclaimed and route not in self.conflicts


def standing(routes: Mapping[RouteKey, RouteFacts], grants: Iterable[Grant]) -> Standing:
    grants = list(grants)
    unclaimed = {
        route: pattern_host(facts.pattern)
        for route, facts in routes.items()
        if not granted(facts.pattern, route[0], grants)
    }
    # Only granted routes can hold a pattern: a route that may not be served blocks no one.
    claimed = {route: facts for route, facts in routes.items() if route not in unclaimed}
    return Standing(unclaimed, route_conflicts(claimed))


def exclusions(
    routes: Mapping[RouteKey, RouteFacts], served: Standing
) -> dict[str, tuple[str, ...]]:
    """Namespace -> the patterns of its served routes without a Worker, in name order."""
    out: dict[str, list[str]] = {}
    for route, facts in sorted(routes.items()):
        if facts.worker is None and served.served(route):
            out.setdefault(route[0], []).append(facts.pattern)
    return {ns: tuple(patterns) for ns, patterns in out.items()}
