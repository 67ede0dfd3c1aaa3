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


def place(
    workers: Mapping[str, bool], previous: Mapping[str, str], cells: int, turn: int = -1
) -> Placement:
    """Where `workers` (Worker → needs a cell of its own) run, given the placement in force
    (`previous`), the number of shared cells and the last turn."""
    keys = [shared(i) for i in range(cells)]
    home: dict[str, str] = {}  # namespace → its shared cell, kept from `previous`
    for w, cell in sorted(previous.items()):
        if cell in keys and w in workers and not workers[w]:
            home.setdefault(namespace_of(w), cell)
    load = {k: 0 for k in keys}
    for cell in home.values():
        load[cell] += 1
    out: dict[str, str] = {}
    for w in sorted(workers):
        ns = namespace_of(w)
        if workers[w]:
            out[w] = own(w)
            continue
        if ns not in home:
            turn = _next_turn(keys, load, turn)
            home[ns] = keys[turn]
            load[keys[turn]] += 1
        out[w] = home[ns]
    return Placement(out, turn)


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
