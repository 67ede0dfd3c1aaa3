"""Which cell serves which Worker (pure).

Workers are placed by namespace: every Worker of a namespace shares one cell, so a hang or
a crash in one namespace's code leaves the namespaces of other cells answering. A new
namespace goes to the shared cell with the fewest namespaces; a namespace keeps its cell as
long as it has Workers, so placement never moves a running Worker. A Worker that binds a
Durable Object class has a cell of its own (render.py says why)."""

from __future__ import annotations

from collections.abc import Mapping


def shared(i: int) -> str:
    return f"c{i}"


def own(worker: str) -> str:
    return f"do:{worker}"


def namespace_of(worker: str) -> str:
    return worker.split(".", 1)[0]


def place(workers: Mapping[str, bool], previous: Mapping[str, str], cells: int) -> dict[str, str]:
    """Worker → cell key, for `workers` (Worker → needs a cell of its own). `previous` is
    the placement in force; `cells` the number of shared cells."""
    keys = [shared(i) for i in range(cells)]
    home: dict[str, str] = {}  # namespace → shared cell, kept from `previous`
    for w, cell in sorted(previous.items()):
        if cell in keys and w in workers and not workers[w]:
            home.setdefault(namespace_of(w), cell)
    load = {k: 0 for k in keys}
    for cell in home.values():
        load[cell] += 1
    out: dict[str, str] = {}
    for w in sorted(workers):
        if workers[w]:
            out[w] = own(w)
            continue
        ns = namespace_of(w)
        if ns not in home:
            home[ns] = min(keys, key=lambda k: (load[k], keys.index(k)))
            load[home[ns]] += 1
        out[w] = home[ns]
    return out
