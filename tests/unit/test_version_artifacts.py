"""Versions in an OCI registry (pure, versions/artifacts.py): the registry flag, the
artifact's layers, the slim `source`, the rebuild from layers checked by digest, and the
size of a WorkerVersion recorded that way."""

from __future__ import annotations

import base64
import hashlib
import json
import random
from datetime import UTC, datetime

import pytest

from edgeplane.api import Worker
from edgeplane.api.version import VersionArtifact
from edgeplane.compile import Sources, compile_worker
from edgeplane.resolve.artifact import digest_of
from edgeplane.versions.archive import ArchiveError
from edgeplane.versions.artifacts import (
    ASSETS_TITLE,
    RegistryLocation,
    artifact_ref,
    file_bytes,
    parse_registry,
    rebuilt_from_layers,
    retry_delete,
    slim_source,
    tag_for,
    version_layers,
)
from edgeplane.versions.objects import version_object
from edgeplane.wire import AssetFile, BundleAssets

T0 = datetime(2026, 11, 1, tzinfo=UTC)
LOC = RegistryLocation("reg.example:5000", "edgeplane/versions")


@pytest.mark.parametrize(
    ("url", "host", "prefix"),
    [
        ("oci://reg.example/versions", "reg.example", "versions"),
        ("oci://127.0.0.1:5000/a/b-c/", "127.0.0.1:5000", "a/b-c"),
        ("oci://ghcr.io/org/edgeplane.versions", "ghcr.io", "org/edgeplane.versions"),
    ],
)
def test_parse_registry(url: str, host: str, prefix: str) -> None:
    assert parse_registry(url) == RegistryLocation(host, prefix)


@pytest.mark.parametrize(
    "url",
    [
        "reg.example/versions",  # no scheme
        "https://reg.example/versions",
        "oci://reg.example",  # no prefix: versions of all Workers would mix at the root
        "oci://Reg.example/versions",  # uppercase
        "oci://reg.example/Versions",
        "oci://reg.example/versions:tag",
        "oci://user:pw@reg.example/versions",  # credentials belong in the credentials file
    ],
)
def test_parse_registry_refuses_naming_the_flag(url: str) -> None:
    with pytest.raises(ValueError, match=r"^--version-registry: .* must be oci://"):
        parse_registry(url)


def _text(n: int, seed: int) -> str:
    """Random-ish JavaScript that gzip cannot shrink to nothing (as a real bundle)."""
    rng = random.Random(seed)
    words = ["const", "let", "return", "await", "fetch", "env", "request", "=>", "{", "}"]
    out, size = [], 0
    while size < n:
        w = rng.choice(words) + str(rng.randrange(1 << 20))
        out.append(w)
        size += len(w) + 1
    return " ".join(out)[:n]


def _worker(modules: list[dict], bindings: list[dict] | None = None) -> Worker:
    return Worker.model_validate(
        {
            "apiVersion": "edgeplane.io/v1alpha1",
            "kind": "Worker",
            "metadata": {"name": "shop", "namespace": "apps", "uid": "u-1", "generation": 3},
            "spec": {
                "compatibilityDate": "2024-09-23",
                "modules": modules,
                "bindings": bindings or [],
            },
        }
    )


WASM = bytes(range(256)) * 3


def _mixed() -> Worker:
    return _worker(
        [
            {"name": "index.js", "inline": "import t from './t.txt'; export default {}"},
            {"name": "t.txt", "type": "text", "inline": "héllo"},
            {"name": "m.wasm", "type": "wasm", "inline": base64.b64encode(WASM).decode()},
        ]
    )


def test_each_module_is_a_layer_named_by_its_recorded_sha256() -> None:
    worker = _mixed()
    bundle = compile_worker(worker, Sources())
    layers, config, assets = version_layers(bundle, {})
    assert assets is None
    assert [(t, mt) for t, mt, _ in layers] == [
        ("index.js", "application/javascript+module"),
        ("t.txt", "text/plain"),
        ("m.wasm", "application/wasm"),
    ]
    assert layers[2][2] == WASM  # raw bytes, not base64
    spec = version_object(worker, bundle, 0, T0).spec
    assert [digest_of(c) for _, _, c in layers] == [f"sha256:{m.sha256}" for m in spec.modules]
    # The version id is in the config blob: two versions never share a manifest.
    assert json.loads(config)["versionId"] == bundle.version


def _recorded(worker: Worker, assets_digest: str | None = None):  # type: ignore[no-untyped-def]
    bundle = compile_worker(worker, Sources())
    ref = artifact_ref(LOC, "apps", "shop", "sha256:" + "d" * 64)
    return bundle, version_object(
        worker, bundle, 0, T0, VersionArtifact(ref=ref, assets=assets_digest)
    )


def test_slim_source_names_layers_instead_of_inline_content() -> None:
    worker = _worker(
        [
            {"name": "index.js", "inline": "export default {}"},
            {"name": "lib.js", "configMapKeyRef": {"name": "code", "key": "lib.js"}},
        ]
    )
    ref = artifact_ref(LOC, "apps", "shop", "sha256:" + "d" * 64)
    slim = slim_source(worker.spec, ref).model_dump(mode="json", by_alias=True, exclude_none=True)
    assert slim["modules"][0] == {
        "name": "index.js",
        "type": "esModule",
        "oci": {"ref": ref, "file": "index.js"},
    }
    # Other sources are references already: kept as they were.
    assert slim["modules"][1]["configMapKeyRef"] == {"name": "code", "key": "lib.js"}
    assert ref == "reg.example:5000/edgeplane/versions/apps/shop@sha256:" + "d" * 64


