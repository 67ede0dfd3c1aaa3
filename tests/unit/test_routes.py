"""Route patterns: the table of documented cases (tests/data/route_cases.json) run by the
Python matcher and by the router's own JavaScript under node, the request normalisation
checked against node's URL parser, and the grammar, canonical form and precedence."""

from __future__ import annotations

import json
import re
import subprocess
from typing import Any

import pytest

from edgeplane.edge.render import router_table
from edgeplane.routing import (
    CEL_RULES,
    MAX_PATTERN,
    best_match,
    conflict_key,
    normalize_path,
    parse_pattern,
)
from edgeplane.routing.router_js import ROUTER_JS
from tests.integration.edge_fixtures import deployment, text_worker
from tests.route_cases import CASE_IDS, CASES, GROUPS, INVALID, PATHS, TABLE, VALID, split_url

# Imports the router module's own helpers and answers, for every group's route table, which
# route each URL reaches (its Worker's name), and for every path what new URL() makes of it.
RUN_JS = r"""
import { readFileSync } from "node:fs";
import { hostOf, pathQueryOf, routeFor } from "./router.mjs";
const input = JSON.parse(readFileSync(0, "utf8"));
const routed = input.groups.map((g) =>
  g.urls.map((u) => {
    const url = new URL(u);
    const scheme = url.protocol.slice(0, -1);
    const route = routeFor(g.routes, scheme, hostOf(url.host), pathQueryOf(url));
    return route === null ? null : route.worker;
  }),
);
const paths = input.paths.map((p) => pathQueryOf(new URL("http://h" + p)));
process.stdout.write(JSON.stringify({ routed, paths }));
"""


def _worker(gi: int, pi: int) -> str:
    return f"g{gi}.p{pi}"


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The router's answers under node: {"routed": {(group, url): pattern}, "paths": {..}}."""
    d = tmp_path_factory.mktemp("router")
    (d / "router.mjs").write_text(ROUTER_JS)
    (d / "run.mjs").write_text(RUN_JS)
    groups = []
    for gi, g in enumerate(GROUPS):
        deps = [
            deployment(text_worker(_worker(gi, pi), p), routes=(p,))
            for pi, p in enumerate(g["patterns"])
        ]
        groups.append(
            {"routes": router_table(deps)[0], "urls": [c["url"] for c in g["cases"]]}
        )
    res = subprocess.run(
        ["node", str(d / "run.mjs")],
        input=json.dumps({"groups": groups, "paths": PATHS}),
        capture_output=True, text=True, check=True, timeout=60,
    )
    out = json.loads(res.stdout)
    routed = {}
    for gi, (g, answers) in enumerate(zip(GROUPS, out["routed"], strict=True)):
        names = {_worker(gi, pi): p for pi, p in enumerate(g["patterns"])}
        for c, w in zip(g["cases"], answers, strict=True):
            routed[(gi, c["url"])] = names[w] if w is not None else None
    return {"routed": routed, "paths": dict(zip(PATHS, out["paths"], strict=True))}


@pytest.mark.parametrize(("gi", "case"), CASES, ids=CASE_IDS)
def test_table_python(gi: int, case: dict[str, Any]) -> None:
    pats = {parse_pattern(p): p for p in GROUPS[gi]["patterns"]}
    got = best_match(list(pats), *split_url(case["url"]))
    assert (pats[got] if got else None) == case["expect"]


@pytest.mark.parametrize(("gi", "case"), CASES, ids=CASE_IDS)
def test_table_router_js(node: dict[str, Any], gi: int, case: dict[str, Any]) -> None:
    assert node["routed"][(gi, case["url"])] == case["expect"]


@pytest.mark.parametrize("path", PATHS)
def test_normalize_path_as_node(node: dict[str, Any], path: str) -> None:
    """Python's normalisation is `new URL()`'s. Node 20 predates the URL standard's
    escaping of '^' in paths, which workerd (the edge) does: that one difference is
    applied to node's answer (the integration test compares with workerd itself)."""
    pathname, q, query = node["paths"][path].partition("?")
    assert normalize_path(path) == pathname.replace("^", "%5E") + q + query


@pytest.mark.parametrize("row", TABLE["canonical"], ids=lambda r: r["pattern"])
def test_canonical(row: dict[str, str]) -> None:
    assert parse_pattern(row["pattern"]).canonical() == row["canonical"]


@pytest.mark.parametrize("row", INVALID, ids=lambda r: r["pattern"])
def test_invalid(row: dict[str, str]) -> None:
    with pytest.raises(ValueError, match=re.escape(row["error"])):
        parse_pattern(row["pattern"])


def test_canonical_pattern_matches_the_path_the_edge_sees() -> None:
    """A pattern's normalised path is itself a fixed point of the request normalisation."""
    for pattern in VALID:
        p = parse_pattern(pattern)
        if not p.path_wildcard:
            assert normalize_path(p.path) == p.path, pattern
            assert p.matches_path(p.path), pattern


@pytest.mark.parametrize(
    ("pattern", "host", "matches"),
    [
        ("*example.com/*", "example.com", True),
        ("*example.com/*", "myexample.com:8080", True),
        ("*.example.com/*", "example.com", False),
        ("*/*", "anything.test", True),
        ("example.com/*", "EXAMPLE.com.", True),
        ("example.com/*", "[::1]:8080", False),
    ],
)
def test_host_matching(pattern: str, host: str, matches: bool) -> None:
    assert parse_pattern(pattern).matches("https", host, "/") is matches


def test_specificity_order() -> None:
    order = [
        "https://www.example.com/api",
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
        ("example.com", "example.com/", True),  # the implied path
        ("example.com/café", "example.com/caf%C3%A9", True),  # one normalised path
        ("example.com/a/../b", "example.com/b", True),
        ("example.com/a*", "example.com/a", False),
    ],
)
def test_conflict_key(a: str, b: str, conflict: bool) -> None:
    assert (conflict_key(a) == conflict_key(b)) is conflict


@pytest.mark.parametrize(
    "pattern",
    [*VALID, *(r["pattern"] for r in INVALID), "a" * 1025 + "/", "example.com/a\u00a0",
     "example.com/a\x0b", "example.com/a\x01"],
)
def test_parser_and_admission_grammar_agree(pattern: str) -> None:
    """One grammar: parse_pattern accepts exactly what the CEL rules and maxLength accept
    (the apiserver's own answers are tests/integration/test_api_crds.py's)."""
    admitted = len(pattern) <= MAX_PATTERN and all(
        _cel_holds(rule, pattern) for rule, _ in CEL_RULES
    )
    try:
        parse_pattern(pattern)
        parsed = True
    except ValueError:
        parsed = False
    assert parsed is admitted


def _cel_holds(rule: str, s: str) -> bool:
    """A CEL rule of CEL_RULES on `s`: `self.matches(r'...')` or `!self.contains('c')`s."""
    if rule.startswith("self.matches(r'"):
        return re.search(rule.split("matches(r'", 1)[1].rsplit("')", 1)[0], s) is not None
    banned = re.findall(r"!self\.contains\('(.)'\)", rule)
    assert rule == " && ".join(f"!self.contains('{c}')" for c in banned), rule
    return not any(c in s for c in banned)


def test_router_js_is_the_module_node_runs() -> None:
    """The exports the tests import are the ones the router's fetch uses."""
    for name in ("hostOf", "pathQueryOf", "matches", "routeFor"):
        assert f"export function {name}(" in ROUTER_JS
    assert "routeFor(env.ROUTES, scheme, host, pathQueryOf(url))" in ROUTER_JS
