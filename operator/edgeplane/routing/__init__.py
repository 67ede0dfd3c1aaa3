"""Route patterns (grammar, canonical form, matching, precedence) and the edge router's
JavaScript: one source for the API, the operator and the agent."""

from edgeplane.routing.pattern import (
    CEL_RULES,
    MAX_PATTERN,
    RoutePattern,
    best_match,
    check_pattern,
    conflict_key,
    normalize_host,
    normalize_path,
    parse_pattern,
    pattern_error,
    sort_most_specific_first,
)

__all__ = [
    "CEL_RULES",
    "MAX_PATTERN",
    "RoutePattern",
    "best_match",
    "check_pattern",
    "conflict_key",
    "normalize_host",
    "normalize_path",
    "parse_pattern",
    "pattern_error",
    "sort_most_specific_first",
]
