"""A version's modules, archived in ConfigMaps so it can be served again later (a pin, a
rollback, a traffic split) without reading the sources it was compiled from, which may
have changed or gone since. Modules inline in the spec are not archived: the WorkerVersion
records the spec already (`spec.source`), and a second copy would double their weight in
etcd (and cost a write per version).

The modules go into one gzip'd JSON document, split into parts that each fit a
ConfigMap; the WorkerVersion's module digests check what comes back.
"""

from __future__ import annotations

import gzip
import hashlib
import json

from edgeplane.wire import BundleModule

# A ConfigMap holds at most 1 MiB; leave room for its metadata.
PART_BYTES = 900 * 1024
PART_KEY = "modules.json.gz"


class ArchiveError(Exception):
    pass


def pack(modules: tuple[BundleModule, ...]) -> list[bytes]:
    """The modules (main first, as in the bundle) as ConfigMap-sized parts."""
    doc = json.dumps([m.model_dump(mode="json") for m in modules], separators=(",", ":"))
    # mtime=0: the same modules always give the same bytes.
    blob = gzip.compress(doc.encode(), compresslevel=6, mtime=0)
    return [blob[i : i + PART_BYTES] for i in range(0, len(blob), PART_BYTES)] or [b""]


def unpack(parts: list[bytes], digests: dict[str, str]) -> list[BundleModule]:
    """The archived modules (all of the version's, or those not inline in its spec), each
    checked against `digests` (name -> sha256)."""
    if not parts:
        return []
    try:
        raw = json.loads(gzip.decompress(b"".join(parts)))
        modules = [BundleModule.model_validate(m) for m in raw]
    except (OSError, EOFError, ValueError) as e:
        raise ArchiveError(f"the archive is damaged: {e}") from None
    for m in modules:
        if m.name not in digests:
            raise ArchiveError(f"the archive holds module {m.name}, which the version has not")
        check(m, digests)
    return modules


def check(m: BundleModule, digests: dict[str, str]) -> None:
    if hashlib.sha256(m.raw()).hexdigest() != digests.get(m.name):
        raise ArchiveError(f"module {m.name} does not match its recorded sha256")


def part_name(version_object: str, index: int) -> str:
    """ConfigMap name of one part: `<WorkerVersion name>-m<index>`."""
    return f"{version_object}-m{index}"
