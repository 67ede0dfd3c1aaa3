"""Route pattern parsing and precedence, against the case table the JS router also runs."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from edgeplane.routes import best_match, parse_pattern

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
