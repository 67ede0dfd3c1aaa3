"""The latest Worker, WorkerRoute and HostClaim bodies the watches delivered (an informer
cache), and what the route decisions read from them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from edgeplane.api import Worker
from edgeplane.compile import references
from edgeplane.plan.routes import Grant, RouteFacts, RouteKey, Standing, exclusions, standing
from edgeplane.plan.targets import WorkerKey
from edgeplane.resolve.sources import SourceKey

# Annotations the operator never reads: kubectl's copy of the whole applied object.
UNREAD_ANNOTATIONS = frozenset({"kubectl.kubernetes.io/last-applied-configuration"})


def slim(body: dict[str, Any]) -> dict[str, Any]:
    """`body` without what the operator never reads and the apiserver sends with every
    object: `managedFields` (each field named again, per manager) and kubectl's
    last-applied copy, which together can outweigh the rest of a Worker; the cache holds
    every one."""
    meta = body.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    unread = annotations.keys() & UNREAD_ANNOTATIONS
    if "managedFields" not in meta and not unread:
        return body
    meta = {k: v for k, v in meta.items() if k != "managedFields"}
    if unread:
        meta["annotations"] = {k: v for k, v in annotations.items() if k not in unread}
    return {**body, "metadata": meta}


def sources_read(body: dict[str, Any]) -> frozenset[SourceKey]:
    """Every ConfigMap and Secret of its namespace a Worker's spec names (what
    `compile.references` says it reads); none for a spec the operator refuses, which
    reads nothing until it is fixed (and its fix is an event of its own)."""
    try:
        refs = references(Worker.model_validate(body))
    except ValidationError:
        return frozenset()
    ns = body["metadata"]["namespace"]
    return frozenset({
        *(("ConfigMap", ns, name) for name in refs.config_maps),
        *(("Secret", ns, name) for name in (*refs.secrets, *refs.pull_secrets)),
    })


class Bodies(dict[Any, dict[str, Any]]):
    """Objects by key, each kept `slim`, however it was stored."""

    def __setitem__(self, key: Any, body: dict[str, Any]) -> None:
        super().__setitem__(key, slim(body))


@dataclass
class Cache:
    workers: dict[WorkerKey, dict[str, Any]] = field(default_factory=Bodies)
    routes: dict[RouteKey, dict[str, Any]] = field(default_factory=Bodies)
    claims: dict[str, dict[str, Any]] = field(default_factory=Bodies)  # HostClaims by name
    # Which Workers read each ConfigMap and Secret (kept by `reads`, from the watches).
    readers: dict[SourceKey, set[WorkerKey]] = field(default_factory=dict)
    _read: dict[WorkerKey, frozenset[SourceKey]] = field(default_factory=dict)

    def reads(self, worker: WorkerKey, body: dict[str, Any] | None) -> None:
        """Index what the Worker's spec reads now (None: it is gone)."""
        now = sources_read(body) if body is not None else frozenset()
        before = self._read.pop(worker, frozenset())
        if now:
            self._read[worker] = now
        for source in before - now:
            self.readers[source].discard(worker)
            if not self.readers[source]:
                del self.readers[source]
        for source in now - before:
            self.readers.setdefault(source, set()).add(worker)

    def routes_of(self, worker: WorkerKey) -> list[RouteKey]:
        """The WorkerRoutes that send requests to the Worker."""
        return sorted(
            key
            for key, body in self.routes.items()
            if key[0] == worker[0] and body["spec"].get("worker") == worker[1]
        )

    def route_facts(self) -> dict[RouteKey, RouteFacts]:
        return {
            key: RouteFacts(
                body["spec"]["pattern"],
                body["spec"].get("worker"),
                body["metadata"].get("creationTimestamp") or "",
            )
            for key, body in self.routes.items()
        }

    def grants(self) -> list[Grant]:
        return [
            Grant(tuple(b["spec"]["hosts"]), frozenset(b["spec"]["namespaces"]))
            for _, b in sorted(self.claims.items())
        ]

    def standing(self) -> Standing:
        """Which routes are served, and why the others are not."""
        return standing(self.route_facts(), self.grants())

    def exclusions(self) -> dict[str, tuple[str, ...]]:
        """Namespace -> the patterns its served routes without a Worker exclude."""
        return exclusions(self.route_facts(), self.standing())

    def routes_without_worker(self, namespace: str | None = None) -> list[RouteKey]:
        """Routes without a Worker, of one namespace or all."""
        return sorted(
            key
            for key, body in self.routes.items()
            if not body["spec"].get("worker") and namespace in (None, key[0])
        )
