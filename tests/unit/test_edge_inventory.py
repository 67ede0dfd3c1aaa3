"""The agent's inventory items (edgeplane.edge.inventory): tables of facts and items."""

from __future__ import annotations

import pytest

from edgeplane.edge.inventory import (
    MAX_REMOVALS,
    ChangeLog,
    Inventory,
    missing_services,
    requests_of,
)
from edgeplane.wire import BundleBinding, Deployment
from tests.integration.edge_fixtures import bundle, deployment, text_worker

_v1, _v2 = text_worker("ns.a", "v1"), text_worker("ns.a", "v2")
A = deployment(_v1, _v2, routes=("a.test/*",))
V1, V2 = _v1.version or "", _v2.version or ""
OTHER = text_worker("ns.b", "b").version or ""
SERVING = {
    "worker": "ns.a",
    "primary": V1,
    "versions": [V1, V2],
    "identity": A.identity(),
    "state": "serving",
    "message": "serving the accepted deployment",
    "requests": {V1: {"total": 0, "errors": 0}, V2: {"total": 0, "errors": 0}},
    "quarantined": {},
    "missingServices": [],
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
    quarantine: dict[str, str] | None = None,
    trouble: str = "",
    cell_failed: str = "",
) -> Inventory:
    return Inventory(
        {"ns.a": A} if accepted else {},
        {} if refused is None else {"ns.a": refused},
        ready,
        crash,
        totals or {},
        quarantine or {},
        {"ns.a": trouble},
        {"ns.a": cell_failed},
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
        # Its versions quarantined here, with why; another Worker's are not its own.
        (
            facts(quarantine={V2: "it hung its cell", OTHER: "not ns.a's"}),
            {**SERVING, "quarantined": {V2: "it hung its cell"}},
        ),
        # Its cell not answering: starting, and the reason; a refusal or a front crash
        # says more.
        (
            facts(trouble="cell c1 hung"),
            {**SERVING, "state": "starting", "message": "cell c1 hung"},
        ),
        (
            facts(trouble="cell c1 hung", crash="front exited"),
            {**SERVING, "state": "starting", "message": "front exited"},
        ),
        (
            facts(trouble="cell c1 hung", refused="boom"),
            {**SERVING, "state": "starting", "message": "last push refused: boom"},
        ),
        # Its own cell does not start (a stored Durable Object Worker that no longer loads
        # here): failed, with why, whatever else the cell's health says.
        (
            facts(cell_failed="cell do:ns.a did not start: x", trouble="exited"),
            {**SERVING, "state": "failed", "message": "cell do:ns.a did not start: x"},
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


def _calling(*services: str, worker: str = "ns.a", js: str = "export default {}") -> Deployment:
    """A deployment whose only version binds SVC0, SVC1, ... to `services`."""
    binds = tuple(BundleBinding(name=f"SVC{i}", service=s) for i, s in enumerate(services))
    return deployment(bundle(worker, js, bindings=binds))


_CALLS_B = _calling("ns.b")
_OLD_CALLS_GONE = bundle("ns.a", "// old", bindings=(BundleBinding(name="X", service="ns.gone"),))
# The primary binds nothing missing; the other version binds a Worker not served here.
_SPLIT = deployment(_CALLS_B.versions[0], _OLD_CALLS_GONE)


@pytest.mark.parametrize(
    ("d", "served", "expected"),
    [
        (A, [], []),  # no service bindings
        (_CALLS_B, [], [{"binding": "SVC0", "worker": "ns.b"}]),
        (_CALLS_B, ["ns.b"], []),
        (_CALLS_B, ["ns.c"], [{"binding": "SVC0", "worker": "ns.b"}]),
        (
            _calling("ns.b", "ns.c", "ns.a"),  # itself: always served with it
            ["ns.c"],
            [{"binding": "SVC0", "worker": "ns.b"}],
        ),
        # Only the primary's bindings count: service calls reach the target's primary.
        (_SPLIT, ["ns.b"], []),
    ],
    ids=["none", "missing", "served", "another-served", "some-missing", "primary-only"],
)
def test_missing_services(d: Deployment, served: list[str], expected: list[dict]) -> None:
    at_location = {d.worker: d, **{w: _calling(worker=w) for w in served}}
    assert missing_services(d, at_location) == expected


def test_item_names_the_missing_services_of_the_served_set() -> None:
    inv = Inventory({"ns.a": _CALLS_B}, {}, True, "", {})
    assert inv.item("ns.a")["missingServices"] == [  # type: ignore[index]
        {"binding": "SVC0", "worker": "ns.b"}
    ]
    served = Inventory({"ns.a": _CALLS_B, "ns.b": _calling(worker="ns.b")}, {}, True, "", {})
    assert served.item("ns.a")["missingServices"] == []  # type: ignore[index]


def _item(worker: str, identity: str = "i1", state: str = "serving") -> dict[str, object]:
    return {"worker": worker, "identity": identity, "state": state}


# (inventories observed one after the other, the cursor's index in them (-1: none, "other":
# another process's), then the answer's items' workers, removed, complete)
CHANGES = [
    ([[_item("a"), _item("b")]], -1, ["a", "b"], [], True),
    ([[_item("a"), _item("b")]], 0, [], [], False),
    ([[_item("a")], [_item("a"), _item("b")]], 0, ["b"], [], False),
    ([[_item("a"), _item("b")], [_item("a")]], 0, [], ["b"], False),
    ([[_item("a")], [_item("a", "i2")]], 0, ["a"], [], False),
    ([[_item("a")], [_item("a", state="starting")]], 0, ["a"], [], False),
    ([[_item("a")], [_item("a")], [_item("a")]], 0, [], [], False),  # nothing new: no step
    # Gone and back: changed, not removed.
    ([[_item("a")], [], [_item("a")]], 0, ["a"], [], False),
    # Changed twice since the cursor: sent once, as it is now.
    ([[_item("a")], [_item("a", "i2")], [_item("a", "i3")]], 0, ["a"], [], False),
    ([[_item("a")], [_item("a", "i2")], [_item("a", "i3")]], 1, ["a"], [], False),
    ([[_item("a")], [_item("a"), _item("b")], [_item("b")]], 1, [], ["a"], False),
    ([[_item("a")]], "other", ["a"], [], True),
    ([[_item("a")]], "garbage", ["a"], [], True),
]


@pytest.mark.parametrize(("seen", "at", "items", "removed", "complete"), CHANGES)
def test_a_cursor_gets_what_changed_since(
    seen: list[list[dict[str, object]]], at: int | str, items: list[str],
    removed: list[str], complete: bool,
) -> None:
    log = ChangeLog()
    cursors = []
    for inventory in seen:
        log.observe(inventory)
        cursors.append(log.cursor())
    cursor = cursors[at] if isinstance(at, int) and at >= 0 else {
        -1: "", "other": "0123456789ab.1", "garbage": "x"}[at]
    answer = log.since(cursor)
    assert sorted(str(i["worker"]) for i in answer["workers"]) == items
    assert answer["removed"] == removed
    assert answer["complete"] is complete
    assert answer["cursor"] == log.cursor()


# (an inventory observed whole, then the items updated (None: gone), then the answer to
# the cursor before the update: its items' workers, removed)
UPDATES = [
    ([_item("a"), _item("b")], {"a": _item("a", "i2")}, ["a"], []),  # b stands
    ([_item("a"), _item("b")], {"b": None}, [], ["b"]),
    ([_item("a")], {"c": _item("c")}, ["c"], []),
    ([_item("a")], {"a": _item("a")}, [], []),  # the same item: no step
    ([_item("a")], {"z": None}, [], []),  # never there: nothing gone
    ([_item("a"), _item("b")], {}, [], []),
]


@pytest.mark.parametrize(("seen", "update", "items", "removed"), UPDATES)
def test_an_update_records_only_the_items_given(
    seen: list[dict[str, object]], update: dict, items: list[str], removed: list[str]
) -> None:
    log = ChangeLog()
    log.observe(seen)
    before = log.cursor()
    log.update(update)
    answer = log.since(before)
    assert sorted(str(i["worker"]) for i in answer["workers"]) == items
    assert answer["removed"] == removed
    assert (log.cursor() == before) is (not items and not removed)
    whole = {str(i["worker"]): i for i in seen}
    whole = {w: i for w, i in {**whole, **update}.items() if i is not None}
    assert {str(i["worker"]): i for i in log.since("")["workers"]} == whole


def test_removals_beyond_those_remembered_send_everything() -> None:
    log = ChangeLog()
    names = [f"w{i}" for i in range(MAX_REMOVALS + 2)]
    log.observe([_item(n) for n in names])
    old = log.cursor()
    log.observe([_item(w) for w in names[1:]])
    recent = log.cursor()
    for n in range(2, len(names) + 1):  # one removal at a time
        log.observe([_item(w) for w in names[n:]])
    assert log.since(old)["complete"] is True  # its first removals are forgotten
    assert log.since(recent)["complete"] is True
    newest = log.since(log.cursor())
    assert (newest["complete"], newest["workers"], newest["removed"]) == (False, [], [])
