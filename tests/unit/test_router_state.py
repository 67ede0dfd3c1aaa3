"""The front's state as the agent pushes it (routing.router_js `applyState`): a state sent
whole (PUT /state), then changes on top of it (PATCH /state: the Workers that changed, None
for a Worker gone, and any other key replaced whole), leave the front answering exactly as
the final state sent whole, with the same index, and as the Python matcher says. Run by the
router's own JavaScript under node."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest

from edgeplane.edge import render
from edgeplane.edge.placement import place
from edgeplane.routing import best_match, parse_pattern
from edgeplane.wire import BundleBinding, Deployment
from tests.integration.edge_fixtures import bundle, deployment, text_worker
from tests.route_cases import CASES, split_url
from tests.router_node import run_router

RUN_JS = r"""
import { readFileSync } from "node:fs";
import { applyState, hostOf, lookup, pathQueryOf } from "./router.mjs";
const input = JSON.parse(readFileSync(0, "utf8"));
const label = (r) => (r.exclude !== undefined ? "exclude:" + r.exclude : r.worker) + " " +
  r.rank[r.rank.length - 1];
function answer(st, u) {
  const url = new URL(u);
  const r = lookup(st.index, url.protocol.slice(0, -1), hostOf(url.host), pathQueryOf(url));
  if (r === null) return null;
  if (r.exclude !== undefined) return { exclude: r.exclude };
  return { worker: r.worker, traffic: r.traffic, versions: r.versions,
    cell: st.workers[r.worker].cell };
}
function view(st, urls) {
  const exact = [...st.index.exact.entries()].sort((a, b) => (a[0] < b[0] ? -1 : 1));
  return {
    answers: urls.map((u) => answer(st, u)),
    index: { exact: exact.map(([h, l]) => [h, l.map(label)]), wild: st.index.wild.map(label) },
    state: { seq: st.seq, workers: st.workers, exclusions: st.exclusions, cells: st.cells,
      quarantined: st.quarantined, bypass: st.bypass, signing: st.signing },
  };
}
const out = input.scenarios.map((sc) => {
  let st = null;
  sc.docs.forEach((doc, i) => { st = applyState(st, doc, i === 0); });
  const patched = view(st, input.urls);
  return { patched: patched, whole: view(applyState(null, sc.whole, true), input.urls) };
});
process.stdout.write(JSON.stringify(out));
"""


def dep(worker: str, *routes: str, versions: int = 1, split: tuple[int, ...] = ()) -> Deployment:
    """`worker` with `versions` versions (the first primary), on `routes`, split by percent."""
    bundles = [text_worker(worker, f"{worker} v{i}") for i in range(versions)]
    traffic = tuple((b.version or "", p) for b, p in zip(bundles, split, strict=False))
    return deployment(*bundles, routes=routes, traffic=traffic)


@dataclass(frozen=True)
class Location:
    """What the agent serves at a location, as far as the front knows it."""

    workers: tuple[Deployment, ...] = ()
    exclusions: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    quarantined: Mapping[str, str] = field(default_factory=dict)
    cells: Mapping[str, int] = field(default_factory=lambda: {"c0": 8001, "c1": 8002})
    bypass: int = 404

    def settings(self) -> dict[str, object]:
        router = render.RouterSettings(self.exclusions, self.bypass, "k" * 32)
        return {**render.front_settings(self.quarantined, router), "cells": dict(self.cells)}


def _entries(loc: Location, placement: dict[str, str]) -> dict[str, dict[str, object]]:
    """Worker → its front entry, placed as the agent places (kept from `placement`)."""
    by_name = {d.worker: d for d in loc.workers}
    placement.update(
        place({w: render.needs_own_cell(d) for w, d in by_name.items()}, placement, 2).cells
    )
    return {w: render.worker_entry(d, placement[w]) for w, d in by_name.items()}


def _docs(steps: list[Location]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The agent's pushes for `steps`: the first whole, each next one as its changes; and
    the last one whole."""
    placement: dict[str, str] = {}
    entries, settings = _entries(steps[0], placement), steps[0].settings()
    docs: list[dict[str, Any]] = [{"seq": 1, "workers": entries, **settings}]
    for seq, loc in enumerate(steps[1:], start=2):
        new, new_settings = _entries(loc, placement), loc.settings()
        changed = sorted(w for w in {*entries, *new} if entries.get(w) != new.get(w))
        doc: dict[str, Any] = {"base": seq - 1, "seq": seq}
        doc["workers"] = {w: new.get(w) for w in changed}
        doc |= {k: v for k, v in new_settings.items() if settings[k] != v}
        docs.append(doc)
        entries, settings = new, new_settings
    return docs, {"seq": len(steps), "workers": entries, **settings}


WWW = dep("www.site", "www.example.com/*")
API = dep("api.site", "*.example.com/api/*")
ROOT = dep("root.site", "example.com/*", "example.com")
HELLO = dep("hello.site", "example.com/hello/*")
ALL = dep("all.other", "*/*")
IMAGES = dep("img.site", "https://*.example.com/images/*")
API_SPLIT = dep("api.site", "*.example.com/api/*", versions=2, split=(90, 10))
API_DARK = dep("api.site", "*.example.com/api/*", versions=2, split=(100, 0))
WWW_MOVED = dep("www.site", "*.example.com/*")
WWW_MORE = dep("www.site", "www.example.com/api/*", "*example.com/*", "https://www.example.com/")
# A Durable Object Worker: its own cell (do:room.site), a cell key like any other here.
ROOM = BundleBinding(name="ROOM", durableObjectClass="Room")
DO = deployment(
    bundle("room.site", "export default {}", bindings=(ROOM,)), routes=("example.com/rooms/*",)
)


