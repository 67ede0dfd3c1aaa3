"""A location's content-addressed blob store: `<state>/blobs/sha256/<ab>/<rest of the hex>`.

A blob is named by the sha256 of its bytes and checked against it on arrival, so a blob
that is here is the right one and is never sent twice: the operator asks which of a
deployment's blobs are missing (`POST /v1/blobs/missing`) and sends only those
(`PUT /v1/blobs/<sha256>`). Writes are atomic (temp file, fsync, rename) and 0600.

Static assets' files and code modules (the cells read them from here) are blobs; the store
knows nothing of what a blob is for. What is referenced is the caller's to say: `collect`
removes every blob not in the set it is given, except those that arrived within `grace`
seconds (a push sends its blobs before the deployment that references them).

Every blob's mtime is the epoch: files made from it (hard links) then carry the same
metadata at every location, so validators derived from it (an ETag) agree everywhere.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import time
from collections.abc import Iterable
from pathlib import Path

from edgeplane.edge.store import fsync_dir, private_dir, write_private

SHA256 = re.compile(r"[0-9a-f]{64}")
GRACE = 600.0  # seconds an unreferenced blob is kept after it arrived


class BlobError(Exception):
    """A blob refused: a message naming what is wrong."""


class Blobs:
    def __init__(self, root: Path, grace: float = GRACE) -> None:
        self.root = root / "blobs" / "sha256"
        self.grace = grace

    def path(self, sha256: str) -> Path:
        if not SHA256.fullmatch(sha256):
            raise BlobError(f"sha256: {sha256!r} is not 64 lowercase hex digits")
        return self.root / sha256[:2] / sha256[2:]

    def has(self, sha256: str) -> bool:
        return self.path(sha256).is_file()

    def missing(self, wanted: Iterable[str]) -> list[str]:
        """Of `wanted`, the blobs not here (sorted, each once)."""
        return sorted({s for s in wanted if not self.has(s)})

    def put(self, sha256: str, content: bytes) -> bool:
        """Store `content` as blob `sha256`; False if it was here already. BlobError if the
        content does not hash to the name."""
        path = self.path(sha256)
        actual = hashlib.sha256(content).hexdigest()
        if actual != sha256:
            raise BlobError(f"body: its sha256 is {actual}, not {sha256}; send the blob's bytes")
        if path.is_file():
            return False
        private_dir(path.parent)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{id(content)}")
        try:
            write_private(tmp, content, fsync=True)
            os.utime(tmp, (0, 0))
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        fsync_dir(path.parent)
        return True

    def read(self, sha256: str) -> bytes:
        """Blob `sha256`'s bytes, checked: one that no longer hashes to its name (a disk
        fault) is removed and, as a missing one, is FileNotFoundError: it is sent again."""
        path = self.path(sha256)
        content = path.read_bytes()
        if hashlib.sha256(content).hexdigest() != sha256:
            path.unlink(missing_ok=True)
            raise FileNotFoundError(f"blob {sha256} was corrupt and is removed")
        return content

    def all(self) -> set[str]:
        if not self.root.is_dir():
            return set()
        return {
            d.name + f.name
            for d in self.root.iterdir()
            if d.is_dir()
            for f in d.iterdir()
            if SHA256.fullmatch(d.name + f.name)
        }

    def collect(self, referenced: set[str]) -> list[str]:
        """Remove the blobs not `referenced` that arrived over `grace` seconds ago (ctime:
        a blob's mtime is the epoch); returns those removed. Left-over temp files go too."""
        removed = []
        now = time.time()
        for sha in sorted(self.all() - referenced):
            p = self.path(sha)
            with contextlib.suppress(FileNotFoundError):
                if now - p.stat().st_ctime < self.grace:
                    continue
                p.unlink()
                removed.append(sha)
        for tmp in self.root.glob("*/.*.tmp-*") if self.root.is_dir() else ():
            # A put under way renames its temp file away at any moment.
            with contextlib.suppress(FileNotFoundError):
                if now - tmp.stat().st_ctime >= self.grace:
                    tmp.unlink(missing_ok=True)
        return removed
