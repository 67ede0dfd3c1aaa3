"""Narrowing a failed validation down to the bundles that do not load
(edgeplane.edge.validate), with a stand-in for workerd: tables of bundles, which of them
fail and how workerd reports it, and the runs and errors that follow."""

from __future__ import annotations

import pytest

from edgeplane.edge.batch import as_deployments, narrow
from edgeplane.wire import Bundle
from tests.integration.edge_fixtures import text_worker

B: dict[str, Bundle] = {
    n: text_worker(w, n)
    for n, w in [("a1", "ns.a"), ("a2", "ns.a"), ("b", "ns.b"), ("c", "ns.c"), ("d", "ns.d")]
}
NAME = {b.version: n for n, b in B.items()}
OUTSIDE = "f" * 64  # a version none of the bundles has


def said(n: str, how: str) -> str:
    """workerd's message when `n` fails: naming its service, naming another, or none."""
    b = B[n]
    if how == "named":
        return f'service w:{b.worker}@{b.version}: Uncaught SyntaxError in "{n}"'
    if how == "other":
        return f"service w:ns.x@{OUTSIDE}: Uncaught Error in {n}"
    return f"workerd did not finish starting within 10s ({n})"


@pytest.mark.parametrize(
    ("tried", "bad", "errors", "runs"),
    [
        ("", {}, {}, []),
        ("a1 b c", {}, {}, ["a1 b c"]),
        ("a1 b c", {"b": "named"}, {"b": "named"}, ["a1 b c", "a1 c"]),
        ("a1 b", {"a1": "named", "b": "named"}, {"a1": "named", "b": "named"}, ["a1 b", "b"]),
        ("a1", {"a1": "silent"}, {"a1": "silent"}, ["a1"]),
        # Named by nobody: halves until each culprit is alone.
        ("a1 b c d", {"c": "silent"}, {"c": "silent"}, ["a1 b c d", "a1 b", "c d", "c", "d"]),
        ("a1 b c", {"a1": "silent"}, {"a1": "silent"}, ["a1 b c", "a1", "b c"]),
        # A message naming a version outside the set names nobody.
        ("a1 b", {"b": "other"}, {"b": "other"}, ["a1 b", "a1", "b"]),
        # Named ones go first, then the silent one is searched for in what is left.
        (
            "a1 b c d",
            {"a1": "named", "d": "silent"},
            {"a1": "named", "d": "silent"},
            ["a1 b c d", "b c d", "b", "c d", "c", "d"],
        ),
    ],
)
async def test_narrow(
    tried: str, bad: dict[str, str], errors: dict[str, str], runs: list[str]
) -> None:
    attempts: list[str] = []

    async def attempt(bundles: list[Bundle]) -> str | None:
        names = [NAME[b.version] for b in bundles]
        attempts.append(" ".join(names))
        # workerd stops at the first service that fails.
        return next((said(n, bad[n]) for n in names if n in bad), None)

    got = await narrow([B[n] for n in tried.split()], attempt)
    assert got == {B[n].version: said(n, how) for n, how in errors.items()}
    assert attempts == runs


@pytest.mark.parametrize(
    ("bundles", "expected"),
    [
        ("", []),
        ("b", [("ns.b", "b", "b")]),
        ("a1 a2 b", [("ns.a", "a1", "a1 a2"), ("ns.b", "b", "b")]),
        ("a2 b a1", [("ns.a", "a2", "a2 a1"), ("ns.b", "b", "b")]),  # the first is primary
    ],
)
def test_as_deployments(bundles: str, expected: list[tuple[str, str, str]]) -> None:
    got = as_deployments([B[n] for n in bundles.split()])
    assert [
        (d.worker, NAME[d.primary], " ".join(NAME[b.version] for b in d.versions)) for d in got
    ] == expected
    assert all(not d.routes for d in got)
