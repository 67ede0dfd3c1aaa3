"""Syntax of Cloudflare route patterns, checked at admission (CEL) and when parsing.

Only the syntax lives here; matching and precedence belong to `edgeplane.routes`.
Rules: optional `http://` or `https://`; `*` only at the start of the host and at the end
of the path; a path is required; no query string or fragment.
"""

from __future__ import annotations

import re

# RE2-compatible, so the same text serves Python and the apiserver's CEL `matches`.
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

# (CEL rule on the pattern string, message), in the order a person would fix them.
CEL_RULES: tuple[tuple[str, str], ...] = (
    ("!self.contains('?') && !self.contains('#')", MSG_QUERY),
    (r"self.matches(r'^(https?://)?[^/]+/')", MSG_PATH),
    (f"self.matches(r'{ROUTE_PATTERN_RE}')", MSG_SYNTAX),
)


def pattern_error(pattern: str) -> str | None:
    """The first rule `pattern` breaks, as a message naming the fix, or None."""
    if "?" in pattern or "#" in pattern:
        return MSG_QUERY
    if not re.match(r"^(https?://)?[^/]+/", pattern):
        return MSG_PATH
    if not re.fullmatch(ROUTE_PATTERN_RE, pattern):
        return MSG_SYNTAX
    return None


def check_pattern(pattern: str) -> str:
    """Pydantic AfterValidator: raises ValueError with the same text the apiserver shows."""
    err = pattern_error(pattern)
    if err is not None:
        raise ValueError(err)
    return pattern
