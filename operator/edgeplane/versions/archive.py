"""A version's modules, archived in ConfigMaps so it can be served again later (a pin, a
rollback, a traffic split) without reading the sources it was compiled from, which may
have changed or gone since. Modules inline in the spec are not archived: the WorkerVersion
records the spec already (`spec.source`), and a second copy would double their weight in
etcd (and cost a write per version).

The modules go into one gzip'd JSON document, split into parts that each fit a
ConfigMap; the WorkerVersion's module digests check what comes back.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
from collections.abc import Mapping

from edgeplane.wire import BundleAssets, BundleModule

# A ConfigMap holds at most 1 MiB; leave room for its metadata.
PART_BYTES = 900 * 1024
PART_KEY = "modules.json.gz"


class ArchiveError(Exception):
    pass


def pack(
    modules: tuple[BundleModule, ...],
    assets: BundleAssets | None = None,
    blobs: Mapping[str, bytes] | None = None,
) -> list[bytes]:
    """The modules (main first, as in the bundle) as ConfigMap-sized parts; with `assets`,
    the site and its files' bytes (`blobs`) too, until versions live in a registry (#19).
    Without assets the document is the list of modules it always was."""
    body: object = [m.model_dump(mode="json") for m in modules]
    if assets is not None:
        files = blobs or {}
        missing = [s for s in sorted(assets.blobs()) if s not in files]
        if missing:
            raise ArchiveError(f"the file with sha256 {missing[0]} of the assets is not held")
        body = {
            "modules": body,
            "assets": assets.model_dump(mode="json"),
            "blobs": {s: base64.b64encode(files[s]).decode() for s in sorted(assets.blobs())},
        }
    doc = json.dumps(body, separators=(",", ":"))
    # mtime=0: the same modules always give the same bytes.
    blob = gzip.compress(doc.encode(), compresslevel=6, mtime=0)
    return [blob[i : i + PART_BYTES] for i in range(0, len(blob), PART_BYTES)] or [b""]


def unpack(parts: list[bytes], digests: dict[str, str]) -> list[BundleModule]:
    """The archived modules (all of the version's, or those not inline in its spec), each
    checked against `digests` (name -> sha256)."""
    return unpack_all(parts, digests)[0]


def unpack_all(
    parts: list[bytes], digests: dict[str, str]
) -> tuple[list[BundleModule], BundleAssets | None, dict[str, bytes]]:
    """`unpack`, with the version's assets and their files' bytes, each checked against
    its sha256 (the version id checks the manifest)."""
    if not parts:
        return [], None, {}
    try:
        raw = json.loads(gzip.decompress(b"".join(parts)))
        site = raw if isinstance(raw, dict) else {"modules": raw}
        modules = [BundleModule.model_validate(m) for m in site["modules"]]
        assets = BundleAssets.model_validate(site["assets"]) if "assets" in site else None
        blobs = {s: base64.b64decode(b, validate=True) for s, b in site.get("blobs", {}).items()}
    except (OSError, EOFError, ValueError, KeyError, TypeError) as e:
        raise ArchiveError(f"the archive is damaged: {e}") from None
    for sha, content in blobs.items():
        if hashlib.sha256(content).hexdigest() != sha:
            raise ArchiveError(f"an assets file does not match its recorded sha256 {sha}")
    if assets is not None and not assets.blobs() <= set(blobs):
        raise ArchiveError("the archive lacks files of the version's assets")
    for m in modules:
        if m.name not in digests:
            raise ArchiveError(f"the archive holds module {m.name}, which the version has not")
        check(m, digests)
    return modules, assets, blobs


def check(m: BundleModule, digests: dict[str, str]) -> None:
    if hashlib.sha256(m.raw()).hexdigest() != digests.get(m.name):
        raise ArchiveError(f"module {m.name} does not match its recorded sha256")


def part_name(version_object: str, index: int) -> str:
    """ConfigMap name of one part: `<WorkerVersion name>-m<index>`."""
    return f"{version_object}-m{index}"
