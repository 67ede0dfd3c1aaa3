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
        # No path is Cloudflare's implied '/': kept as written, never widened to '/*'.
        ("example.com", "example.com", None),
        ("https://example.com", "https://example.com", None),
        ({"pattern": "example.com", "zone_name": "example.com"}, "example.com", None),
        ("*.example.com/*", "*.example.com/*", None),
        ("*/*", "*/*", None),  # Cloudflare for SaaS: every host, here too
        ("example.com/caf\u00e9/*", "example.com/caf\u00e9/*", None),  # normalised when parsed
        # Cloudflare keeps '*example.com' to its zone; edgeplane has none, so it says so.
        ("*example.com/*", "*example.com/*",
         "w: route '*example.com/*': edgeplane has no zones, so it also matches other hosts "
         "ending in 'example.com' (e.g. 'myexample.com'); for example.com and its subdomains "
         "only, use 'example.com/*' and '*.example.com/*'"),
        ({"pattern": "https://*example.com", "zone_id": "z"}, "https://*example.com",
         "w: route 'https://*example.com': edgeplane has no zones, so it also matches other "
         "hosts ending in 'example.com' (e.g. 'myexample.com'); for example.com and its "
         "subdomains only, use 'https://example.com' and 'https://*.example.com'"),
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
        ("example.com/?foo=*", r"w: route 'example.com/\?foo=\*': .*query string"),
        ("caf\u00e9.example/*", r"w: route 'caf\u00e9.example/\*': .*the host is letters"),
        ("example.com:8080/*", r"'\*' is allowed only"),
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
        (["a.example/*", "a.example/*"], ["a.example/*"]),  # the same pattern once
        (["a.example/*", "a.example"], ["a.example/*", "a.example"]),  # '/*' is not '/'
        (["a.example", "A.example/"], ["a.example"]),  # two spellings of one pattern
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
        ([_route("a", "w"), _route("A/", "w-dev")],
         ["route 'A/' is claimed by both w and w-dev (environments inherit routes); "
          "edgeplane refuses both until one changes"]),
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
