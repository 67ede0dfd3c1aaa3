"""A Worker's route patterns from `route` / `routes`, and route patterns two Workers claim.
Pure: config values in, patterns and warnings out."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from edgeplane.routing import pattern_error
from edgeplane.wrangler.config import inherited
from edgeplane.wrangler.errors import WranglerImportError


def route_config(cfg: Mapping[str, Any], top: Mapping[str, Any]) -> Any:
    """The `routes` or `route` value a Worker takes: its own (`routes` first), else the top
    level's, as wrangler inherits them."""
    raw = inherited(cfg, top, "routes") if ("routes" in cfg or "route" not in cfg) else None
    return inherited(cfg, top, "route") if raw is None else raw


def route_patterns(raw: Any, worker: str, warn: list[str]) -> list[str]:
    """The distinct patterns of one route or a list of them, in order."""
    patterns: list[str] = []
    for item in raw if isinstance(raw, list) else [raw]:
        pattern = route_pattern(item, worker, warn)
        if pattern not in patterns:
            patterns.append(pattern)
    return patterns


def route_pattern(item: Any, worker: str, warn: list[str]) -> str:
    """A string, `{pattern, zone_name | zone_id}`, or `{pattern, custom_domain = true}`
    (the whole host: `host/*`) as an edgeplane route pattern."""
    custom = False
    if isinstance(item, str):
        pattern = item
    elif isinstance(item, Mapping) and isinstance(item.get("pattern"), str):
        pattern = item["pattern"]
        custom = bool(item.get("custom_domain"))
    else:
        raise WranglerImportError(f"{worker}: route {item!r} has no pattern")
    if custom:
        host = pattern.split("://", 1)[-1].rstrip("/")
        if "/" in host or "*" in host:
            raise WranglerImportError(
                f"{worker}: custom domain {pattern!r} must be a plain hostname"
            )
        pattern = f"{host}/*"
    elif "/" not in pattern.split("://", 1)[-1]:
        warn.append(f"{worker}: route {pattern!r} has no path; imported as {pattern + '/*'!r}")
        pattern += "/*"
    err = pattern_error(pattern)
    if err is not None:
        raise WranglerImportError(f"{worker}: route {pattern!r}: {err}")
    return pattern


def conflict_warnings(docs: list[dict[str, Any]]) -> list[str]:
    """Warnings for patterns two WorkerRoutes claim: the apiserver would refuse both
    (RouteConflict)."""
    warnings: list[str] = []
    seen: dict[str, str] = {}
    for d in docs:
        if d["kind"] == "WorkerRoute":
            p = d["spec"]["pattern"]
            if p in seen:
                warnings.append(
                    f"route {p!r} is claimed by both {seen[p]} and {d['spec']['worker']} "
                    "(environments inherit routes); edgeplane refuses both until one changes"
                )
            seen.setdefault(p, d["spec"]["worker"])
    return warnings
