"""WorkerVersions in the apiserver (I/O over `versions.objects`): record a compiled
version with its module archive (of the modules not inline in its spec), prune old ones,
and rebuild a retained one. Also the bundles of the versions in use, so a version is
rebuilt from its archive at most once. Where each version serves is the Worker's
`status.targets`, not written here: a count per version cost a write on every version
that started or stopped serving."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol

from edgeplane.api import Worker, WorkerVersion
from edgeplane.api.common import now as api_now
from edgeplane.api.version import WorkerVersionSpec
from edgeplane.compile import CompileError, assemble
from edgeplane.kube.client import Kube
from edgeplane.resolve.sources import Resolver
from edgeplane.versions.archive import PART_KEY, ArchiveError, pack, part_name, unpack_all
from edgeplane.versions.objects import (
    WORKER_LABEL,
    Known,
    age,
    archive_config_map,
    archived_modules,
    known_version,
    match_ref,
    rebuilt_modules,
    to_prune,
    version_object,
)
from edgeplane.versions.registry import VersionRegistry
from edgeplane.wire import Bundle, BundleAssets, BundleModule

PLURAL = "workerversions"
WorkerKey = tuple[str, str]  # (namespace, Worker name)


class BlobPool(Protocol):
    """The assets' files of compiled versions, by sha256 (distribute.client.AgentClient)."""

    blobs: dict[str, bytes]

    def hold_blobs(self, worker: str, blobs: Mapping[str, bytes]) -> None: ...

    def drop_blobs(self, worker: str) -> None: ...


class NoBlobs:
    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}

    def hold_blobs(self, worker: str, blobs: Mapping[str, bytes]) -> None:
        self.blobs.update(blobs)

    def drop_blobs(self, worker: str) -> None:
        pass


def _key(worker: Worker) -> WorkerKey:
    return (worker.metadata.namespace or "", worker.metadata.name)


class VersionIndex:
    """One Worker's retained version ids, listed once per reconcile when first needed."""

    def __init__(self, store: VersionStore, worker: Worker) -> None:
        self.store, self.worker = store, worker
        self.ids: list[str] | None = None

    async def resolve(self, ref: str, where: str) -> str:
        """The retained version that `ref` (an id or a prefix of one) names."""
        ns, name = _key(self.worker)
        if self.ids is None:
            self.ids = [o["spec"]["versionId"] for o in await self.store.list(ns, name)]
        return match_ref(self.ids, ref, where, ns, name)


