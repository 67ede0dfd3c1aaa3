"""Which cell serves which Worker at a location (edgeplane.edge.placement.place): tables of
Workers, the placement in force and the number of shared cells, and the placement that
follows; then the promises checked over generated inputs."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgeplane.edge.placement import Cells, namespace_of, own, place, shared

SHARED, OWN = False, True  # Worker → needs a cell of its own (binds a Durable Object class)


def _reversed(d: dict[str, object]) -> dict[str, object]:
    return dict(reversed(list(d.items())))


@pytest.mark.parametrize(
    ("workers", "previous", "cells", "expected"),
    [
        ({}, {}, 4, {}),
        # New namespaces spread over the shared cells, the least loaded first, ties by index.
        (
            {"a.x": SHARED, "b.x": SHARED, "c.x": SHARED},
            {},
            2,
            {"a.x": "c0", "b.x": "c1", "c.x": "c0"},
        ),
        # ...but never where the namespace placed before went while another cell is at most
        # one namespace above the least loaded (d is not put with c): within 2 of the least.
        (
            {"a.x": SHARED, "b.x": SHARED, "c.x": SHARED, "d.x": SHARED, "e.x": SHARED},
            {"a.x": "c0", "b.x": "c0"},
            2,
            {"a.x": "c0", "b.x": "c0", "c.x": "c1", "d.x": "c0", "e.x": "c1"},
        ),
        (
            {"a.x": SHARED, "b.x": SHARED, "c.x": SHARED, "d.x": SHARED, "n.x": SHARED},
            {"a.x": "c1", "b.x": "c2", "c.x": "c3"},
            4,
            {"a.x": "c1", "b.x": "c2", "c.x": "c3", "d.x": "c0", "n.x": "c1"},
        ),
        # A namespace keeps its cell, whatever the load.
        ({"a.x": SHARED, "b.x": SHARED}, {"a.x": "c1"}, 2, {"a.x": "c1", "b.x": "c0"}),
        (
            {"a.x": SHARED, "b.x": SHARED},
            {"a.x": "c1", "b.x": "c1"},
            4,
            {"a.x": "c1", "b.x": "c1"},
        ),
        # A namespace's Workers share one cell; a new one joins it.
        (
            {"a.x": SHARED, "a.y": SHARED, "a.z": SHARED, "b.x": SHARED},
            {},
            4,
            {"a.x": "c0", "a.y": "c0", "a.z": "c0", "b.x": "c1"},
        ),
        ({"a.x": SHARED, "a.new": SHARED}, {"a.x": "c2"}, 4, {"a.x": "c2", "a.new": "c2"}),
        # A placement that split a namespace is made whole: its first Worker's cell.
        ({"a.x": SHARED, "a.y": SHARED}, {"a.x": "c1", "a.y": "c0"}, 2, {"a.x": "c1", "a.y": "c1"}),
        # Durable Object Workers get a cell of their own and load no shared cell.
        ({"a.do": OWN}, {}, 2, {"a.do": "do:a.do"}),
        ({"a.do": OWN, "a.x": SHARED}, {}, 2, {"a.do": "do:a.do", "a.x": "c0"}),
        (
            {"a.do": OWN, "b.x": SHARED, "c.x": SHARED},
            {"a.do": "do:a.do"},
            2,
            {"a.do": "do:a.do", "b.x": "c0", "c.x": "c1"},
        ),
        # A Worker that comes to bind a Durable Object leaves its shared cell, and one that
        # no longer does joins its namespace's.
        ({"a.x": OWN}, {"a.x": "c1"}, 2, {"a.x": "do:a.x"}),
        (
            {"a.x": SHARED, "a.y": SHARED},
            {"a.x": "do:a.x", "a.y": "c1"},
            2,
            {"a.x": "c1", "a.y": "c1"},
        ),
        # A shared cell beyond the count (the location now runs fewer) is placed anew.
        ({"a.x": SHARED}, {"a.x": "c5"}, 2, {"a.x": "c0"}),
        ({"a.x": SHARED, "b.x": SHARED}, {"a.x": "c3", "b.x": "c0"}, 2, {"a.x": "c1", "b.x": "c0"}),
        ({"a.x": SHARED}, {"a.x": "nonsense"}, 2, {"a.x": "c0"}),
        # The cells of Workers that are gone load nothing.
        (
            {"b.x": SHARED, "c.x": SHARED},
            {"a.x": "c0", "b.x": "c1"},
            2,
            {"b.x": "c1", "c.x": "c0"},
        ),
    ],
    ids=[
        "empty",
        "spread",
        "least-loaded",
        "never-twice-in-a-row",
        "keeps-cell",
        "keeps-cell-loaded",
        "namespace-shares",
        "joins-namespace",
        "split-made-whole",
        "do-own",
        "do-and-shared",
        "do-loads-nothing",
        "becomes-do",
        "stops-being-do",
        "beyond-count",
        "beyond-count-least-loaded",
        "unknown-cell",
        "gone-frees",
    ],
)
def test_place(
    workers: dict[str, bool], previous: dict[str, str], cells: int, expected: dict[str, str]
) -> None:
    assert place(workers, previous, cells).cells == expected
    # The same answer whatever the order the mappings list their keys in.
    assert place(_reversed(workers), _reversed(previous), cells).cells == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("make", "arg", "expected"),
    [
        (shared, 0, "c0"),
        (shared, 12, "c12"),
        (own, "ns.w", "do:ns.w"),
        (namespace_of, "ns.w", "ns"),
        (namespace_of, "ns-1.w.x", "ns-1"),
    ],
)
def test_cell_keys(make: object, arg: object, expected: str) -> None:
    assert make(arg) == expected  # type: ignore[operator]


_names = st.sampled_from([f"{ns}.{w}" for ns in "abcdef" for w in "xyz"])
_cells = st.sampled_from([*(shared(i) for i in range(6)), "do:a.x", "do:b.y"])


@given(
    workers=st.dictionaries(_names, st.booleans(), max_size=12),
    previous=st.dictionaries(_names, _cells, max_size=12),
    cells=st.integers(1, 4),
)
def test_place_promises(workers: dict[str, bool], previous: dict[str, str], cells: int) -> None:
    out = place(workers, previous, cells).cells
    keys = {shared(i) for i in range(cells)}
    assert set(out) == set(workers)
    home: dict[str, str] = {}
    for w, needs_own in workers.items():
        if needs_own:
            assert out[w] == own(w)
            continue
        assert out[w] in keys
        assert home.setdefault(namespace_of(w), out[w]) == out[w]  # one cell per namespace
    # A namespace keeps its cell: the one shared cell in force that its Workers were in.
    for ns, cell in home.items():
        mine = [w for w in workers if namespace_of(w) == ns and not workers[w] and w in previous]
        before = {previous[w] for w in mine} & keys
        if len(before) == 1:
            assert cell == before.pop()


@given(namespaces=st.integers(0, 20), cells=st.integers(1, 6))
def test_new_namespaces_are_balanced(namespaces: int, cells: int) -> None:
    out = place({f"n{i:02}.w": SHARED for i in range(namespaces)}, {}, cells).cells
    load = [list(out.values()).count(shared(i)) for i in range(cells)]
    assert max(load) - min(load) <= 2
    # One after the other, namespaces never share a cell (with two cells or more).
    order = [out[f"n{i:02}.w"] for i in range(namespaces)]
    assert cells == 1 or all(a != b for a, b in itertools.pairwise(order))


@given(
    before=st.lists(st.integers(0, 3), max_size=12),
    cells=st.integers(2, 4),
    turn=st.integers(-1, 3),
)
def test_a_new_namespace_never_follows_the_last_into_its_cell(
    before: list[int], cells: int, turn: int
) -> None:
    """Whatever the load (earlier namespaces placed anywhere) and the last turn, the next new
    namespace does not go where the last one went while another cell is within 1 of the
    least loaded, and lands within 1 of the least loaded (so a cell is never more than 2
    above it)."""
    previous = {f"old{i:02}.w": shared(c % cells) for i, c in enumerate(before)}
    turn = min(turn, cells - 1)
    p = place({**dict.fromkeys(previous, SHARED), "zz.new": SHARED}, previous, cells, turn)
    load = {shared(i): list(previous.values()).count(shared(i)) for i in range(cells)}
    least = min(load.values())
    others_fit = any(n <= least + 1 for k, n in load.items() if k != shared(turn))
    assert p.cells["zz.new"] != shared(turn) or turn < 0 or not others_fit
    assert load[p.cells["zz.new"]] <= min(load.values()) + 1
    assert p.turn == int(p.cells["zz.new"][1:])


@pytest.mark.parametrize(
    ("ops", "expected"),
    [
        # A namespace keeps its cell while it has a Worker there.
        ([("put", "a.x"), ("put", "a.y"), ("drop", "a.x")], {"a.y": "c0"}),
        # Its last Worker gone, the namespace frees its cell; a newcomer gets the emptiest.
        (
            [("put", "a.x"), ("put", "b.x"), ("drop", "a.x"), ("put", "c.x")],
            {"b.x": "c1", "c.x": "c0"},
        ),
        # Putting a placed Worker again never moves it.
        ([("put", "a.x"), ("put", "b.x"), ("put", "a.x")], {"a.x": "c0", "b.x": "c1"}),
        # Gaining a Durable Object binding moves a Worker to its own cell and back.
        ([("put", "a.x"), ("own", "a.x")], {"a.x": "do:a.x"}),
        ([("own", "a.x"), ("put", "a.x")], {"a.x": "c0"}),
        # Dropping an unknown Worker changes nothing.
        ([("put", "a.x"), ("drop", "z.z")], {"a.x": "c0"}),
    ],
    ids=["keeps", "frees", "stays", "to-own", "from-own", "unknown"],
)
def test_cells_change_one_worker_at_a_time(ops: list[tuple[str, str]], expected: dict) -> None:
    cells = Cells(2)
    for op, worker in ops:
        if op == "drop":
            cells.drop(worker)
        else:
            cells.put(worker, op == "own")
    assert cells.of == expected
    # The bookkeeping agrees with the placement: namespaces per shared cell.
    homes = {namespace_of(w): c for w, c in cells.of.items() if not c.startswith("do:")}
    assert cells.load == {k: list(homes.values()).count(k) for k in ("c0", "c1")}


@given(st.lists(st.tuples(st.sampled_from(["put", "own", "drop"]), _names), max_size=30))
def test_cells_agree_with_placing_anew(ops: list[tuple[str, str]]) -> None:
    """After any sequence of changes, every namespace is in one cell and the counts agree,
    and no placed Worker moved unless it changed between shared and own cells."""
    cells = Cells(3)
    for op, worker in ops:
        before = cells.of.get(worker)
        if op == "drop":
            cells.drop(worker)
            continue
        after = cells.put(worker, op == "own")
        if before is not None and (before == own(worker)) == (op == "own"):
            assert after == before
    homes: dict[str, str] = {}
    for w, c in cells.of.items():
        if not c.startswith("do:"):
            assert homes.setdefault(namespace_of(w), c) == c
    assert cells.load == {shared(i): list(homes.values()).count(shared(i)) for i in range(3)}
