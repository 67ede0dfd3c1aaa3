"""Which edge targets a Worker runs on and which of them need a push or a removal."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from edgeplane.api import LabelSelector


@dataclass(frozen=True)
class TargetView:
    """What the operator knows about one EdgeTarget right now.

    `inventory` maps each Worker the agent serves to its deployment identity; None means
    the agent has not been asked yet (so nothing can be assumed).
    """

    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    reachable: bool | None = None
    message: str = ""
    inventory: Mapping[str, str] | None = None


def select(selector: LabelSelector, targets: Iterable[TargetView]) -> list[TargetView]:
    return sorted((t for t in targets if selector.matches(dict(t.labels))), key=lambda t: t.name)


@dataclass(frozen=True)
class Plan:
    push: tuple[str, ...] = ()  # selected targets that do not serve the desired deployment
    remove: tuple[str, ...] = ()  # unselected targets that still serve the Worker
    in_sync: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.push and not self.remove


def plan(
    worker: str, want: Mapping[str, str | None], all_targets: Iterable[TargetView]
) -> Plan:
    """`want` maps each selected target to the deployment identity it should have (None:
    it should not serve the Worker, e.g. before its rollout step or while the Worker is
    deleted); every target not in `want` should not serve it either.

    A target that should serve the Worker but whose inventory is unknown gets a push (the
    agent answers a repeated PUT without reloading); one that should not is only cleaned
    once its inventory is known to hold the Worker, which the periodic inventory check
    makes true soon enough."""
    push, remove, in_sync = [], [], []
    for t in sorted(all_targets, key=lambda t: t.name):
        has = None if t.inventory is None else t.inventory.get(worker)
        identity = want.get(t.name)
        if identity is not None:
            (in_sync if has == identity else push).append(t.name)
        elif has is not None:
            remove.append(t.name)
    return Plan(tuple(push), tuple(remove), tuple(in_sync))
