"""Route patterns from `route` / `routes` (pure), and patterns two Workers claim."""

from __future__ import annotations

from typing import Any

import pytest

from edgeplane.wrangler.errors import WranglerImportError
from edgeplane.wrangler.routes import (
    conflict_warnings,
    route_config,
    route_pattern,
    route_patterns,
)

TOP_ROUTES = {"routes": ["top.example/*"]}
TOP_ROUTE = {"route": "one.example/*"}


@pytest.mark.parametrize(
    ("cfg", "top", "expected"),
    [
        ({"routes": ["own/*"]}, TOP_ROUTES, ["own/*"]),
        ({"route": "own/*"}, TOP_ROUTES, "own/*"),  # its own `route` beats inherited routes
        ({}, TOP_ROUTES, ["top.example/*"]),
        ({}, TOP_ROUTE, "one.example/*"),
        ({"routes": ["a/*"], "route": "b/*"}, {}, ["a/*"]),  # `routes` first
        ({"routes": [], "route": "b/*"}, {}, []),  # an empty list is still `routes`
        ({}, {}, None),
    ],
)
def test_route_config(cfg: dict[str, Any], top: dict[str, Any], expected: Any) -> None:
    assert route_config(cfg, top) == expected


@pytest.mark.parametrize(
    ("item", "pattern", "warning"),
    [
        ("example.com/*", "example.com/*", None),
        ({"pattern": "example.com/api/*", "zone_name": "example.com"}, "example.com/api/*",
         None),
        ({"pattern": "example.com/*", "zone_id": "z"}, "example.com/*", None),
        ({"pattern": "apex.example", "custom_domain": True}, "apex.example/*", None),
        ({"pattern": "https://apex.example/", "custom_domain": True}, "apex.example/*", None),
        ("example.com", "example.com/*",
         "w: route 'example.com' has no path; imported as 'example.com/*'"),
        ("https://example.com", "https://example.com/*",
         "w: route 'https://example.com' has no path; imported as 'https://example.com/*'"),
    ],
)
def test_route_pattern(item: Any, pattern: str, warning: str | None) -> None:
    warn: list[str] = []
    assert route_pattern(item, "w", warn) == pattern
    assert warn == ([warning] if warning else [])


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ({"zone_name": "example.com"}, r"w: route \{'zone_name': 'example.com'\} has no pattern"),
        (1, "w: route 1 has no pattern"),
        ({"pattern": 5}, "has no pattern"),
        ({"pattern": "a.example/x", "custom_domain": True},
         "w: custom domain 'a.example/x' must be a plain hostname"),
        ({"pattern": "*.example", "custom_domain": True}, "must be a plain hostname"),
        ("example.com/*.jpg", r"w: route 'example.com/\*.jpg': .*'\*' is allowed only"),
    ],
)
def test_route_pattern_refuses(item: Any, message: str) -> None:
    with pytest.raises(WranglerImportError, match=message):
        route_pattern(item, "w", [])


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("a.example/*", ["a.example/*"]),
        (["a.example/*", "b.example/*"], ["a.example/*", "b.example/*"]),
        (["a.example/*", "a.example"], ["a.example/*"]),  # the same pattern once
        ([], []),
    ],
)
def test_route_patterns(raw: Any, expected: list[str]) -> None:
    assert route_patterns(raw, "w", []) == expected


def _route(pattern: str, worker: str) -> dict[str, Any]:
    return {"kind": "WorkerRoute", "spec": {"pattern": pattern, "worker": worker}}


@pytest.mark.parametrize(
    ("docs", "expected"),
    [
        ([_route("a/*", "w"), _route("b/*", "w-dev")], []),
        ([_route("a/*", "w"), {"kind": "Worker", "spec": {}}, _route("a/*", "w-dev")],
         ["route 'a/*' is claimed by both w and w-dev (environments inherit routes); "
          "edgeplane refuses both until one changes"]),
        # Each later claim is named against the first.
        ([_route("a/*", "w"), _route("a/*", "x"), _route("a/*", "y")],
         ["route 'a/*' is claimed by both w and x (environments inherit routes); edgeplane "
          "refuses both until one changes",
          "route 'a/*' is claimed by both w and y (environments inherit routes); edgeplane "
          "refuses both until one changes"]),
    ],
)
def test_conflict_warnings(docs: list[dict[str, Any]], expected: list[str]) -> None:
    assert conflict_warnings(docs) == expected
