"""A Worker's static assets, compiled (pure): the files from a ConfigMap or a tar archive,
checked and filtered, as a manifest of (path, sha256, size) plus workerd's AssetsService
config, and the files' bytes by sha256 for the blobs the locations do not hold yet.

Cloudflare's limits apply: 20,000 files per version (the Free plan's; the Paid plan
allows 100,000) and 25 MiB per file. Until versions live in a registry (#19), the files
of a version also ride with it to etcd, so all of them together are capped too.
"""

from __future__ import annotations

import fnmatch
import hashlib
import io
import json
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass

from edgeplane.api.worker import WorkerAssets
from edgeplane.wire import AssetFile, BundleAssets

MAX_FILES = 20_000
MAX_FILE_BYTES = 25 * 1024 * 1024
MAX_TOTAL_BYTES = 100 * 1024 * 1024
# Read from the site, not served: their text is the service's config (as Cloudflare does).
CONFIG_FILES = {"_headers": "headers", "_redirects": "redirects"}
IGNORE_FILE = ".assetsignore"


class AssetsError(Exception):
    """What is wrong with the assets: a reason for conditions and a message that names
    the field and the fix."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class CompiledAssets:
    wire: BundleAssets
    blobs: Mapping[str, bytes]  # sha256 -> content


def untar(data: bytes, where: str = "spec.assets.archive") -> dict[str, bytes]:
    """The regular files of a tar (gzip'd or not) by path. Refuses what could escape the
    site directory or is not a plain file: absolute names, '..', links, devices."""
    try:
        tar = tarfile.open(fileobj=io.BytesIO(data), mode="r:*")
    except (tarfile.TarError, OSError, EOFError) as e:
        raise AssetsError("InvalidAssets", f"{where}: not a tar or tar.gz archive ({e})") from None
    files: dict[str, bytes] = {}
    total = 0
    with tar:
        try:
            members = tar.getmembers()
        except (tarfile.TarError, OSError, EOFError) as e:
            raise AssetsError("InvalidAssets", f"{where}: the archive is damaged ({e})") from None
        for m in members:
            path = _member_path(m, where)
            if path is None:
                continue
            _check_size(path, m.size, where)
            total += m.size
            _check_total(total, where)
            f = tar.extractfile(m)
            assert f is not None  # a regular file
            files[path] = f.read()
            _check_count(len(files), where)
    return files


def _member_path(m: tarfile.TarInfo, where: str) -> str | None:
    """The path a member is served at, None for a directory; AssetsError if unsafe."""
    name = m.name
    if name.startswith("/") or "\\" in name:
        raise AssetsError(
            "InvalidAssets",
            f"{where}: {name!r} is an absolute or Windows path; archive the "
            "site's directory with relative paths (tar -C site -czf site.tgz .)",
        )
    segs = [s for s in name.split("/") if s not in ("", ".")]
    if ".." in segs:
        raise AssetsError("InvalidAssets", f"{where}: {name!r} leaves the site with '..'")
    if m.isdir():
        return None
    if not m.isfile():
        kind = "a link" if (m.issym() or m.islnk()) else "not a regular file"
        raise AssetsError(
            "InvalidAssets",
            f"{where}: {name!r} is {kind}; archive the files themselves (tar --dereference)",
        )
    if not segs:
        raise AssetsError("InvalidAssets", f"{where}: a member has an empty name")
    return "/".join(segs)


def _check_size(path: str, size: int, where: str) -> None:
    if size > MAX_FILE_BYTES:
        raise AssetsError(
            "AssetsTooLarge",
            f"{where}: {path} is {size} bytes, over the {MAX_FILE_BYTES} "
            "byte limit per file (Cloudflare's); split it or serve it from elsewhere",
        )


def _check_total(total: int, where: str) -> None:
    if total > MAX_TOTAL_BYTES:
        raise AssetsError(
            "AssetsTooLarge",
            f"{where}: over {MAX_TOTAL_BYTES} bytes of files in all, the "
            "cap while versions are archived in etcd; trim the site",
        )


def _check_count(count: int, where: str) -> None:
    if count > MAX_FILES:
        raise AssetsError(
            "AssetsTooLarge",
            f"{where}: over {MAX_FILES} files, Cloudflare's limit per "
            "version; trim the site or add patterns to spec.assets.ignore",
        )


def ignored(path: str, patterns: list[str]) -> bool:
    """Whether `.assetsignore`-style `patterns` leave `path` out: a pattern with no '/'
    matches any name along the path (`*.map`, `drafts`), one with '/' matches from the
    root (`/private/*`, `docs/draft.html`); a trailing '/' matches a directory's files.
    A leading '!' keeps what an earlier pattern left out."""
    out = False
    segs = path.split("/")
    for raw in patterns:
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        keep = pattern.startswith("!")
        pattern = pattern.removeprefix("!")
        if _matches(pattern, path, segs):
            out = not keep
    return out


def _matches(pattern: str, path: str, segs: list[str]) -> bool:
    directory = pattern.endswith("/")
    pattern = pattern.rstrip("/")
    if not pattern:
        return False
    if "/" not in pattern:
        names = segs[:-1] if directory else segs
        return any(fnmatch.fnmatchcase(s, pattern) for s in names)
    pattern = pattern.lstrip("/")
    depth = pattern.count("/") + 1
    if directory:
        return len(segs) > depth and fnmatch.fnmatchcase("/".join(segs[:depth]), pattern)
    return any(
        fnmatch.fnmatchcase("/".join(segs[:n]), pattern) for n in range(depth, len(segs) + 1)
    )


def service_config(spec: WorkerAssets, files: Mapping[str, bytes]) -> str:
    """workerd's AssetsService config (JSON, keys as wrangler's), with the text of the
    site's `_headers` and `_redirects`, as Cloudflare reads them."""
    body: dict[str, object] = {
        "html_handling": spec.html_handling.value,
        "not_found_handling": spec.not_found_handling.value,
        "run_worker_first": spec.run_worker_first or False,
    }
    for name, key in CONFIG_FILES.items():
        if name in files:
            body[key] = files[name].decode("utf-8", errors="replace")
    return json.dumps(body, sort_keys=True, separators=(",", ":"))


