"""Route pattern parsing and precedence, against the case table the JS router also runs."""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from edgeplane.routing import CEL_RULES, MAX_PATTERN, best_match, conflict_key, parse_pattern

TABLE = json.loads((Path(__file__).parents[1] / "data" / "route_cases.json").read_text())


@pytest.mark.parametrize("case", TABLE["cases"], ids=lambda c: c["url"])
def test_table(case: dict) -> None:
    pats = {parse_pattern(p): p for p in TABLE["patterns"]}
    u = urlsplit(case["url"])
    got = best_match(list(pats), u.scheme, u.netloc, u.path or "/")
    assert (pats[got] if got else None) == case["expect"]


@pytest.mark.parametrize("bad", TABLE["invalid"])
def test_invalid(bad: str) -> None:
    with pytest.raises(ValueError, match="pattern"):
        parse_pattern(bad)


def test_wildcard_host_matches_bare_domain() -> None:
    p = parse_pattern("*example.com/*")
    assert p.matches("http", "example.com", "/") and p.matches("http", "myexample.com:8080", "/")
    assert not parse_pattern("*.example.com/*").matches("http", "example.com", "/")


def test_canonical_folds_host_case_not_path() -> None:
    assert parse_pattern("EXAMPLE.com/A*").canonical() == "example.com/A*"
    assert parse_pattern("Example.com/a").canonical() != parse_pattern("example.com/A").canonical()


def test_specificity_order() -> None:
    order = [
        "www.example.com/api",
        "www.example.com/api/*",
        "www.example.com/*",
        "*.example.com/api/*",
        "*example.com/*",
        "*/*",
    ]
    keys = [parse_pattern(p).specificity() for p in order]
    assert keys == sorted(keys, reverse=True)


@pytest.mark.parametrize(
    ("a", "b", "conflict"),
    [
        ("example.com/a", "EXAMPLE.com/a", True),  # host case folds
        ("example.com/a", "example.com/A", False),  # path case does not
        ("http://example.com/a", "https://example.com/a", False),  # disjoint requests
        ("example.com/a", "https://example.com/a", False),  # the scheme one is more specific
        ("https://Example.com/a", "https://example.COM/a", True),
        ("*.example.com/*", "*example.com/*", False),
    ],
)
def test_conflict_key(a: str, b: str, conflict: bool) -> None:
    assert (conflict_key(a) == conflict_key(b)) is conflict


@pytest.mark.parametrize("pattern", [*TABLE["patterns"], *TABLE["invalid"], "a" * 1025 + "/"])
def test_parser_and_admission_grammar_agree(pattern: str) -> None:
    """One grammar: parse_pattern accepts exactly what the CEL rules and maxLength accept."""
    admitted = len(pattern) <= MAX_PATTERN and all(
        re.search(_cel_regex(rule), pattern) if "matches" in rule else not any(
            c in pattern for c in "?#"
        )
        for rule, _ in CEL_RULES
    )
    try:
        parse_pattern(pattern)
        parsed = True
    except ValueError:
        parsed = False
    assert parsed is admitted


def _cel_regex(rule: str) -> str:
    """The regular expression inside a CEL `self.matches(r'...')` rule."""
    return rule.split("matches(r'", 1)[1].rsplit("')", 1)[0]
