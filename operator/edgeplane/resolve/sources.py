"""Read what a Worker references: its ConfigMaps, Secrets and URLs (I/O only; what is
missing is simply absent from the result, with why for a URL, and the compiler says what
to fix).

ConfigMaps and Secrets are watched, not fetched on every pass: the watches feed `seen`,
and a source read for the first time is fetched once and then kept current by its
events. Between a fetch and an event for the same object, the higher resourceVersion
wins, so a slow answer never overwrites a newer event."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterable, Mapping
from typing import Any

from edgeplane.api import Worker
from edgeplane.compile import Sources, references
from edgeplane.kube.client import Kube, contents
from edgeplane.plan.relist import resource_version
from edgeplane.resolve.artifact import Credentials, credentials_for, parse_dockerconfig, parse_ref
from edgeplane.resolve.download import Downloader
from edgeplane.resolve.oci import ArtifactError, OciClient
from edgeplane.resolve.policy import DownloadError, ModuleCache, UrlSettings

DOCKERCONFIG_KEY = ".dockerconfigjson"
ArtifactKey = tuple[str, str]  # (oci ref, layer title)
Why = tuple[str, str, bool]  # (reason, message, retried by itself)
SourceKey = tuple[str, str, str]  # ("ConfigMap" | "Secret", namespace, name)
Contents = Mapping[str, str | bytes]


def newer(held: tuple[int, Contents | None] | None, version: int) -> bool:
    """Whether what arrived at resourceVersion `version` replaces what is held."""
    return held is None or version >= held[0]


class Resolver:
    def __init__(self, kube: Kube, urls: UrlSettings | None = None, digest_key: str = "") -> None:
        self.kube = kube
        self.digest_key = digest_key  # binds secret values into version ids
        self.urls = urls or UrlSettings()
        self.downloader = Downloader(self.urls)
        self.url_cache = ModuleCache(self.urls.cache_bytes)  # sha256 -> content
        self.oci = OciClient(self.urls)
        # Layers pulled, by namespace, ref (with its digest) and title: immutable, so never
        # refetched; per namespace, so a digest alone never grants another's private layer.
        self.artifact_cache = ModuleCache(self.urls.cache_bytes)
        # Sources Workers read: resourceVersion and contents (None: does not exist).
        self.sources: dict[SourceKey, tuple[int, Contents | None]] = {}
        self._fetching: set[SourceKey] = set()  # events for these count, whoever reads them

    async def close(self) -> None:
        await self.downloader.close()
        await self.oci.close()

    def seen(self, kind: str, body: Mapping[str, Any], deleted: bool, referenced: bool) -> None:
        """A watch event for a ConfigMap or Secret; kept only if a Worker reads it."""
        meta = body["metadata"]
        key = (kind, meta["namespace"], meta["name"])
        if not referenced and key not in self.sources and key not in self._fetching:
            return
        self._keep(key, resource_version(body), None if deleted else contents(kind, dict(body)))

    def held(self, kind: str) -> dict[SourceKey, int]:
        """The sources of a kind held as existing, with their resourceVersions."""
        return {k: v for k, (v, data) in self.sources.items() if k[0] == kind and data is not None}

    def gone(self, key: SourceKey, version: int) -> bool:
        """A read found the source deleted: held no more, unless an event brought a newer
        one meanwhile. True if it was dropped."""
        held = self.sources.get(key)
        if held is None or held[0] != version or held[1] is None:
            return False
        self.sources[key] = (version, None)
        return True

    def _keep(self, key: SourceKey, version: int, data: Contents | None) -> None:
        if newer(self.sources.get(key), version):
            self.sources[key] = (version, data)

    async def _source(self, kind: str, ns: str, name: str) -> Contents | None:
        key = (kind, ns, name)
        if key not in self.sources:
            self._fetching.add(key)
            try:
                body = await self.kube.read(kind, ns, name)
            finally:
                self._fetching.discard(key)
            if body is None:
                self._keep(key, 0, None)  # any event for it is newer
            else:
                self._keep(key, resource_version(body), contents(kind, body))
        return self.sources[key][1]

    async def resolve(self, worker: Worker, modules: bool = True) -> Sources:
        """Read what the Worker references; `modules=False` reads only its Secrets."""
        ns = worker.metadata.namespace or ""
        refs = references(worker)
        config_maps = {}
        for name in refs.config_maps if modules else ():
            if (data := await self._source("ConfigMap", ns, name)) is not None:
                config_maps[name] = data
        secrets = {}
        for name in refs.secrets:
            if (values := await self._source("Secret", ns, name)) is not None:
                secrets[name] = {k: v for k, v in values.items() if isinstance(v, bytes)}
        urls, url_errors = await self._downloads(refs.urls if modules else ())
        artifacts, artifact_errors = await self._artifacts(
            ns, refs.artifacts if modules else frozenset(), refs.pull_secrets
        )
        return Sources(
            config_maps=config_maps,
            secrets=secrets,
            urls=urls,
            url_errors=url_errors,
            artifacts=artifacts,
            artifact_errors=artifact_errors,
            digest_key=self.digest_key,
        )

    async def _downloads(
        self, wanted: Iterable[tuple[str, str]]
    ) -> tuple[dict[str, bytes], dict[tuple[str, str], str]]:
        """The Worker's url modules (sha256 -> content), a few at a time and all within one
        budget; and why each one that failed did (by (url, sha256))."""
        budget = self.urls.budget
        deadline = asyncio.get_running_loop().time() + budget
        slots = asyncio.Semaphore(self.urls.concurrency)

        async def one(url: str, sha256: str) -> bytes | str:
            if (cached := self.url_cache.get(sha256)) is not None:
                return cached
            try:
                async with asyncio.timeout_at(deadline), slots:
                    content = await self.downloader.fetch(url)
            except TimeoutError:
                return f"not downloaded: this Worker's downloads took over {budget:g}s in all"
            except DownloadError as e:
                return str(e)
            if hashlib.sha256(content).hexdigest() == sha256:
                self.url_cache.put(sha256, content)
            return content  # a mismatch is the compiler's to report

        pairs = sorted(wanted)
        results = await asyncio.gather(*(one(url, sha) for url, sha in pairs))
        urls = {sha: r for (_, sha), r in zip(pairs, results, strict=True) if isinstance(r, bytes)}
        errors = {p: r for p, r in zip(pairs, results, strict=True) if isinstance(r, str)}
        return urls, errors

    async def _pull_credentials(
        self, ns: str, names: Iterable[str]
    ) -> list[dict[str, Credentials]] | Why:
        """The Worker's imagePullSecrets, parsed in spec order; or why one is unusable
        (watched: fixing the Secret reconciles the Worker)."""
        configs = []
        for i, name in enumerate(names):
            where = f"spec.imagePullSecrets[{i}]: Secret {ns}/{name}"
            values = await self._source("Secret", ns, name)
            if values is None:
                return "SourceNotFound", f"{where} not found; create it or fix the name", False
            raw = values.get(DOCKERCONFIG_KEY)
            if not isinstance(raw, bytes):
                return "InvalidSource", (
                    f"{where} has no {DOCKERCONFIG_KEY} key; make it with `kubectl create "
                    "secret docker-registry` (type kubernetes.io/dockerconfigjson)"
                ), False
            try:
                configs.append(parse_dockerconfig(raw))
            except ValueError as e:
                return "InvalidSource", f"{where}: {e}", False
        return configs

    async def _artifacts(
        self, ns: str, wanted: frozenset[ArtifactKey], secrets: tuple[str, ...]
    ) -> tuple[dict[ArtifactKey, bytes], dict[ArtifactKey, Why]]:
        """The Worker's oci modules, by (ref, file), digests checked; and why each one
        that could not be pulled was not."""
        found: dict[ArtifactKey, bytes] = {}
        errors: dict[ArtifactKey, Why] = {}
        todo = []
        for key in sorted(wanted):
            if (cached := self.artifact_cache.get(f"{ns} {key[0]}#{key[1]}")) is not None:
                found[key] = cached
            else:
                todo.append(key)
        if not todo:
            return found, errors
        configs = await self._pull_credentials(ns, secrets)
        slots = asyncio.Semaphore(self.urls.concurrency)
        by_ref: dict[str, list[str]] = {}
        for ref, file in todo:
            by_ref.setdefault(ref, []).append(file)

        async def one(ref: str, files: list[str]) -> dict[str, bytes | Why]:
            if isinstance(configs, tuple):
                return dict.fromkeys(files, configs)
            parsed = parse_ref(ref)
            try:
                async with slots:  # one manifest read for all of the artifact's modules
                    got = await self.oci.pull(parsed, files, credentials_for(parsed.host, configs))
            except ArtifactError as e:
                return dict.fromkeys(files, (e.reason, e.message, e.retry))
            return {
                f: r if isinstance(r, bytes) else (r.reason, r.message, r.retry)
                for f, r in got.items()
            }

        refs = sorted(by_ref)
        results = await asyncio.gather(*(one(ref, by_ref[ref]) for ref in refs))
        for ref, per_file in zip(refs, results, strict=True):
            for file, r in per_file.items():
                if isinstance(r, bytes):
                    self.artifact_cache.put(f"{ns} {ref}#{file}", r)
                    found[(ref, file)] = r
                else:
                    errors[(ref, file)] = r
        return found, errors
