"""Cloudflare route patterns: one grammar, one canonical form, one normalisation, matching
and precedence (pure). The API (CEL rules and pydantic), the operator (conflicts), the
agent (routing table, probes) and `edgeplane import` all use this module; the edge
router's JavaScript (`router_js`) compares the normalised forms this module puts in the
routing table, and both run `tests/data/route_cases.json`. `docs/routes.md` explains it.

Grammar: optional `http://` or `https://`; a host, `*` allowed only at its start; an
optional path (none means `/`), `*` allowed only at its end; no query string or fragment.
The grammar is one RE2-compatible expression, so the same text serves Python and the
apiserver's CEL `matches`.

Matching takes the request's path and query, normalised as the edge's URL parser
(WHATWG `new URL()`) gives `pathname + search` (`normalize_path`); patterns are normalised
the same way when parsed. An exact path matches only without a query; a path ending in
`*` matches path and query as a prefix. Hosts compare case-insensitively, paths exactly.

"Most specific" is `RoutePattern.specificity()`, compared in this order:
1. an exact host beats a wildcard host; among wildcard hosts, the longer literal suffix wins;
2. an exact path beats a prefix path (`/x*`); among prefixes, the longer literal prefix wins;
3. a pattern naming a scheme beats one without.
Two different patterns matching one request never tie on all three, so the canonical text
only makes the order total. Two routes conflict when their canonical forms are equal
(`conflict_key`): `http://a/x` and `https://a/x` match different requests and do not
conflict; `A/x` and `a/x` do, and so do `a` and `a/`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TypeVar

_HOST = r"(\*|\*?[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*|\*\.[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*)"
# Spelled out, not `\s`: Python's `\s` also matches Unicode spaces, RE2's does not.
_PATH_CHAR = r"[^*?#\t\n\f\r\x20]"
ROUTE_PATTERN_RE = rf"^(https?://)?{_HOST}(/{_PATH_CHAR}*\*?)?$"
MAX_PATTERN = 1024

MSG_QUERY = (
    "pattern: a route pattern cannot contain a query string or fragment; remove '?...' or "
    "'#...' (a pattern ending in '*' also matches URLs with a query)"
)
MSG_SYNTAX = (
    "pattern: '*' is allowed only at the start of the host and at the end of the path, and "
    "the host is letters, digits, '-' and '.', e.g. 'example.com', '*.example.com/api/*'"
)
MSG_LENGTH = f"pattern: at most {MAX_PATTERN} characters"

# (CEL rule on the pattern string, message), in the order a person would fix them. The
# length is the schema's maxLength.
CEL_RULES: tuple[tuple[str, str], ...] = (
    ("!self.contains('?') && !self.contains('#')", MSG_QUERY),
    (f"self.matches(r'{ROUTE_PATTERN_RE}')", MSG_SYNTAX),
)


def pattern_error(pattern: str) -> str | None:
    """The first rule `pattern` breaks, as a message naming the fix, or None."""
    if len(pattern) > MAX_PATTERN:
        return MSG_LENGTH
    if "?" in pattern or "#" in pattern:
        return MSG_QUERY
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
    path: str  # literal part, normalised: the whole path, or the prefix before "*"
    path_wildcard: bool

    def canonical(self) -> str:
        """One spelling per pattern (host lower-cased, path normalised, `/` when none):
        the conflict key."""
        s = f"{self.scheme}://" if self.scheme else ""
        return f"{s}{'*' if self.host_wildcard else ''}{self.host}{self.path}" + (
            "*" if self.path_wildcard else ""
        )

    def matches(self, scheme: str, host: str, path_query: str) -> bool:
        """Whether a request for `scheme://host` + `path_query` (as sent) matches."""
        if self.scheme is not None and scheme.lower() != self.scheme:
            return False
        host = normalize_host(host)
        if self.host_wildcard:
            if not host.endswith(self.host):
                return False
        elif host != self.host:
            return False
        return self.matches_path(path_query)

    def matches_path(self, path_query: str) -> bool:
        """The path half of `matches`: an exact path matches only without a query."""
        pq = normalize_path(path_query)
        return pq.startswith(self.path) if self.path_wildcard else pq == self.path

    def specificity(self) -> tuple[int, int, int, int, int]:
        return (
            0 if self.host_wildcard else 1,
            len(self.host),
            0 if self.path_wildcard else 1,
            len(self.path),
            1 if self.scheme else 0,
        )

    def to_json(self) -> dict[str, object]:
        """The router's form: it compares these with `hostOf(Host)` and `pathname + search`."""
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


