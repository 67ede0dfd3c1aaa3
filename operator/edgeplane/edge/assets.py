"""A location's static sites, made from blobs (edge/blobs.py): `<state>/assets/sites/
<digest>/` holds a version's files as hard links to their blobs (no copy, and the same
metadata everywhere, so the same ETag), and `<state>/assets/workers/<worker>` is a symlink
to the site its primary version serves, which is the directory its cell's AssetsService
names. A new site is built beside the old one and the link is swapped in one rename, so a
request sees the whole old site or the whole new one; workerd looks files up per request,
so the swap needs no restart.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterable
from pathlib import Path

from edgeplane.edge.blobs import BlobError, Blobs
from edgeplane.edge.store import fsync_dir, private_dir
from edgeplane.wire import BundleAssets, Deployment, blobs_of

__all__ = ["Sites", "blobs_of", "site_of"]


def site_of(d: Deployment) -> BundleAssets | None:
    """The assets a Worker's location serves: its primary version's."""
    for b in d.versions:
        if b.version == d.primary:
            return b.assets
    return None


class Sites:
    def __init__(self, root: Path, blobs: Blobs) -> None:
        self.sites = root / "assets" / "sites"
        self.links = root / "assets" / "workers"
        self.blobs = blobs

    def link(self, worker: str) -> Path:
        """The directory the Worker's AssetsService serves (a symlink to its site)."""
        return self.links / worker

    def build(self, site: BundleAssets) -> str:
        """The site's directory, made from blobs if it is not here; returns its digest.
        BlobError if a blob is missing (nothing is left half-made)."""
        digest = site.digest()
        final = self.sites / digest
        if final.is_dir():
            return digest
        private_dir(self.sites)
        tmp = self.sites / f".{digest}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            for f in site.files:
                target = tmp / f.path
                private_dir(target.parent)
                try:
                    os.link(self.blobs.path(f.sha256), target)
                except FileNotFoundError:
                    raise BlobError(f"blob {f.sha256} ({f.path}) is not here") from None
            private_dir(tmp)  # an empty site is a directory too
            os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        fsync_dir(self.sites)
        return digest

    def point(self, worker: str, digest: str) -> None:
        """The Worker serves site `digest` from now on: one rename of a new symlink."""
        private_dir(self.links)
        link = self.link(worker)
        target = os.path.join("..", "sites", digest)
        with contextlib.suppress(OSError):
            if os.readlink(link) == target:
                return
        tmp = link.with_name(f".{worker}.tmp-{os.getpid()}")
        tmp.unlink(missing_ok=True)
        os.symlink(target, tmp)
        os.replace(tmp, link)
        fsync_dir(self.links)

    def unpoint(self, worker: str) -> None:
        self.link(worker).unlink(missing_ok=True)

    def collect(self, workers: Iterable[str]) -> list[str]:
        """Remove the links of Workers not in `workers` and the sites no link names;
        returns the digests removed."""
        keep = set(workers)
        if self.links.is_dir():
            for link in self.links.iterdir():
                if link.name not in keep:
                    link.unlink(missing_ok=True)
        named = set()
        for w in keep:
            with contextlib.suppress(OSError):
                named.add(os.path.basename(os.readlink(self.link(w))))
        removed = []
        if self.sites.is_dir():
            for site in sorted(self.sites.iterdir()):
                if site.name not in named:
                    shutil.rmtree(site, ignore_errors=True)
                    if not site.name.startswith("."):
                        removed.append(site.name)
        return removed
