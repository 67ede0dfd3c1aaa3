"""What a fresh list shows was deleted during a watch gap (edgeplane.plan.relist.gone)."""

from __future__ import annotations

from typing import Any

import pytest

from edgeplane.plan.relist import gone


def body(name: str, rv: int, ns: str = "a") -> dict[str, Any]:
    return {"metadata": {"namespace": ns, "name": name, "resourceVersion": str(rv)}}


def key(b: Any) -> tuple[str, str]:
    return (b["metadata"]["namespace"], b["metadata"]["name"])


def cache(*bodies: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {key(b): b for b in bodies}


CASES = [
    # (cached, lists [(items, listed at)], gone)
    pytest.param(cache(body("r", 5)), [([body("r", 5)], 10)], [], id="still-there"),
    pytest.param(cache(body("r", 5)), [([], 10)], [("a", "r")], id="deleted-in-gap"),
    pytest.param(cache(body("r", 12)), [([], 10)], [], id="created-after-the-list"),
    pytest.param(cache(body("r", 10)), [([], 10)], [], id="as-new-as-the-list"),
    pytest.param(cache(body("r", 5), body("s", 6)), [([body("s", 9)], 10)], [("a", "r")],
                 id="one-of-two"),
    pytest.param(cache(), [([body("r", 5)], 10)], [], id="nothing-cached"),
    pytest.param(cache(body("r", 5)), [], [], id="no-list-read"),
    # Per-namespace lists: the oldest one bounds what counts as deleted.
    pytest.param(cache(body("r", 5, "a"), body("s", 8, "b")),
                 [([], 7), ([], 20)], [("a", "r")], id="per-namespace-oldest-bounds"),
    pytest.param(cache(body("r", 5, "a"), body("s", 8, "b")),
                 [([body("r", 5, "a")], 9), ([], 20)], [("b", "s")], id="per-namespace"),
]


@pytest.mark.parametrize(("cached", "lists", "expected"), CASES)
def test_gone(cached: Any, lists: Any, expected: list[tuple[str, str]]) -> None:
    assert gone(cached, lists, key) == expected