# WHATWG URL percent-encode sets for an http(s) URL, besides C0 controls and non-ASCII:
# the path set and the special-query set. The path set has '^' since the standard added
# it; workerd (the edge) escapes it, node 20 predates the change.
_PATH_ENCODE = frozenset(' "#<>?`{}^')
_QUERY_ENCODE = frozenset(" \"#<>'")
_DOT = frozenset({".", "%2e"})
_DOT_DOT = frozenset({"..", ".%2e", "%2e.", "%2e%2e"})
_C0_OR_SPACE = "".join(chr(c) for c in range(0x21))


def _usv(text: str) -> str:
    """A lone surrogate as U+FFFD, as JavaScript's URL parser reads it."""
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def _encode(text: str, escape: frozenset[str]) -> str:
    """Percent-encode controls, space, non-ASCII and `escape` as UTF-8 with upper-case hex;
    existing `%xx` stay as they are."""
    return "".join(
        "".join(f"%{b:02X}" for b in ch.encode()) if ch in escape or not 0x20 < ord(ch) < 0x7F
        else ch
        for ch in text
    )


def _path(raw: str, final: bool) -> str:
    """`raw` (after its leading slash) as a URL path: `\\` is `/`, dot segments resolved.
    Not `final` (a prefix before `*`): the last segment may go on, so it stays literal."""
    segments: list[str] = []
    parts = re.split(r"[/\\]", raw)
    for i, part in enumerate(parts):
        seg, last = _encode(part, _PATH_ENCODE), i == len(parts) - 1
        if last and not final:
            segments.append(seg)
        elif seg.lower() in _DOT_DOT:
            if segments:
                segments.pop()
            if last:
                segments.append("")
        elif seg.lower() in _DOT:
            if last:
                segments.append("")
        else:
            segments.append(seg)
    return "/" + "/".join(segments)


@lru_cache(maxsize=4096)
def normalize_path(path_query: str) -> str:
    """A request's path and query as the edge matches them: what `new URL('http://h' +
    path_query)` gives as `pathname + search` (dot segments and their `%2e` forms resolved,
    `\\` as `/`, non-ASCII and the characters the standard escapes percent-encoded as
    UTF-8, existing `%xx` kept, the fragment dropped, an empty query as none)."""
    pq = re.sub(r"[\t\n\r]", "", _usv(path_query)).rstrip(_C0_OR_SPACE)
    path, _, query = pq.split("#", 1)[0].partition("?")
    if path[:1] in ("/", "\\"):
        path = path[1:]
    return _path(path, final=True) + ("?" + _encode(query, _QUERY_ENCODE) if query else "")


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
        _path(_usv(path[:-1] if path_wildcard else path), final=not path_wildcard),
        path_wildcard,
    )


T = TypeVar("T")


def sort_most_specific_first(
    items: Iterable[tuple[RoutePattern, T]],
) -> list[tuple[RoutePattern, T]]:
    return sorted(items, key=lambda it: (it[0].specificity(), it[0].canonical()), reverse=True)


def best_match(
    patterns: Sequence[RoutePattern], scheme: str, host: str, path_query: str
) -> RoutePattern | None:
    """The most specific pattern matching the request, or None."""
    found = [p for p in patterns if p.matches(scheme, host, path_query)]
    if not found:
        return None
    return max(found, key=lambda p: (p.specificity(), p.canonical()))


@lru_cache(maxsize=65536)
def conflict_key(pattern: str) -> str:
    """Two routes with the same key claim the same requests: neither may win silently."""
    return parse_pattern(pattern).canonical()
