"""Read what a Worker references: its ConfigMaps, Secrets and URLs (I/O only; what is
missing is simply absent from the result, and the compiler says what to fix)."""

from __future__ import annotations

import hashlib

import aiohttp

from edgeplane.api import Worker
from edgeplane.compile import Sources, references
from edgeplane.kube.client import Kube

MAX_URL_BYTES = 64 * 1000 * 1000


class Resolver:
    def __init__(self, kube: Kube) -> None:
        self.kube = kube
        self.http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60))
        self.url_cache: dict[str, bytes] = {}  # sha256 -> content: content-addressed

    async def close(self) -> None:
        await self.http.close()

    async def resolve(self, worker: Worker, modules: bool = True) -> Sources:
        """Read what the Worker references; `modules=False` reads only its Secrets."""
        ns = worker.metadata.namespace or ""
        refs = references(worker)
        config_maps = {}
        for name in refs.config_maps if modules else ():
            if (data := await self.kube.config_map(ns, name)) is not None:
                config_maps[name] = data
        secrets = {}
        for name in refs.secrets:
            if (values := await self.kube.secret(ns, name)) is not None:
                secrets[name] = values
        urls = {}
        for url, sha in refs.urls if modules else ():
            if (content := await self._download(url, sha)) is not None:
                urls[sha] = content
        return Sources(config_maps=config_maps, secrets=secrets, urls=urls)

    async def _download(self, url: str, sha256: str) -> bytes | None:
        if sha256 in self.url_cache:
            return self.url_cache[sha256]
        try:
            async with self.http.get(url) as resp:
                if resp.status != 200:
                    return None
                content = await resp.content.read(MAX_URL_BYTES + 1)
        except (aiohttp.ClientError, TimeoutError, OSError):
            return None
        if hashlib.sha256(content).hexdigest() == sha256:
            self.url_cache[sha256] = content
        return content
