"""Read what a Worker references: its ConfigMaps, Secrets and URLs (I/O only; what is
missing is simply absent from the result, and the compiler says what to fix).

ConfigMaps and Secrets are watched, not fetched on every pass: the watches feed `seen`,
and a source read for the first time is fetched once and then kept current by its
events. Between a fetch and an event for the same object, the higher resourceVersion
wins, so a slow answer never overwrites a newer event."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import aiohttp

from edgeplane.api import Worker
from edgeplane.compile import Sources, references
from edgeplane.kube.client import Kube, contents

MAX_URL_BYTES = 64 * 1000 * 1000

SourceKey = tuple[str, str, str]  # ("ConfigMap" | "Secret", namespace, name)
Contents = Mapping[str, str | bytes]


def newer(held: tuple[int, Contents | None] | None, version: int) -> bool:
    """Whether what arrived at resourceVersion `version` replaces what is held."""
    return held is None or version >= held[0]


def _version(body: Mapping[str, Any]) -> int:
    return int((body.get("metadata") or {}).get("resourceVersion") or 0)


class Resolver:
    def __init__(self, kube: Kube) -> None:
        self.kube = kube
        self._http: aiohttp.ClientSession | None = None  # made when a URL is first read
        self.url_cache: dict[str, bytes] = {}  # sha256 -> content: content-addressed
        # Sources Workers read: resourceVersion and contents (None: does not exist).
        self.sources: dict[SourceKey, tuple[int, Contents | None]] = {}
        self._fetching: set[SourceKey] = set()  # events for these count, whoever reads them

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()

    def seen(self, kind: str, body: Mapping[str, Any], deleted: bool, referenced: bool) -> None:
        """A watch event for a ConfigMap or Secret; kept only if a Worker reads it."""
        meta = body["metadata"]
        key = (kind, meta["namespace"], meta["name"])
        if not referenced and key not in self.sources and key not in self._fetching:
            return
        self._keep(key, _version(body), None if deleted else contents(kind, dict(body)))

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
                self._keep(key, _version(body), contents(kind, body))
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
        urls = {}
        for url, sha in refs.urls if modules else ():
            if (content := await self._download(url, sha)) is not None:
                urls[sha] = content
        return Sources(config_maps=config_maps, secrets=secrets, urls=urls)

    async def _download(self, url: str, sha256: str) -> bytes | None:
        if sha256 in self.url_cache:
            return self.url_cache[sha256]
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60))
        try:
            async with self._http.get(url) as resp:
                if resp.status != 200:
                    return None
                content = await resp.content.read(MAX_URL_BYTES + 1)
        except (aiohttp.ClientError, TimeoutError, OSError):
            return None
        if hashlib.sha256(content).hexdigest() == sha256:
            self.url_cache[sha256] = content
        return content
