"""The agent's inventory items (edgeplane.edge.inventory): tables of facts and items."""

from __future__ import annotations

import pytest

from edgeplane.edge.inventory import Inventory, requests_of
from tests.integration.edge_fixtures import deployment, text_worker

_v1, _v2 = text_worker("ns.a", "v1"), text_worker("ns.a", "v2")
A = deployment(_v1, _v2, routes=("a.test/*",))
V1, V2 = _v1.version or "", _v2.version or ""
SERVING = {
    "worker": "ns.a",
    "primary": V1,
    "versions": [V1, V2],
    "identity": A.identity(),
    "state": "serving",
    "message": "serving the accepted deployment",
    "requests": {V1: {"total": 0, "errors": 0}, V2: {"total": 0, "errors": 0}},
}
FAILED = {
    "worker": "ns.a",
    "primary": "",
    "versions": [],
    "identity": "",
    "state": "failed",
    "message": "did not load",
    "requests": {},
}


def facts(
    accepted: bool = True,
    refused: str | None = None,
    ready: bool = True,
    crash: str = "",
    totals: dict | None = None,
) -> Inventory:
    return Inventory(
        {"ns.a": A} if accepted else {},
        {} if refused is None else {"ns.a": refused},
        ready,
        crash,
        totals or {},
    )


@pytest.mark.parametrize(
    ("inventory", "expected"),
    [
        (facts(), SERVING),
        (facts(accepted=False), None),
        (facts(accepted=False, refused="did not load"), FAILED),
        (facts(ready=False), {**SERVING, "state": "starting"}),
        (facts(ready=False, crash="exited"), {**SERVING, "state": "starting", "message": "exited"}),
        (facts(crash="restart failed"), {**SERVING, "message": "restart failed"}),
        # The refusal of the last push comes before any crash.
        (facts(refused="boom", crash="x"), {**SERVING, "message": "last push refused: boom"}),
        (facts(refused=""), SERVING),  # an empty refusal says nothing
        (
            facts(totals={("ns.a", V2): [5, 1, 2, 3], ("ns.b", V1): [9, 9, 9, 9]}),
            {
                **SERVING,
                "requests": {V1: {"total": 0, "errors": 0}, V2: {"total": 11, "errors": 3}},
            },
        ),
    ],
)
def test_item(inventory: Inventory, expected: dict | None) -> None:
    assert inventory.item("ns.a") == expected


@pytest.mark.parametrize(
    ("accepted", "refused", "expected"),
    [
        ({}, {}, []),
        ({"ns.a": A}, {}, ["ns.a"]),
        ({"ns.a": A}, {"ns.c": "x", "ns.b": "y"}, ["ns.a", "ns.b", "ns.c"]),  # by name
    ],
)
def test_items(accepted: dict, refused: dict, expected: list[str]) -> None:
    items = Inventory(accepted, refused, True, "", {}).items()
    assert [i["worker"] for i in items] == expected


@pytest.mark.parametrize(
    ("totals", "expected"),
    [
        ({}, {V1: {"total": 0, "errors": 0}, V2: {"total": 0, "errors": 0}}),
        (
            {("ns.a", V1): [1, 2, 3, 4]},
            {V1: {"total": 10, "errors": 4}, V2: {"total": 0, "errors": 0}},
        ),
    ],
)
def test_requests_of(totals: dict, expected: dict) -> None:
    assert requests_of(A, totals) == expected