class VersionStore:
    def __init__(
        self,
        kube: Kube,
        resolver: Resolver,
        retained: int,
        registry: VersionRegistry | None = None,
    ) -> None:
        self.kube = kube
        self.resolver = resolver
        self.retained = retained
        # With a version registry, versions are pushed there instead of ConfigMaps.
        self.registry = registry
        self.recorded: set[WorkerKey] = set()  # (namespace, WorkerVersion name)
        self.bundles: dict[WorkerKey, dict[str, Bundle]] = {}
        # Each Worker's retained WorkerVersions as pruning sees them (name -> its spec's `age`),
        # from one LIST, then kept up to date: a LIST per record scans every WorkerVersion
        # of the namespace, which grows as the square of the Workers in it.
        self.retained_of: dict[WorkerKey, dict[str, tuple[str, int]]] = {}
        # Where the assets' files of compiled versions are held for pushes (the agents'
        # client): archived with a version, and given back when one is rebuilt.
        self.pool: BlobPool = NoBlobs()

    async def prime(self, namespaces: tuple[str, ...] = (), page: int = 500) -> int:
        """Learn every WorkerVersion there is from one paginated LIST, before the first
        reconcile: which are recorded and each Worker's retained versions. Without it a
        restarted operator POSTs (409) and GETs each Worker's version and LISTs its
        versions, though nothing changed. Kept only if every page was read: a Worker's
        versions half known would be pruned wrong. Returns how many it learned."""
        found: list[Known] = []
        async for items in self.kube.list_pages(PLURAL, namespaces, page):
            found.extend(k for item in items if (k := known_version(item)) is not None)
        for known in found:
            self._learn(known)
        return len(found)

    def _learn(self, known: Known) -> None:
        key = (known.namespace, known.worker)
        if known.complete:
            self.recorded.add((known.namespace, known.name))
        self.retained_of.setdefault(key, {})[known.name] = (known.created, known.generation)

    def forget(self, key: WorkerKey) -> None:
        self.pool.drop_blobs(f"{key[0]}.{key[1]}")
        self.bundles.pop(key, None)
        self.retained_of.pop(key, None)

    def remember(self, worker: Worker, bundle: Bundle) -> None:
        self.bundles.setdefault(_key(worker), {})[bundle.version or ""] = bundle

    def keep_only(self, worker: Worker, versions: Iterable[str | None]) -> None:
        """Forget the bundles of versions nothing uses any more."""
        wanted = set(versions)
        cached = self.bundles.get(_key(worker), {})
        self.bundles[_key(worker)] = {v: b for v, b in cached.items() if v in wanted}

    def secrets(self, worker: Worker) -> list[str]:
        """Secret values of the versions in use, to redact them from what agents echo."""
        bundles = self.bundles.get(_key(worker), {}).values()
        return [secret for bundle in bundles for secret in bundle.secrets()]

    async def list(self, ns: str, worker: str) -> list[dict]:
        """The Worker's retained WorkerVersion objects."""
        return await self.kube.list(PLURAL, ns, f"{WORKER_LABEL}={worker}")

    async def record(
        self, worker: Worker, bundle: Bundle, keep: set[str], first: bool = False
    ) -> None:
        """Record the version as an immutable WorkerVersion with its modules archived in
        ConfigMaps it owns, then prune; `keep` are versions in use that must stay. `first`:
        the Worker never had a version (no LIST is needed to know it has no other)."""
        ns, name = _key(worker)
        vname = WorkerVersion.name_for(name, bundle.version or "")
        if (ns, vname) in self.recorded:
            return
        # The assets' files were held when it compiled, just before (ArchiveError if not).
        artifact, parts = None, []
        if self.registry is not None:
            artifact = await self.registry.push(ns, name, bundle, self.pool.blobs)
        elif (archived := archived_modules(worker.spec, bundle.modules)) or bundle.assets:
            parts = pack(archived, bundle.assets, self.pool.blobs)
        obj = version_object(worker, bundle, len(parts), api_now(), artifact)
        created = await self.kube.create_or_get(PLURAL, ns, obj.to_wire())
        # Also after a 409: an operator killed between the two writes left no archive.
        for i, part in enumerate(parts):
            await self.kube.create_config_map(ns, archive_config_map(created, i, part))
        self.recorded.add((ns, vname))
        retained = await self._retained(ns, name, first)
        retained[vname] = age(created["spec"])
        await self.prune(worker, {*keep, bundle.version or ""})

    async def _retained(
        self, ns: str, name: str, first: bool = False
    ) -> dict[str, tuple[str, int]]:
        retained = self.retained_of.get((ns, name))
        if retained is None:
            listed = [] if first else await self.list(ns, name)
            retained = {o["metadata"]["name"]: age(o["spec"]) for o in listed}
            self.retained_of[(ns, name)] = retained
        return retained

    async def prune(self, worker: Worker, keep: set[str]) -> None:
        """Delete the Worker's versions beyond the newest `retained`, except `keep` (ids in
        use). A version kept in the registry loses its manifest first: if the registry
        cannot delete it now, the WorkerVersion stays (over the count) to name it, and the
        next prune tries again, rather than leave a manifest nothing points to."""
        ns, name = _key(worker)
        retained = await self._retained(ns, name)
        in_use = {WorkerVersion.name_for(name, v) for v in keep}
        items = [
            {"metadata": {"name": n}, "spec": {"created": c, "workerGeneration": g}}
            for n, (c, g) in retained.items()
        ]
        for old in to_prune(items, self.retained, in_use):
            ref = await self._artifact_of(ns, old)
            if ref is not None and self.registry is not None:
                if not await self.registry.delete(ref):
                    continue
            await self.kube.delete(PLURAL, ns, old)
            self.recorded.discard((ns, old))
            retained.pop(old, None)

    async def drop_artifacts(self, ns: str, worker: str) -> None:
        """Delete a deleted Worker's versions' manifests from the registry (its
        WorkerVersions go with it, by owner); stops at the first failure, logged, so a
        registry that is down does not hold the deletion."""
        if self.registry is None:
            return
        for obj in await self.list(ns, worker):
            ref = ((obj.get("spec") or {}).get("artifact") or {}).get("ref")
            if ref and not await self.registry.delete(ref):
                return

    async def _artifact_of(self, ns: str, vname: str) -> str | None:
        """The artifact a version about to be pruned keeps in the registry, if any."""
        if self.registry is None:
            return None
        body = await self.kube.get(PLURAL, ns, vname)
        return (((body or {}).get("spec") or {}).get("artifact") or {}).get("ref")

    def pullable(self, worker: Worker, bundle: Bundle) -> Bundle:
        """`bundle` as sent to locations: with a version registry, naming the repository
        its modules are layers of, so a location pulls those it lacks by digest."""
        if self.registry is None:
            return bundle
        where = self.registry.location
        repository = f"{where.host}/{where.repository(*_key(worker))}"
        return bundle.model_copy(update={"repository": repository})

    async def bundle(self, worker: Worker, version: str) -> Bundle:
        """One version's bundle: from memory, or rebuilt from its WorkerVersion's archive
        with the Secrets of today (which must still give the same version id)."""
        cached = self.bundles.get(_key(worker), {}).get(version)
        # A version whose assets' files are no longer held is rebuilt: its archive has them.
        if cached is not None and self._files_held(cached):
            return cached
        ns, name = _key(worker)
        vname = WorkerVersion.name_for(name, version)
        body = await self.kube.get(PLURAL, ns, vname)
        if body is None:
            raise CompileError(
                "VersionNotFound",
                f"version {version[:12]} of Worker {name} is no longer retained (WorkerVersion "
                f"{vname} not found); name a retained version",
            )
        spec = WorkerVersion.model_validate(body).spec
        if spec.artifact is not None:
            modules, assets, blobs = await self._pulled(spec)
        else:
            modules, assets, blobs = await self._unarchived(ns, vname, spec)
        source = worker.model_copy(update={"spec": spec.source})
        sources = await self.resolver.resolve(source, modules=False)
        bundle = assemble(source, modules, sources, assets)
        if bundle.version != version:
            raise CompileError(
                "ArchiveUnavailable",
                f"version {version[:12]} cannot be rebuilt as recorded: a Secret it binds "
                "(spec.bindings[].secretKeyRef) has changed since; name a version built "
                "with the current Secret values",
            )
        self.remember(worker, bundle)
        if blobs:
            self.pool.hold_blobs(worker.full_name, blobs)
        return bundle

    async def _unarchived(
        self, ns: str, vname: str, spec: WorkerVersionSpec
    ) -> tuple[list[BundleModule], BundleAssets | None, dict[str, bytes]]:
        """A version's modules, assets and files from its ConfigMap archive."""
        version = spec.version_id
        parts = [await self._archive_part(ns, vname, version, i) for i in range(spec.archive_parts)]
        digests = {m.name: m.sha256 for m in spec.modules}
        try:
            archived, assets, blobs = unpack_all(parts, digests)
            return rebuilt_modules(spec.source, ns, archived, digests), assets, blobs
        except ArchiveError as e:
            raise CompileError("ArchiveUnavailable", f"version {version[:12]}: {e}") from None

    async def _pulled(
        self, spec: WorkerVersionSpec
    ) -> tuple[list[BundleModule], BundleAssets | None, dict[str, bytes]]:
        """A version's modules, assets and files from the version registry."""
        if self.registry is None:
            raise CompileError(
                "ArchiveUnavailable",
                f"version {spec.version_id[:12]} is kept in a version registry "
                f"({spec.artifact.ref if spec.artifact else ''}) but the operator runs "
                "without --version-registry; start it with the registry it used",
            )
        return await self.registry.pull(spec)

    def _files_held(self, bundle: Bundle) -> bool:
        return not bundle.assets or bundle.assets.blobs() <= self.pool.blobs.keys()

    async def _archive_part(self, ns: str, vname: str, version: str, index: int) -> bytes:
        data = await self.kube.config_map(ns, part_name(vname, index))
        part = (data or {}).get(PART_KEY)
        if not isinstance(part, bytes):
            raise CompileError(
                "ArchiveUnavailable",
                f"version {version[:12]}: ConfigMap {ns}/{part_name(vname, index)}, part of "
                "its module archive, is missing; the version cannot be served again",
            )
        return part
