"""Durable store of accepted deployments: one JSON file per Worker, and one file with every
namespace's routes without a Worker; each written atomically (temp file, fsync, rename,
fsync of the directory) so a crash leaves old or new, never half."""

from __future__ import annotations

import asyncio
import json
import os
import re
from pathlib import Path

from edgeplane.wire import WORKER_NAME_RE, Deployment, Exclusions


def atomic_write(path: Path, content: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(content)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def fsync_dir(d: Path) -> None:
    fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Store:
    def __init__(self, root: Path) -> None:
        self.dir = root / "deployments"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.exclusions_file = root / "exclusions.json"

    def _path(self, worker: str) -> Path:
        if not re.match(WORKER_NAME_RE, worker):  # never a path outside the store
            raise ValueError(f"invalid worker name {worker!r}")
        return self.dir / f"{worker}.json"

    def load_all(self) -> dict[str, Deployment]:
        # A temp file is a write that never reached its rename: it was never accepted.
        for tmp in self.dir.glob(".*.tmp-*"):
            tmp.unlink(missing_ok=True)
        out: dict[str, Deployment] = {}
        for p in sorted(self.dir.glob("*.json")):
            d = Deployment.model_validate_json(p.read_bytes())
            out[d.worker] = d
        return out

    def _apply_sync(self, changes: dict[str, Deployment | None]) -> None:
        for worker, d in changes.items():
            path = self._path(worker)
            if d is None:
                try:
                    path.unlink()
                except FileNotFoundError:
                    pass
            else:
                tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
                with open(tmp, "wb") as f:
                    f.write(d.model_dump_json(by_alias=True, exclude_none=True).encode())
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, path)
        fsync_dir(self.dir)  # one directory fsync for the whole batch

    async def apply(self, changes: dict[str, Deployment | None]) -> None:
        await asyncio.to_thread(self._apply_sync, changes)

    def load_exclusions(self) -> dict[str, tuple[str, ...]]:
        """Namespace -> its route patterns without a Worker, as last accepted."""
        if not self.exclusions_file.exists():
            return {}
        raw = json.loads(self.exclusions_file.read_bytes())
        return {ns: Exclusions.model_validate(e).patterns for ns, e in raw.items()}

    async def save_exclusions(self, exclusions: dict[str, tuple[str, ...]]) -> None:
        body = {ns: {"patterns": list(ps)} for ns, ps in sorted(exclusions.items())}
        data = json.dumps(body, separators=(",", ":")).encode()
        await asyncio.to_thread(atomic_write, self.exclusions_file, data)
