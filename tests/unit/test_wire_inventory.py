"""An agent's inventory item as the operator reads it (edgeplane.wire.inventory_item): agents
of every version, with and without quarantines and missing services."""

from __future__ import annotations

import pytest

from edgeplane.wire import MissingService, inventory_changes, inventory_item

V1, V2 = "1" * 64, "2" * 64
OLD_AGENT = {
    "worker": "apps.shop",
    "primary": V1,
    "versions": [V1],
    "identity": "id1",
    "state": "serving",
    "message": "serving the accepted deployment",
    "requests": {V1: {"total": 3, "errors": 0}},
}
HUNG = "hung its cell 3 times in 10 minutes (last: GET /loop)"
API = {"binding": "API", "worker": "apps.other"}


@pytest.mark.parametrize(
    ("extra", "quarantined", "missing"),
    [
        # An agent older than quarantines and service checks: none of either.
        ({}, {}, ()),
        ({"quarantined": {}, "missingServices": []}, {}, ()),
        ({"quarantined": None, "missingServices": None}, {}, ()),
        ({"quarantined": {V1: HUNG}}, {V1: HUNG}, ()),
        ({"quarantined": {V1: HUNG, V2: "hung"}}, {V1: HUNG, V2: "hung"}, ()),
        # Quarantined without a reason in text: quarantined all the same.
        ({"quarantined": {V1: None}}, {V1: ""}, ()),
        ({"quarantined": {V1: 3}}, {V1: ""}, ()),
        # A long reason is kept whole: the operator redacts before it cuts.
        ({"quarantined": {V1: "x" * 5000}}, {V1: "x" * 5000}, ()),
        # Another shape than a map: nothing to read.
        ({"quarantined": [V1]}, {}, ()),
        ({"quarantined": V1}, {}, ()),
        ({"missingServices": [API]}, {}, (MissingService("API", "apps.other"),)),
        # Each binding once, in order, whatever order and repeats the agent sends.
        (
            {"missingServices": [API, {"binding": "AUTH", "worker": "apps.auth"}, API]},
            {},
            (MissingService("API", "apps.other"), MissingService("AUTH", "apps.auth")),
        ),
        # Entries without both names (or of another shape) are left out.
        (
            {
                "missingServices": [
                    {"binding": "API"},
                    {"worker": "apps.x"},
                    "API",
                    None,
                    {"binding": "", "worker": "apps.x"},
                    {"binding": "B", "worker": 7},
                    API,
                ]
            },
            {},
            (MissingService("API", "apps.other"),),
        ),
        ({"missingServices": {"API": "apps.other"}}, {}, ()),
        # Both at once: each is read on its own.
        (
            {"quarantined": {V2: HUNG}, "missingServices": [API]},
            {V2: HUNG},
            (MissingService("API", "apps.other"),),
        ),
    ],
)
def test_inventory_item(extra: dict, quarantined: dict, missing: tuple) -> None:
    item = inventory_item({**OLD_AGENT, **extra})
    assert (item.worker, item.identity, item.primary, item.state) == (
        "apps.shop",
        "id1",
        V1,
        "serving",
    )
    assert item.message == "serving the accepted deployment"
    assert dict(item.quarantined) == quarantined
    assert item.missing_services == missing


def test_an_item_with_only_a_name_is_empty() -> None:
    item = inventory_item({"worker": "apps.shop"})
    assert (item.identity, item.primary, item.state, item.message) == ("", "", "", "")
    assert not item.quarantined and item.missing_services == ()


A = {"worker": "apps.a", "identity": "ia"}
B = {"worker": "apps.b", "identity": "ib"}


@pytest.mark.parametrize(
    ("raw", "items", "removed", "cursor", "complete"),
    [
        # Agents older than cursors ignore `since`: everything, no cursor.
        ([A, B], ["apps.a", "apps.b"], (), "", True),
        ({"workers": [A]}, ["apps.a"], (), "", True),
        ({"workers": [A], "removed": ["apps.b"]}, ["apps.a"], (), "", True),
        ({"workers": [], "cursor": "e.1", "complete": True}, [], (), "e.1", True),
        ({"workers": [A], "removed": ["apps.b"], "cursor": "e.2", "complete": False},
         ["apps.a"], ("apps.b",), "e.2", False),
        # An item both changed and removed is there: the item wins.
        ({"workers": [A], "removed": ["apps.a"], "cursor": "e.3", "complete": False},
         ["apps.a"], (), "e.3", False),
        ({"workers": [], "cursor": "", "complete": False}, [], (), "", True),
        ({"workers": [], "cursor": 7, "complete": False}, [], (), "", True),
        ({"workers": [A], "cursor": "e.4"}, ["apps.a"], (), "e.4", True),
    ],
)
def test_an_inventory_answer_is_complete_unless_it_says_it_is_changes_since_a_cursor(
    raw: object, items: list[str], removed: tuple[str, ...], cursor: str, complete: bool
) -> None:
    answer = inventory_changes(raw)
    assert sorted(answer.items) == items
    assert (answer.removed, answer.cursor, answer.complete) == (removed, cursor, complete)