SCENARIOS: dict[str, list[Location]] = {
    "add-a-worker": [Location((WWW, API)), Location((WWW, API, ROOT))],
    "add-on-a-host-in-use": [Location((ROOT,)), Location((ROOT, HELLO))],
    "add-to-an-empty-front": [Location(), Location((WWW, ALL))],
    "change-routes": [Location((WWW, ROOT)), Location((WWW_MORE, ROOT))],
    "change-traffic": [Location((API,)), Location((API_SPLIT,)), Location((API_DARK,))],
    "move-exact-to-wildcard": [Location((WWW, API)), Location((WWW_MOVED, API))],
    "remove-a-worker": [Location((WWW, API, ROOT, HELLO)), Location((API, HELLO))],
    "remove-all-then-add-back": [Location((WWW, ROOT)), Location(), Location((WWW,))],
    "exclusions-replaced": [
        Location((WWW, ROOT), {"site": ("www.example.com/static/*",)}),
        Location((WWW, ROOT), {"site": ("example.com/x",), "other": ("*/private/*",)}),
    ],
    "exclusions-dropped": [
        Location((WWW, ALL), {"site": ("www.example.com/static/*", "*.example.com/")}),
        Location((WWW, ALL)),
    ],
    # A push that changes only Workers leaves the exclusions as they were.
    "exclusions-kept": [
        Location((WWW,), {"site": ("www.example.com/static/*",)}),
        Location((WWW, ROOT, ALL), {"site": ("www.example.com/static/*",)}),
    ],
    "other-keys-replaced": [
        Location((WWW, API)),
        Location((WWW, API), quarantined={API.primary: "hung"}, cells={"c0": 9001}, bypass=410),
    ],
    "a-long-day": [
        Location((WWW,)),
        Location((WWW, API, ALL), {"site": ("example.com/x",)}),
        Location((WWW_MORE, API_SPLIT, ALL, IMAGES), {"site": ("example.com/x",)}),
        Location((WWW_MORE, API_SPLIT, IMAGES, DO), {"site": ("www.example.com/static/*",)}),
        Location((WWW, API_DARK, IMAGES, ROOT, HELLO)),
        Location((ROOT, HELLO, ALL), {"other": ("https://*.example.com/",)}),
    ],
}
URLS = list(
    dict.fromkeys(
        [
            *(c["url"] for _, c in CASES),
            "https://www.example.com/static/a.css",
            "https://www.example.com/api/v1",
            "https://eu.example.com/api/v1",
            "http://example.com/x",
            "http://example.com/rooms/1",
            "https://example.com/hello/there",
            "https://cdn.example.com/images/a.png",
            "http://elsewhere.test/private/a",
            "http://elsewhere.test/public",
        ]
    )
)


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """Scenario → {"patched": the front after the pushes, "whole": after the last whole}."""
    scenarios = []
    for steps in SCENARIOS.values():
        docs, whole = _docs(steps)
        scenarios.append({"docs": docs, "whole": whole})
    out = run_router(
        tmp_path_factory.mktemp("state"), RUN_JS, {"scenarios": scenarios, "urls": URLS}
    )
    return dict(zip(SCENARIOS, out, strict=True))


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_changes_answer_as_the_final_state_whole(
    node: dict[str, dict[str, Any]], scenario: str
) -> None:
    got = node[scenario]
    assert got["patched"]["answers"] == got["whole"]["answers"]
    assert got["patched"]["index"] == got["whole"]["index"]
    assert got["patched"]["state"] == got["whole"]["state"]


def _expected(loc: Location, url: str) -> str | None:
    """The Python matcher's answer over the location's routes and exclusions."""
    owner = {parse_pattern(r.pattern): d.worker for d in loc.workers for r in d.routes}
    owner |= {parse_pattern(p): f"exclude:{ns}" for ns, ps in loc.exclusions.items() for p in ps}
    best = best_match(list(owner), *split_url(url))
    return owner[best] if best else None


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_changes_answer_as_the_python_matcher(
    node: dict[str, dict[str, Any]], scenario: str
) -> None:
    final = SCENARIOS[scenario][-1]
    got = [
        None if a is None else a.get("worker") or f"exclude:{a['exclude']}"
        for a in node[scenario]["patched"]["answers"]
    ]
    assert got == [_expected(final, u) for u in URLS]
    if final.workers:
        assert any(g is not None for g in got)


def test_a_route_carries_its_split_and_its_cell(node: dict[str, dict[str, Any]]) -> None:
    """What the front sends a request on with, after changes: the split, the versions an
    override may name, the cell."""
    answers = dict(zip(URLS, node["change-traffic"]["patched"]["answers"], strict=True))
    a = answers["https://eu.example.com/api/v1"]
    v1, v2 = (b.version for b in API_DARK.versions)
    assert a["traffic"] == [{"version": v1, "percent": 100}]  # the 0 % one is dark
    assert a["versions"] == [{"version": v1}, {"version": v2}]  # an override reaches it
    assert a["cell"] == "c0"
    day = dict(zip(URLS, node["a-long-day"]["patched"]["answers"], strict=True))
    # The Durable Object Worker is gone: its path falls to the less specific example.com/*.
    assert day["http://example.com/rooms/1"]["worker"] == "root.site"
    assert node["a-long-day"]["patched"]["state"]["workers"].keys() == {
        "root.site",
        "hello.site",
        "all.other",
    }


def test_a_durable_object_worker_is_sent_to_its_own_cell(
    node: dict[str, dict[str, Any]],
) -> None:
    docs, _ = _docs(SCENARIOS["a-long-day"])
    assert docs[3]["workers"]["room.site"]["cell"] == "do:room.site"
