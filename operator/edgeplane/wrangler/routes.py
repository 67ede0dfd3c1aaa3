"""A Worker's route patterns from `route` / `routes`, and route patterns two Workers claim.
Pure: config values in, patterns and warnings out."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from edgeplane.routing import conflict_key, parse_pattern, pattern_error
from edgeplane.wrangler.config import inherited
from edgeplane.wrangler.errors import WranglerImportError


def route_config(cfg: Mapping[str, Any], top: Mapping[str, Any]) -> Any:
    """The `routes` or `route` value a Worker takes: its own (`routes` first), else the top
    level's, as wrangler inherits them."""
    raw = inherited(cfg, top, "routes") if ("routes" in cfg or "route" not in cfg) else None
    return inherited(cfg, top, "route") if raw is None else raw


def route_patterns(raw: Any, worker: str, warn: list[str]) -> list[str]:
    """The distinct patterns of one route or a list of them, in order: two spellings of
    one pattern (`example.com`, `example.com/`) are the first one."""
    patterns: dict[str, str] = {}
    for item in raw if isinstance(raw, list) else [raw]:
        pattern = route_pattern(item, worker, warn)
        patterns.setdefault(conflict_key(pattern), pattern)
    return list(patterns.values())


def route_pattern(item: Any, worker: str, warn: list[str]) -> str:
    """A string, `{pattern, zone_name | zone_id}`, or `{pattern, custom_domain = true}`
    (the whole host: `host/*`) as an edgeplane route pattern of the same meaning, refused
    when edgeplane cannot express it; a warning says where the meaning differs."""
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
    err = pattern_error(pattern)
    if err is not None:
        raise WranglerImportError(f"{worker}: route {pattern!r}: {err}")
    zone_warning = _beyond_zone(pattern)
    if zone_warning is not None:
        warn.append(f"{worker}: route {pattern!r}: {zone_warning}")
    return pattern


def _beyond_zone(pattern: str) -> str | None:
    """Why `*example.com/...` matches more here than on Cloudflare, where a route never
    leaves its zone: `*` is any characters, so it also matches `myexample.com`."""
    p = parse_pattern(pattern)
    if not p.host_wildcard or p.host == "" or p.host.startswith("."):
        return None
    scheme = f"{p.scheme}://" if p.scheme else ""
    rest = pattern.split("://", 1)[-1].partition("/")
    path = rest[1] + rest[2]
    return (
        f"edgeplane has no zones, so it also matches other hosts ending in {p.host!r} "
        f"(e.g. 'my{p.host}'); for {p.host} and its subdomains only, use "
        f"'{scheme}{p.host}{path}' and '{scheme}*.{p.host}{path}'"
    )


def conflict_warnings(docs: list[dict[str, Any]]) -> list[str]:
    """Warnings for patterns two WorkerRoutes claim: the apiserver would refuse both
    (RouteConflict)."""
    warnings: list[str] = []
    seen: dict[str, str] = {}
    for d in docs:
        if d["kind"] == "WorkerRoute":
            p = d["spec"]["pattern"]
            key = conflict_key(p)
            if key in seen:
                warnings.append(
                    f"route {p!r} is claimed by both {seen[key]} and {d['spec']['worker']} "
                    "(environments inherit routes); edgeplane refuses both until one changes"
                )
            seen.setdefault(key, d["spec"]["worker"])
    return warnings
