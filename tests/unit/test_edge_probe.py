"""The pure parts of probes (edgeplane.edge.probe): which Worker version a probe may ask
for and where it is sent, as tables."""

from __future__ import annotations

import pytest

from edgeplane.edge import probe as probes
from edgeplane.edge.probe import ProbeError, Target
from tests.integration.edge_fixtures import deployment, text_worker

_a1, _a2 = text_worker("ns.a", "a1"), text_worker("ns.a", "a2")
A1, A2 = _a1.version or "", _a2.version or ""
OUTSIDE = "f" * 64
DEPLOYED = {
    d.worker: d
    for d in (
        deployment(_a1, _a2, routes=("a.test/*",)),
        deployment(text_worker("ns.b", "b"), routes=("a.test/api/*",)),  # below ns.a's route
        deployment(text_worker("ns.c", "c")),  # no routes
        deployment(text_worker("ns.w", "w"), routes=("*.w.test/*",)),
        deployment(text_worker("ns.h", "h"), routes=("http://h.test/*",)),
        deployment(text_worker("ns.e", "e"), routes=("e.test/health",)),  # an exact path
    )
}


def primary(worker: str) -> str:
    return DEPLOYED[worker].primary


NOT_SERVED = (
    f"version {OUTSIDE[:12]} of Worker ns.a is not served at this location (it serves "
    f"{A1[:12]}, {A2[:12]})"
)
NO_ROUTE = (
    "probe path / matches none of the Worker's routes at this location; set host or add a route"
)
TAKEN = (
    "probe URL https://a.test/api/x is served by Worker ns.b at this location, not ns.a; "
    "set a host that only ns.a's routes match"
)


@pytest.mark.parametrize(
    ("worker", "version", "path", "host", "expected"),
    [
        ("ns.a", A2, "/", None, Target("https", "a.test")),
        ("ns.a", A1, "/x?y=1", None, Target("https", "a.test")),
        ("ns.a", A1, "/", "a.test", Target("https", "a.test")),
        ("ns.w", primary("ns.w"), "/", None, Target("https", "edgeplane-probe.w.test")),
        ("ns.h", primary("ns.h"), "/", None, Target("http", "h.test")),
        ("ns.h", primary("ns.h"), "/", "h.test", Target("http", "h.test")),  # https is not h's
        ("ns.x", A1, "/", None, (404, "Worker ns.x is not deployed here", {})),
        ("ns.a", OUTSIDE, "/", None, (409, NOT_SERVED, {"versions": [A1, A2]})),
        ("ns.a", A1, "/api/x", None, (422, TAKEN, {})),
        ("ns.c", primary("ns.c"), "/", None, (422, NO_ROUTE, {})),
        ("ns.e", primary("ns.e"), "/health", None, Target("https", "e.test")),
        ("ns.e", primary("ns.e"), "/x/../health", None, Target("https", "e.test")),
        # The query counts: an exact path matches only a URL without one, as at the edge.
        ("ns.e", primary("ns.e"), "/health?full=1", None,
         (422, NO_ROUTE.replace("path /", "path /health?full=1"), {})),
    ],
)
def test_resolve(
    worker: str, version: str, path: str, host: str | None, expected: Target | tuple
) -> None:
    try:
        got: Target | tuple = probes.resolve(DEPLOYED, worker, version, path, host)
    except ProbeError as e:
        got = (e.status, e.message, e.extra)
    assert got == expected


@pytest.mark.parametrize(
    ("sockname", "expected"),
    [
        (("127.0.0.1", 8080), "http://127.0.0.1:8080"),
        (("0.0.0.0", 80), "http://127.0.0.1:80"),  # the agent reaches a wildcard on loopback
        (("", 80), "http://127.0.0.1:80"),
        (("::", 8080, 0, 0), "http://[::1]:8080"),
        (("::1", 8080, 0, 0), "http://[::1]:8080"),
        (("10.0.0.7", 1), "http://10.0.0.7:1"),
    ],
)
def test_base_url(sockname: tuple, expected: str) -> None:
    assert probes.base_url(sockname) == expected


@pytest.mark.parametrize(
    ("kw", "expected"),
    [
        ({}, {"status": 0, "body": "", "elapsedMs": 0.0, "error": ""}),
        (
            {"error": "not serving"},
            {"status": 0, "body": "", "elapsedMs": 0.0, "error": "not serving"},
        ),
        (
            {"status": 204, "body": "ok", "elapsed": 0.0123456},
            {"status": 204, "body": "ok", "elapsedMs": 12.346, "error": ""},
        ),
    ],
)
def test_answer(kw: dict, expected: dict) -> None:
    got = probes.answer(Target("https", "a.test"), "/p?q", **kw)
    assert got == {**expected, "url": "https://a.test/p?q"}
