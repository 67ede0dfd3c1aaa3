"""Route patterns: the table of documented cases (tests/data/route_cases.json) run by the
Python matcher and by the router's own JavaScript under node, the request normalisation
checked against node's URL parser, and the grammar, canonical form and precedence."""

from __future__ import annotations

import re
from typing import Any

import pytest

from edgeplane.edge import render
from edgeplane.routing import (
    CEL_RULES,
    MAX_PATTERN,
    RoutePattern,
    best_match,
    conflict_key,
    normalize_path,
    parse_pattern,
    sort_most_specific_first,
)
from edgeplane.routing.router_js import ROUTER_JS
from tests.integration.edge_fixtures import deployment, text_worker
from tests.route_cases import CASE_IDS, CASES, GROUPS, INVALID, PATHS, TABLE, VALID, split_url
from tests.router_node import run_router

# Imports the router module's own helpers and answers, for every table of routes, which route
# each URL reaches (its Worker's name, or "exclude:<namespace>"): through the front's index
# built by applyState, as the front serves, and through routeFor over the whole list sorted
# by the operator's order; and for every path what new URL() makes of it.
RUN_JS = r"""
import { readFileSync } from "node:fs";
import { applyState, hostOf, lookup, pathQueryOf, routeFor } from "./router.mjs";
const input = JSON.parse(readFileSync(0, "utf8"));
const name = (r) =>
  r === null ? null : r.exclude !== undefined ? "exclude:" + r.exclude : r.worker;
const tables = input.tables.map((t) => {
  const st = applyState(null, t.state, true);
  return t.urls.map((u) => {
    const url = new URL(u);
    const args = [url.protocol.slice(0, -1), hostOf(url.host), pathQueryOf(url)];
    return [name(lookup(st.index, ...args)), name(routeFor(t.sorted, ...args))];
  });
});
const paths = input.paths.map((p) => pathQueryOf(new URL("http://h" + p)));
process.stdout.write(JSON.stringify({ tables, paths }));
"""
EXCLUDE = "exclude:"  # a route without a Worker, as the tables name it: exclude:<namespace>


def _worker(gi: int, pi: int) -> str:
    return f"g{gi}.p{pi}"


def _exclusions(routes: dict[str, str]) -> dict[str, tuple[str, ...]]:
    out: dict[str, tuple[str, ...]] = {}
    for p, w in routes.items():
        if w.startswith(EXCLUDE):
            ns = w.removeprefix(EXCLUDE)
            out[ns] = (*out.get(ns, ()), p)
    return out


def _table(routes: dict[str, str], urls: list[str]) -> dict[str, Any]:
    """Routes (pattern -> Worker, or exclude:<namespace>) as the front's state, and as the
    whole list sorted most specific first."""
    workers = {
        w: render.worker_entry(deployment(text_worker(w, w), routes=(p,)), "c0")
        for p, w in routes.items()
        if not w.startswith(EXCLUDE)
    }
    settings = render.front_settings({}, render.RouterSettings(_exclusions(routes)))
    listed = [
        {"pattern": p.to_json(), "worker": w}
        if not w.startswith(EXCLUDE)
        else {"pattern": p.to_json(), "exclude": w.removeprefix(EXCLUDE)}
        for p, w in sort_most_specific_first((parse_pattern(p), w) for p, w in routes.items())
    ]
    return {"state": {"seq": 1, "workers": workers, **settings}, "sorted": listed, "urls": urls}


def _combined() -> dict[str, str]:
    """Every distinct pattern of every group in one table; every third one a route without
    a Worker, so exclusions sort among the routes of many hosts."""
    distinct = list({conflict_key(p): p for p in VALID}.values())
    return {p: f"{EXCLUDE}ex" if i % 3 == 1 else f"w{i}.r" for i, p in enumerate(distinct)}


COMBINED_URLS = list(dict.fromkeys(c["url"] for _, c in CASES))


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The router's answers under node: {"routed": {(group, url): (by lookup, by routeFor)},
    "combined": {url: (...)}, "paths": {path: pathname + search}}."""
    tables = [
        _table(
            {p: _worker(gi, pi) for pi, p in enumerate(g["patterns"])},
            [c["url"] for c in g["cases"]],
        )
        for gi, g in enumerate(GROUPS)
    ]
    tables.append(_table(_combined(), COMBINED_URLS))
    out = run_router(tmp_path_factory.mktemp("router"), RUN_JS, {"tables": tables, "paths": PATHS})
    routed = {}
    for gi, (g, answers) in enumerate(zip(GROUPS, out["tables"], strict=False)):
        names = {_worker(gi, pi): p for pi, p in enumerate(g["patterns"])}
        for c, pair in zip(g["cases"], answers, strict=True):
            routed[(gi, c["url"])] = tuple(names[w] if w is not None else None for w in pair)
    combined = dict(zip(COMBINED_URLS, map(tuple, out["tables"][-1]), strict=True))
    return {
        "routed": routed,
        "combined": combined,
        "paths": dict(zip(PATHS, out["paths"], strict=True)),
    }


@pytest.mark.parametrize(("gi", "case"), CASES, ids=CASE_IDS)
def test_table_python(gi: int, case: dict[str, Any]) -> None:
    pats = {parse_pattern(p): p for p in GROUPS[gi]["patterns"]}
    got = best_match(list(pats), *split_url(case["url"]))
    assert (pats[got] if got else None) == case["expect"]


@pytest.mark.parametrize(("gi", "case"), CASES, ids=CASE_IDS)
def test_table_router_js(node: dict[str, Any], gi: int, case: dict[str, Any]) -> None:
    """The front's index (applyState, lookup) answers as the table says, and as routeFor
    over the whole list sorted by the operator's order."""
    by_index, by_sorted_list = node["routed"][(gi, case["url"])]
    assert by_index == case["expect"]
    assert by_sorted_list == case["expect"]


@pytest.mark.parametrize("url", COMBINED_URLS)
def test_index_agrees_with_the_sorted_list_over_every_pattern(
    node: dict[str, Any], url: str
) -> None:
    """Every pattern of the table at once, a third of them routes without a Worker: the
    index per host answers as the sorted list and as the Python matcher."""
    routes = _combined()
    pats: dict[RoutePattern, str] = {parse_pattern(p): w for p, w in routes.items()}
    best = best_match(list(pats), *split_url(url))
    assert node["combined"][url] == ((pats[best],) * 2 if best else (None, None))


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
    [
        *VALID,
        *(r["pattern"] for r in INVALID),
        "a" * 1025 + "/",
        "example.com/a\u00a0",
        "example.com/a\x0b",
        "example.com/a\x01",
    ],
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
    for name in ("hostOf", "pathQueryOf", "matches", "routeFor", "lookup", "applyState"):
        assert f"export function {name}(" in ROUTER_JS
    assert "lookup(st.index, scheme, host, pathQueryOf(url))" in ROUTER_JS
    assert "STATE = applyState(STATE, doc, whole)" in ROUTER_JS
