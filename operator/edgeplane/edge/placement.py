"""Which cell serves which Worker (pure).

Workers are placed by namespace: every Worker of a namespace shares one cell, so a hang or
a crash in one namespace's code leaves the namespaces of other cells answering. A
namespace keeps its cell as long as it has Workers, so placement never moves a running
Worker. A new namespace goes to the least loaded cell, but never to the cell the namespace
placed before it went to while another cell is at most one namespace above the least
loaded: two namespaces placed one after the other do not share a cell, and no cell holds
more than two namespaces above the least loaded. A Worker that binds a Durable
Object class has a cell of its own (render.py says why)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


def shared(i: int) -> str:
    return f"c{i}"


def own(worker: str) -> str:
    return f"do:{worker}"


def namespace_of(worker: str) -> str:
    return worker.split(".", 1)[0]


@dataclass(frozen=True)
class Placement:
    cells: dict[str, str]  # Worker → cell key
    turn: int  # the shared cell the last new namespace went to


class Cells:
    """The placement in force, kept as Workers come and go: each Worker's cell, each
    namespace's shared cell and how many of its Workers are there, the namespaces of each
    shared cell. A change costs the same whatever the number of Workers."""

    def __init__(self, shared_cells: int, turn: int = -1) -> None:
        self.keys = [shared(i) for i in range(shared_cells)]
        self.turn = turn
        self.of: dict[str, str] = {}  # Worker → cell key
        self.home: dict[str, str] = {}  # namespace → its shared cell
        self.members: dict[str, int] = {}  # namespace → its Workers in that cell
        self.load = dict.fromkeys(self.keys, 0)  # shared cell → its namespaces

    def put(self, worker: str, own_cell: bool, hint: str | None = None) -> str:
        """Place `worker` (a Durable Object Worker: `own_cell`); it stays where it is if it
        can. `hint`: the cell it had before, for its namespace if that has none yet."""
        cell = self.of.get(worker)
        if cell is not None and (cell == own(worker)) == own_cell:
            return cell
        self.drop(worker)
        if own_cell:
            self.of[worker] = own(worker)
            return self.of[worker]
        ns = namespace_of(worker)
        if ns not in self.home:
            if hint not in self.load:
                self.turn = _next_turn(self.keys, self.load, self.turn)
                hint = self.keys[self.turn]
            self.home[ns] = hint
            self.load[hint] += 1
        self.members[ns] = self.members.get(ns, 0) + 1
        self.of[worker] = self.home[ns]
        return self.of[worker]

    def drop(self, worker: str) -> None:
        cell = self.of.pop(worker, None)
        if cell not in self.load:
            return
        ns = namespace_of(worker)
        self.members[ns] -= 1
        if self.members[ns] == 0:
            del self.members[ns], self.home[ns]
            self.load[cell] -= 1


def restore(
    workers: Mapping[str, bool], previous: Mapping[str, str], cells: int, turn: int = -1
) -> Cells:
    """Where `workers` (Worker → needs a cell of its own) run, given the placement in force
    (`previous`), the number of shared cells and the last turn: what a restarted agent
    starts from."""
    c = Cells(cells, turn)
    for w in sorted(workers):  # first what keeps its cell: a namespace its first Worker's
        if not workers[w] and previous.get(w) in c.load:
            c.put(w, False, previous[w])
    for w in sorted(workers):
        c.put(w, workers[w])
    return c


def place(
    workers: Mapping[str, bool], previous: Mapping[str, str], cells: int, turn: int = -1
) -> Placement:
    """`restore`'s placement, as data."""
    c = restore(workers, previous, cells, turn)
    return Placement(dict(c.of), c.turn)


def _next_turn(keys: list[str], load: Mapping[str, int], turn: int) -> int:
    """The least loaded cell, in turn after `turn`; never the cell the last new namespace
    went to while another is at most one namespace above the least loaded."""
    n = len(keys)
    order = [keys[(turn + step) % n] for step in range(1, n + 1)]
    last = keys[turn] if 0 <= turn < n else None
    least = min(load.values())
    fits = [k for k in order if load[k] <= least + 1 and k != last] or order
    best = min(load[k] for k in fits)
    return keys.index(next(k for k in fits if load[k] == best))
