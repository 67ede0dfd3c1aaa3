"""Which edge targets a Worker runs on and which of them need a push or a removal (pure)."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

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
class Actions:
    push: tuple[str, ...] = ()  # selected targets that do not serve the desired deployment
    remove: tuple[str, ...] = ()  # unselected targets that still serve the Worker
    in_sync: tuple[str, ...] = ()
    # targets that need a push or a removal but are marked down: nothing is sent there (a
    # PUT to a location that accepts connections and never answers takes minutes); the
    # health check requeues the Worker when the location answers again
    down: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.push and not self.remove


def actions(
    worker: str, want: Mapping[str, str | None], all_targets: Iterable[TargetView]
) -> Actions:
    """`want` maps each selected target to the deployment identity it should have (None:
    it should not serve the Worker, e.g. before its rollout step or while the Worker is
    deleted); every target not in `want` should not serve it either.

    A target that should serve the Worker but whose inventory is unknown gets a push (the
    agent answers a repeated PUT without reloading); one that should not is only cleaned
    once its inventory is known to hold the Worker, which the periodic inventory check
    makes true soon enough. A target marked down gets neither: it is `down`."""
    push, remove, in_sync, down = [], [], [], []
    for t in sorted(all_targets, key=lambda t: t.name):
        has = None if t.inventory is None else t.inventory.get(worker)
        identity = want.get(t.name)
        if identity is not None and has == identity:
            in_sync.append(t.name)
        elif identity is not None or has is not None:
            todo = push if identity is not None else remove
            (down if t.reachable is False else todo).append(t.name)
    return Actions(tuple(push), tuple(remove), tuple(in_sync), tuple(down))


WorkerKey = tuple[str, str]  # (namespace, Worker name)


def full_name(key: WorkerKey) -> str:
    """A Worker's name at a location: `<namespace>.<worker>`."""
    return f"{key[0]}.{key[1]}"


def affected_workers(
    workers: Iterable[WorkerKey],
    desired: Mapping[str, Mapping[str, str | None]],
    inventory: Mapping[str, str] | None,
    target: str,
    reachability_changed: bool,
) -> list[WorkerKey]:
    """The Workers to reconcile after news from `target`: when it went down or came back,
    those whose status names it (they select it) or that it serves (to remove them once it
    answers); else those whose deployment there differs from what they want (drift:
    re-push what the location lost). A Worker that neither selects nor holds the location
    has nothing to do there either way."""
    held = inventory or {}
    out = []
    for key in workers:
        want = desired.get(full_name(key)) or {}
        if reachability_changed:
            if target in want or full_name(key) in held:
                out.append(key)
        elif held.get(full_name(key)) != want.get(target):
            out.append(key)
    return out


def workers_with_news(
    workers: Collection[WorkerKey],
    before: Mapping[str, object],
    after: Mapping[str, object],
) -> list[WorkerKey]:
    """The Workers to reconcile because what a location says about them besides their
    deployment (quarantined versions, missing services; by full name) changed, in either
    direction: a quarantine is news, and so is its end. Found from the news, not by
    looking at every Worker."""
    changed = {w for w in before.keys() | after.keys() if before.get(w) != after.get(w)}
    return sorted(key for w in changed if (key := key_of(w)) in workers)


def key_of(full: str) -> WorkerKey:
    """The Worker a location's name for it (`full_name`) stands for: a namespace has no
    dot, so the first one ends it."""
    ns, _, name = full.partition(".")
    return (ns, name)


def orphan_scan(
    changed: Collection[str], complete: bool, came_back: bool, since_full: float, every: float
) -> Collection[str] | None:
    """Which Workers a location serves to look at for orphans after a health check: all
    (None) when its answer was complete (a new agent), it is reachable again or `every`
    seconds passed since the last full look (a Worker deleted while the location was away
    shows only so); else those whose item the answer changed: a check then costs what
    changed, not every Worker the location serves."""
    if complete or came_back or since_full >= every:
        return None
    return changed


def orphan_candidates(
    inventory: Mapping[str, str],
    workers: Collection[WorkerKey],
    deploying: Collection[str],
    namespaces: tuple[str, ...],
    among: Collection[str] | None = None,
) -> list[str]:
    """Workers a location serves (of `among` only, if given) that this operator does not
    know (neither among the `workers` it caches nor the full names it is `deploying`), in
    the namespaces it watches (empty: all). Only candidates: the apiserver, not the cache,
    decides that a Worker is gone."""
    return [
        full
        for full in sorted(inventory if among is None else set(among) & inventory.keys())
        if key_of(full) not in workers
        and full not in deploying
        and (not namespaces or key_of(full)[0] in namespaces)
    ]


def credentials_refusal(
    namespace: str, allowed: tuple[str, ...], field: str = "spec.credentialsSecretRef"
) -> str | None:
    """Why an EdgeTarget may not take credentials (`field`: its token or its client
    certificate) from a Secret in `namespace`: the operator reads location credentials only
    from its own namespace(s), so whoever may create an EdgeTarget cannot make it send
    another team's Secret to an endpoint of their choosing."""
    if namespace in allowed:
        return None
    return (
        f"{field}.namespace: the operator reads edge credentials only from "
        f"namespace {', '.join(allowed)}, not {namespace}; create the Secret there"
    )


class Refusal(StrEnum):
    """What an agent's 4xx answer means, and so what the operator does with it."""

    CREDENTIALS = "credentials"  # the location's: it is unreachable until they are fixed
    RETRY = "retry"  # depends on the location's other Workers: retried with backoff
    FINAL = "final"  # deterministic for the bytes pushed: cached until the Worker changes


# HTTP status -> (the reason reported, what it means); any other 4xx is ScriptInvalid, final.
REFUSALS: dict[int, tuple[str, Refusal]] = {
    401: ("CredentialsRejected", Refusal.CREDENTIALS),
    403: ("CredentialsRejected", Refusal.CREDENTIALS),
    # Another Worker holds the route, e.g. one it moves from while both are reconciled.
    409: ("RouteConflict", Refusal.RETRY),
    413: ("ScriptTooLarge", Refusal.FINAL),
    422: ("ScriptInvalid", Refusal.FINAL),
}


def refusal(status: int) -> tuple[str, Refusal]:
    """The reason and meaning of an agent's refusal with HTTP `status`. Only a final one may
    be remembered for the deployment refused, and may roll a Progressive rollout back."""
    return REFUSALS.get(status, ("ScriptInvalid", Refusal.FINAL))
