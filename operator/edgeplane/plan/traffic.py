"""What one location's deployment of a Worker holds: its primary version, the versions
its routes split traffic between, and the routes (pure)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from edgeplane.wire import Route, TrafficSplit, deployment_identity


@dataclass(frozen=True)
class RouteSplit:
    """A WorkerRoute with its traffic resolved to version ids; None stands for `latest`,
    which is the version the rollout gives the location (its primary)."""

    pattern: str
    split: tuple[tuple[str | None, int], ...] = ()


@dataclass(frozen=True)
class Contents:
    primary: str
    versions: frozenset[str]
    routes: tuple[Route, ...]

    @property
    def identity(self) -> str:
        return deployment_identity(self.primary, self.versions, self.routes)


def contents(primary: str, splits: Iterable[RouteSplit]) -> Contents:
    versions = {primary}
    routes = []
    for r in splits:
        merged: dict[str, int] = {}
        for version, percent in r.split:
            v = version or primary
            merged[v] = merged.get(v, 0) + percent
        versions.update(merged)
        traffic = tuple(TrafficSplit(version=v, percent=p) for v, p in merged.items())
        routes.append(Route(pattern=r.pattern, traffic=traffic))
    return Contents(primary, frozenset(versions), tuple(routes))


def named_versions(splits: Iterable[RouteSplit]) -> set[str]:
    """Versions the routes name explicitly (not through `latest`)."""
    return {v for r in splits for v, _ in r.split if v is not None}


def serving_versions(c: Contents) -> frozenset[str]:
    """The versions a deployment runs requests on: its primary, and every version a route
    gives traffic to (a version kept at 0% serves nothing)."""
    return frozenset({c.primary, *(t.version for r in c.routes for t in r.traffic if t.percent)})
