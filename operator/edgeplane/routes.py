"""Cloudflare route patterns: parsing, matching and precedence (pure).

The operator imports this for validation and conflict detection; the edge router
(`edgeplane.edge.router`) implements the same rules in JavaScript, and both are tested
against `tests/data/route_cases.json`.

"Most specific" is defined by `RoutePattern.specificity()`, compared in this order:
1. an exact host beats a wildcard host; among wildcard hosts, the longer literal suffix wins;
2. an exact path beats a prefix path (`/x*`); among prefixes, the longer literal prefix wins;
3. a pattern naming a scheme beats one without.
Two different patterns that both match one request always differ in this key, except for
impossible cases; the pattern text breaks any remaining tie so the order is total.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

_HOST_RE = re.compile(r"^(\*)?([a-z0-9-]+(\.[a-z0-9-]+)*|\.[a-z0-9-]+(\.[a-z0-9-]+)*)?$")
MAX_PATTERN = 1024


@dataclass(frozen=True, order=False)
class RoutePattern:
    scheme: str | None  # "http", "https" or None for both
    host: str  # literal part, lower case: the whole host, or the suffix after "*"
    host_wildcard: bool
    path: str  # literal part: the whole path, or the prefix before "*"
    path_wildcard: bool

    def canonical(self) -> str:
        """One spelling per pattern (host lower-cased), used to detect two owners."""
        s = f"{self.scheme}://" if self.scheme else ""
        return f"{s}{'*' if self.host_wildcard else ''}{self.host}{self.path}" + (
            "*" if self.path_wildcard else ""
        )

    def matches(self, scheme: str, host: str, path: str) -> bool:
        if self.scheme is not None and scheme.lower() != self.scheme:
            return False
        host = normalize_host(host)
        if self.host_wildcard:
            if not host.endswith(self.host):
                return False
        elif host != self.host:
            return False
        if self.path_wildcard:
            return path.startswith(self.path)
        return path == self.path

    def specificity(self) -> tuple[int, int, int, int, int]:
        return (
            0 if self.host_wildcard else 1,
            len(self.host),
            0 if self.path_wildcard else 1,
            len(self.path),
            1 if self.scheme else 0,
        )

    def to_json(self) -> dict[str, object]:
        return {
            "scheme": self.scheme,
            "host": self.host,
            "hostWildcard": self.host_wildcard,
            "path": self.path,
            "pathWildcard": self.path_wildcard,
        }


def normalize_host(host: str) -> str:
    """Lower case, without a port or a trailing dot."""
    host = host.strip().lower()
    if host.startswith("["):  # IPv6 literal
        return host.split("]")[0] + "]"
    host = host.rsplit(":", 1)[0] if ":" in host else host
    return host.rstrip(".")


def parse_pattern(s: str) -> RoutePattern:
    """Parse a route pattern such as `*.example.com/api/*`; ValueError names the problem."""
    if not s:
        raise ValueError("route pattern is empty")
    if len(s) > MAX_PATTERN:
        raise ValueError(f"route pattern is longer than {MAX_PATTERN} characters")
    if any(c.isspace() for c in s):
        raise ValueError(f"route pattern {s!r} contains whitespace")
    if "?" in s or "#" in s:
        raise ValueError(
            f"route pattern {s!r}: patterns match host and path only; remove the query "
            "string or fragment"
        )
    scheme: str | None = None
    rest = s
    m = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*)://", s)
    if m:
        scheme = m.group(1).lower()
        if scheme not in ("http", "https"):
            raise ValueError(f"route pattern {s!r}: scheme must be http or https")
        rest = s[m.end() :]
    if "/" not in rest:
        raise ValueError(f"route pattern {s!r}: add a path after the host, e.g. 'example.com/*'")
    host, path = rest.split("/", 1)
    path = "/" + path
    host = host.lower()
    if not host:
        raise ValueError(f"route pattern {s!r}: the host is empty")
    if not _HOST_RE.match(host) or host.count("*") > 1:
        raise ValueError(
            f"route pattern {s!r}: '*' is allowed only at the start of the host, and the "
            "host is letters, digits, '-' and '.'"
        )
    host_wildcard = host.startswith("*")
    host_lit = host[1:] if host_wildcard else host
    if not host_wildcard and host_lit.startswith("."):
        raise ValueError(f"route pattern {s!r}: the host must not start with '.'")
    path_wildcard = path.endswith("*")
    path_lit = path[:-1] if path_wildcard else path
    if "*" in path_lit:
        raise ValueError(f"route pattern {s!r}: '*' is allowed only at the end of the path")
    return RoutePattern(scheme, host_lit, host_wildcard, path_lit, path_wildcard)


T = TypeVar("T")


def sort_most_specific_first(
    items: Iterable[tuple[RoutePattern, T]],
) -> list[tuple[RoutePattern, T]]:
    return sorted(items, key=lambda it: (it[0].specificity(), it[0].canonical()), reverse=True)


def best_match(
    patterns: Sequence[RoutePattern], scheme: str, host: str, path: str
) -> RoutePattern | None:
    """The most specific pattern matching the request, or None."""
    found = [p for p in patterns if p.matches(scheme, host, path)]
    if not found:
        return None
    return max(found, key=lambda p: (p.specificity(), p.canonical()))
