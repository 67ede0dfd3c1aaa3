"""WorkerVersion objects and their archive ConfigMaps (of the modules not inline in the
spec), which versions to prune and which version a reference names (pure)."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from edgeplane.api import GROUP, VERSION, Worker, WorkerVersion
from edgeplane.api.version import (
    BindingSummary,
    ModuleSummary,
    VersionArtifact,
    WorkerVersionSpec,
)
from edgeplane.api.worker import WorkerSpec
from edgeplane.compile import CompileError
from edgeplane.compile.compiler import bundle_order, inline_module
from edgeplane.versions.archive import PART_KEY, ArchiveError, check, part_name
from edgeplane.versions.artifacts import slim_source
from edgeplane.wire import Bundle, BundleModule

WORKER_LABEL = "edgeplane.io/worker"


def owner_reference(kind: str, name: str, uid: str | None) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": kind,
        "name": name,
        "uid": uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def version_object(
    worker: Worker,
    bundle: Bundle,
    parts: int,
    now: datetime,
    artifact: VersionArtifact | None = None,
) -> WorkerVersion:
    """The immutable record of one compiled version, owned by its Worker; with `artifact`
    (a version registry), `source` names the artifact's layers instead of inline code."""
    assert bundle.version is not None
    name = worker.metadata.name
    spec = WorkerVersionSpec(
        worker=name,
        version_id=bundle.version,
        created=now,
        worker_generation=worker.metadata.generation or 0,
        main_module=bundle.main_module,
        compatibility_date=bundle.compatibility_date,
        compatibility_flags=list(bundle.compatibility_flags),
        modules=[
            ModuleSummary(
                name=m.name,
                type=m.type,
                sha256=hashlib.sha256(m.raw()).hexdigest(),
                size=len(m.raw()),
            )
            for m in bundle.modules
        ],
        bindings=[BindingSummary(name=b.name, kind=b.kind) for b in worker.spec.bindings],
        source=worker.spec if artifact is None else slim_source(worker.spec, artifact.ref),
        archive_parts=parts,
        artifact=artifact,
    )
    return WorkerVersion(
        metadata={
            "name": WorkerVersion.name_for(name, bundle.version),
            "namespace": worker.metadata.namespace,
            "labels": {WORKER_LABEL: name},
            "ownerReferences": [owner_reference("Worker", name, worker.metadata.uid)],
        },
        spec=spec,
    )


def archived_modules(spec: WorkerSpec, modules: Iterable[BundleModule]) -> tuple[BundleModule, ...]:
    """The modules a version's archive holds: those not inline in its spec (which the
    WorkerVersion records already)."""
    inline = {m.name for m in spec.modules if m.inline is not None}
    return tuple(m for m in modules if m.name not in inline)


def rebuilt_modules(
    source: WorkerSpec, namespace: str, archived: list[BundleModule], digests: dict[str, str]
) -> list[BundleModule]:
    """A recorded version's modules in bundle order: from its archive, else inline in the
    spec it was compiled from, each checked against its digest; ArchiveError if one is in
    neither."""
    by_name = {m.name: m for m in archived}
    out = []
    for i, m in enumerate(source.modules):
        got = by_name.get(m.name)
        if got is None:
            if m.inline is None:
                raise ArchiveError(
                    f"module {m.name} is neither in its archive nor inline in the recorded "
                    "spec; the version cannot be served again"
                )
            got = inline_module(i, m, namespace)
            check(got, digests)
        out.append(got)
    return bundle_order(out, source.main)


def archive_config_map(created: dict[str, Any], index: int, part: bytes) -> dict[str, Any]:
    """One part of a version's module archive, owned by the created WorkerVersion."""
    meta = created["metadata"]
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": part_name(meta["name"], index),
            "namespace": meta["namespace"],
            "labels": dict(meta.get("labels") or {}),
            "ownerReferences": [owner_reference("WorkerVersion", meta["name"], meta["uid"])],
        },
        "binaryData": {PART_KEY: base64.b64encode(part).decode()},
        "immutable": True,
    }


def to_prune(items: Iterable[Mapping[str, Any]], retained: int, keep: set[str]) -> list[str]:
    """Names of the WorkerVersions beyond the newest `retained`, except those in `keep`.
    Newest by `created`, then by the Worker's generation (`created` has whole seconds: two
    edits within one second are told apart by it), then by name."""
    newest_first = sorted(
        items, key=lambda o: (*age(o["spec"]), o["metadata"]["name"]), reverse=True
    )
    return [
        o["metadata"]["name"] for o in newest_first[retained:] if o["metadata"]["name"] not in keep
    ]


def age(spec: Mapping[str, Any]) -> tuple[str, int]:
    """What a WorkerVersion's spec is ordered by, oldest first: `created`, then the Worker's
    generation."""
    return (str(spec["created"]), int(spec.get("workerGeneration") or 0))


def match_ref(ids: Iterable[str], ref: str, where: str, namespace: str, worker: str) -> str:
    """The one retained version id that `ref` (an id or a prefix) names; `where` is the
    field the reference came from, for the error."""
    hits = sorted(v for v in ids if v.startswith(ref))
    if len(hits) == 1:
        return hits[0]
    listing = f"`kubectl get workerversions -n {namespace} -l {WORKER_LABEL}={worker}` lists them"
    if not hits:
        raise CompileError(
            "VersionNotFound",
            f"{where}: no retained version of Worker {worker} starts with {ref!r}; {listing}",
        )
    raise CompileError(
        "VersionNotFound",
        f"{where}: {ref!r} matches {len(hits)} versions of Worker {worker}; give more "
        f"digits ({listing})",
    )


@dataclass(frozen=True)
class Known:
    """What the operator keeps of one WorkerVersion it listed at start, in place of the POST,
    GET and LISTs per Worker that learned it one Worker at a time."""

    namespace: str
    worker: str
    name: str
    created: str
    generation: int  # the Worker's, compiled from
    # Its archive may be missing (an operator killed between the two writes): its next
    # record creates the parts again, so it is not counted as recorded.
    complete: bool


def known_version(item: Mapping[str, Any]) -> Known | None:
    """The facts of one listed WorkerVersion; None for one going away or not edgeplane's
    form (a name not derived from its Worker and version, a field missing)."""
    meta, spec = item.get("metadata") or {}, item.get("spec") or {}
    worker, version = spec.get("worker"), spec.get("versionId")
    name, created = meta.get("name"), spec.get("created")
    if meta.get("deletionTimestamp") or not (worker and version and name and created):
        return None
    if name != WorkerVersion.name_for(worker, version):
        return None
    at, generation = age(spec)
    return Known(
        namespace=meta.get("namespace") or "",
        worker=worker,
        name=name,
        created=at,
        generation=generation,
        complete=not spec.get("archiveParts"),
    )
