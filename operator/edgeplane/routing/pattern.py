"""Cloudflare route patterns: one grammar, one canonical form, matching and precedence
(pure). The API (CEL rules and pydantic), the operator (conflicts) and the agent (routing
table, probes) all use this module; the edge router's JavaScript (`router_js`) implements
the same matching, and both run `tests/data/route_cases.json`.

Grammar: optional `http://` or `https://`; `*` only at the start of the host and at the
end of the path; a path is required; no query string or fragment. The grammar is one
RE2-compatible expression, so the same text serves Python and the apiserver's CEL
`matches`.

"Most specific" is `RoutePattern.specificity()`, compared in this order:
1. an exact host beats a wildcard host; among wildcard hosts, the longer literal suffix wins;
2. an exact path beats a prefix path (`/x*`); among prefixes, the longer literal prefix wins;
3. a pattern naming a scheme beats one without.
The canonical text breaks any remaining tie, so the order is total. Two routes conflict
when their canonical forms are equal (`conflict_key`): `http://a/x` and `https://a/x`
match different requests and do not conflict; `A/x` and `a/x` do.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TypeVar

_HOST = r"(\*|\*?[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*|\*\.[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*)"
ROUTE_PATTERN_RE = rf"^(https?://)?{_HOST}/[^*?#\s]*\*?$"
MAX_PATTERN = 1024

MSG_QUERY = (
    "pattern: route patterns match host and path only; remove the query string or "
    "fragment ('?...' or '#...')"
)
MSG_PATH = "pattern: add a path after the host, e.g. 'example.com/*' or 'example.com/api/*'"
MSG_SYNTAX = (
    "pattern: '*' is allowed only at the start of the host and at the end of the path, and "
    "the host is letters, digits, '-' and '.', e.g. '*.example.com/api/*'"
)
MSG_LENGTH = f"pattern: at most {MAX_PATTERN} characters"

# (CEL rule on the pattern string, message), in the order a person would fix them. The
# length is the schema's maxLength.
CEL_RULES: tuple[tuple[str, str], ...] = (
    ("!self.contains('?') && !self.contains('#')", MSG_QUERY),
    (r"self.matches(r'^(https?://)?[^/]+/')", MSG_PATH),
    (f"self.matches(r'{ROUTE_PATTERN_RE}')", MSG_SYNTAX),
)


def pattern_error(pattern: str) -> str | None:
    """The first rule `pattern` breaks, as a message naming the fix, or None."""
    if len(pattern) > MAX_PATTERN:
        return MSG_LENGTH
    if "?" in pattern or "#" in pattern:
        return MSG_QUERY
    if not re.match(r"^(https?://)?[^/]+/", pattern):
        return MSG_PATH
    if not re.fullmatch(ROUTE_PATTERN_RE, pattern):
        return MSG_SYNTAX
    return None


def check_pattern(pattern: str) -> str:
    """Pydantic AfterValidator: raises ValueError with the same text the apiserver shows."""
    parse_pattern(pattern)
    return pattern


@dataclass(frozen=True, order=False)
class RoutePattern:
    scheme: str | None  # "http", "https" or None for both
    host: str  # literal part, lower case: the whole host, or the suffix after "*"
    host_wildcard: bool
    path: str  # literal part: the whole path, or the prefix before "*"
    path_wildcard: bool

    def canonical(self) -> str:
        """One spelling per pattern (host lower-cased): the conflict key."""
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
    """Parse a route pattern such as `*.example.com/api/*`; the ValueError is the message
    of the first grammar rule it breaks, as the apiserver words it."""
    err = pattern_error(s)
    if err is not None:
        raise ValueError(err)
    m = re.match(r"^(https?)://", s)
    scheme = m.group(1) if m else None
    host, _, path = s[m.end() if m else 0 :].partition("/")
    host = host.lower()
    host_wildcard = host.startswith("*")
    path_wildcard = path.endswith("*")
    return RoutePattern(
        scheme,
        host[1:] if host_wildcard else host,
        host_wildcard,
        "/" + (path[:-1] if path_wildcard else path),
        path_wildcard,
    )


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


@lru_cache(maxsize=65536)
def conflict_key(pattern: str) -> str:
    """Two routes with the same key claim the same requests: neither may win silently."""
    return parse_pattern(pattern).canonical()