def compile_assets(spec: WorkerAssets, files: Mapping[str, bytes]) -> CompiledAssets:
    """The site of `files` (path -> bytes, from the source) as the bundle holds it. The
    manifest is sorted by path, so the same files and options give the same digest."""
    patterns = [*spec.ignore]
    if IGNORE_FILE in files:
        patterns += files[IGNORE_FILE].decode("utf-8", errors="replace").splitlines()
    served = {
        p: b
        for p, b in files.items()
        if p not in CONFIG_FILES and p != IGNORE_FILE and not ignored(p, patterns)
    }
    where = "spec.assets"
    _check_count(len(served), where)
    total = 0
    manifest: list[AssetFile] = []
    blobs: dict[str, bytes] = {}
    for path in sorted(served):
        content = served[path]
        _check_size(path, len(content), where)
        total += len(content)
        _check_total(total, where)
        sha = hashlib.sha256(content).hexdigest()
        blobs[sha] = content
        manifest.append(AssetFile(path=path, sha256=sha, size=len(content)))
    wire = BundleAssets(
        config=service_config(spec, files), binding=spec.binding, files=tuple(manifest)
    )
    return CompiledAssets(wire=wire, blobs=blobs)


def config_map_files(
    spec: WorkerAssets, data: Mapping[str, str | bytes], namespace: str
) -> dict[str, bytes]:
    """The files a ConfigMap's keys give: `items` (key -> path), or every key at the root."""
    ref = spec.config_map
    assert ref is not None
    where = f"ConfigMap {namespace}/{ref.name}"
    pairs = (
        [(i.key, i.path) for i in ref.items]
        if ref.items is not None
        else [(k, k) for k in sorted(data)]
    )
    files: dict[str, bytes] = {}
    for n, (key, path) in enumerate(pairs):
        if key not in data:
            raise AssetsError(
                "SourceNotFound",
                f"spec.assets.configMap.items[{n}].key: {where} has no "
                f"key {key!r}; add it to data or binaryData, or fix the key",
            )
        if path in files:
            raise AssetsError(
                "InvalidAssets",
                f"spec.assets.configMap.items[{n}].path: {path!r} is "
                "listed twice; each path may hold one file",
            )
        value = data[key]
        files[path] = value.encode() if isinstance(value, str) else value
    return files