def test_a_registry_version_records_no_archive_and_no_code() -> None:
    worker = _mixed()
    _, obj = _recorded(worker)
    wire = obj.to_wire()
    assert "archiveParts" not in wire["spec"]  # 0, the default
    assert wire["spec"]["artifact"]["ref"].endswith("@sha256:" + "d" * 64)
    assert "export default" not in json.dumps(wire)


def test_a_version_of_a_300kb_bundle_is_recorded_in_4kib() -> None:
    # As wrangler bundles a framework app: the main bundle, a lazy chunk, a wasm module.
    # Each further module costs about 330 bytes (its summary and its layer's name).
    modules = [
        {"name": "index.js", "inline": "import './chunk.js';" + _text(270_000, 1)},
        {"name": "chunk.js", "inline": _text(20_000, 2)},
        {"name": "q.wasm", "type": "wasm", "inline": base64.b64encode(WASM * 13).decode()},
    ]
    bindings = [{"name": f"VAR_{i}", "plainText": "x" * 20} for i in range(5)]
    worker = _worker(modules, bindings)
    bundle, obj = _recorded(worker)
    assert sum(len(m.raw()) for m in bundle.modules) >= 300_000
    size = len(json.dumps(obj.to_wire(), separators=(",", ":")))
    assert size <= 4096, size
    # Without the registry the record carries the code.
    plain = version_object(worker, bundle, 0, T0).to_wire()
    assert len(json.dumps(plain)) > 300_000


def test_a_rebuild_from_layers_gives_the_same_bytes() -> None:
    bundle, obj = _recorded(_mixed())
    layers, _, _ = version_layers(bundle, {})
    pulled = {digest_of(c): c for _, _, c in layers}
    modules, assets = rebuilt_from_layers(obj.spec, pulled)
    assert modules == list(bundle.modules) and assets is None


@pytest.mark.parametrize(
    ("damage", "error"),
    [
        ("tamper", "does not match its digest; refused"),
        ("drop", r"module t\.txt \(sha256:[0-9a-f]{64}\) is not in the artifact"),
    ],
)
def test_a_rebuild_refuses_damaged_or_missing_layers(damage: str, error: str) -> None:
    bundle, obj = _recorded(_mixed())
    layers, _, _ = version_layers(bundle, {})
    pulled = {digest_of(c): c for _, _, c in layers}
    key = digest_of(layers[1][2])
    if damage == "tamper":
        pulled[key] = b"evil"
    else:
        del pulled[key]
    with pytest.raises(ArchiveError, match=error):
        rebuilt_from_layers(obj.spec, pulled)


def _site() -> tuple[BundleAssets, dict[str, bytes]]:
    files = {"a.html": b"<p>a</p>", "b.css": b"p{}"}
    blobs = {hashlib.sha256(b).hexdigest(): b for b in files.values()}
    assets = BundleAssets(
        config="{}",
        files=tuple(
            AssetFile(path=p, sha256=hashlib.sha256(b).hexdigest(), size=len(b))
            for p, b in files.items()
        ),
    )
    return assets, blobs


def test_assets_are_layers_too_and_come_back_checked() -> None:
    worker = _mixed()
    site, blobs = _site()
    bundle = compile_worker(worker, Sources()).model_copy(update={"assets": site})
    layers, _, assets_digest = version_layers(bundle, blobs)
    titles = [t for t, _, _ in layers]
    assert ASSETS_TITLE in titles and set(blobs) <= set(titles)
    with pytest.raises(ArchiveError, match="is not held"):
        version_layers(bundle, {})
    ref = artifact_ref(LOC, "apps", "shop", "sha256:" + "d" * 64)
    obj = version_object(worker, bundle, 0, T0, VersionArtifact(ref=ref, assets=assets_digest))
    pulled = {digest_of(c): c for _, _, c in layers}
    _, assets = rebuilt_from_layers(obj.spec, pulled)
    assert assets == site and file_bytes(assets, pulled) == blobs
    pulled[f"sha256:{next(iter(blobs))}"] = b"x"
    with pytest.raises(ArchiveError, match="missing or damaged; refused"):
        file_bytes(assets, pulled)


def test_tag_names_the_whole_version() -> None:
    assert tag_for("a" * 64) == "v-" + "a" * 64


@pytest.mark.parametrize(
    ("status", "again"),
    [
        (None, True),  # no answer: unreachable, or timed out
        (500, True),
        (503, True),
        (429, True),
        (408, True),
        (401, False),  # the credentials do not grant deletes
        (403, False),
        (405, False),  # deletes disabled (distribution without storage.delete.enabled)
        (400, False),
    ],
)
def test_which_failed_manifest_deletes_are_tried_again(status: int | None, again: bool) -> None:
    assert retry_delete(status) is again
