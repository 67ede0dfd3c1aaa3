"""An inventory answer applied to what the operator knows of a location (whole, or only
what changed since its cursor), and whether a Worker's deployment there moved."""

from __future__ import annotations

import pytest

from edgeplane.distribute.fleet import Location, _take_inventory
from edgeplane.wire import InventoryChanges, InventoryItem, MissingService

API = (MissingService("API", "apps.other"),)


def item(worker: str, identity: str, quarantined: dict[str, str] | None = None,
         missing: tuple[MissingService, ...] = ()) -> InventoryItem:
    return InventoryItem(worker, identity, "v-" + identity, "serving", "",
                         quarantined or {}, missing)


def answer(*items: InventoryItem, removed: tuple[str, ...] = (), complete: bool = False
           ) -> InventoryChanges:
    return InventoryChanges({i.worker: i for i in items}, removed, "e.9", complete)


BEFORE = {"a": "1", "b": "2"}

CASES = [
    # (known before (None: never asked), answer, inventory after, moved)
    (None, answer(item("a", "1"), complete=True), {"a": "1"}, True),
    (None, answer(complete=True), {}, False),
    (None, answer(item("a", "1")), {"a": "1"}, True),  # not complete, yet all there is
    (BEFORE, answer(item("a", "1"), item("b", "2"), complete=True), BEFORE, False),
    (BEFORE, answer(item("a", "1"), complete=True), {"a": "1"}, True),
    (BEFORE, answer(), BEFORE, False),
    (BEFORE, answer(item("a", "1")), BEFORE, False),  # its state changed, not its deployment
    (BEFORE, answer(item("a", "3")), {"a": "3", "b": "2"}, True),
    (BEFORE, answer(item("c", "3")), {**BEFORE, "c": "3"}, True),
    (BEFORE, answer(removed=("b",)), {"a": "1"}, True),
    (BEFORE, answer(removed=("z",)), BEFORE, False),  # gone before this operator knew it
]


@pytest.mark.parametrize(("known", "given", "after", "moved"), CASES)
def test_an_answer_updates_the_inventory(
    known: dict[str, str] | None, given: InventoryChanges, after: dict[str, str], moved: bool
) -> None:
    loc = Location(inventory=None if known is None else dict(known))
    assert _take_inventory(loc, given) is moved
    assert loc.inventory == after
    assert loc.cursor == "e.9"
    assert {w: loc.primaries[w] for w in given.items} == {
        w: i.primary for w, i in given.items.items()}


def test_quarantines_and_missing_services_follow_the_items_that_changed() -> None:
    loc = Location(inventory={})
    _take_inventory(loc, answer(item("a", "1", {"v1": "hung"}, API), item("b", "2", {"v": ""}),
                                complete=True))
    assert (loc.quarantined, loc.missing) == ({"a": {"v1": "hung"}, "b": {"v": ""}}, {"a": API})
    _take_inventory(loc, answer(item("a", "1"), removed=("b",)))  # released, bound, gone
    assert (loc.quarantined, loc.missing, loc.primaries) == ({}, {}, {"a": "v-1"})
