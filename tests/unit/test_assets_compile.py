"""Static assets compiled (compile/assets.py): safe untar, ignore rules, the manifest, the
digest that makes a changed site a new version, and the errors that name the fix."""

from __future__ import annotations

import hashlib
import io
import tarfile
from typing import Any

import pytest
from pydantic import ValidationError

from edgeplane.api import Worker
from edgeplane.api.worker import WorkerAssets
from edgeplane.compile import CompileError, Sources, compile_version, compile_worker, references
from edgeplane.compile import assets as A


def tar(members: list[tuple[str, bytes | None, bytes]], gz: bool = True) -> bytes:
    """(name, content or None, type) members; type tarfile.REGTYPE/DIRTYPE/SYMTYPE/LNKTYPE."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz" if gz else "w") as t:
        for name, content, kind in members:
            info = tarfile.TarInfo(name)
            info.type = kind
            if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE):
                info.linkname = "index.html"
            info.size = len(content or b"")
            t.addfile(info, io.BytesIO(content or b"") if content is not None else None)
    return buf.getvalue()


REG, DIR, SYM, LNK = tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE

UNTAR_CASES = [
    (
        "plain files",
        [("index.html", b"<h1>", REG), ("a/b.js", b"x", REG)],
        None,
        {"index.html": b"<h1>", "a/b.js": b"x"},
    ),
    (
        "./ prefix and dirs",
        [("./", None, DIR), ("./app/", None, DIR), ("./app/x.css", b"c", REG)],
        None,
        {"app/x.css": b"c"},
    ),
    ("dotdot", [("../etc/passwd", b"x", REG)], "leaves the site with '..'", None),
    ("inner dotdot", [("a/../../x", b"x", REG)], "leaves the site", None),
    ("absolute", [("/etc/passwd", b"x", REG)], "absolute", None),
    ("backslash", [("a\\b", b"x", REG)], "absolute or Windows", None),
    ("symlink", [("index.html", b"x", REG), ("l", None, SYM)], "is a link", None),
    ("hardlink", [("index.html", b"x", REG), ("l", None, LNK)], "is a link", None),
    ("fifo", [("p", None, tarfile.FIFOTYPE)], "not a regular file", None),
]


@pytest.mark.parametrize(
    ("case", "members", "error", "files"), UNTAR_CASES, ids=[c[0] for c in UNTAR_CASES]
)
def test_untar(case: str, members: Any, error: str | None, files: Any) -> None:
    data = tar(members)
    if error is None:
        assert A.untar(data) == files
        assert A.untar(tar(members, gz=False)) == files  # plain tar too
    else:
        with pytest.raises(A.AssetsError, match=error) as e:
            A.untar(data)
        assert e.value.message.startswith("spec.assets.archive:")


def test_untar_refuses_garbage_and_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(A.AssetsError, match="not a tar"):
        A.untar(b"not a tar at all")
    monkeypatch.setattr(A, "MAX_FILE_BYTES", 3)
    with pytest.raises(A.AssetsError, match="over the 3 byte limit per file") as e:
        A.untar(tar([("big.bin", b"1234", REG)]))
    assert e.value.reason == "AssetsTooLarge"
    monkeypatch.setattr(A, "MAX_FILE_BYTES", 100)
    monkeypatch.setattr(A, "MAX_FILES", 2)
    with pytest.raises(A.AssetsError, match="over 2 files"):
        A.untar(tar([(f"{i}.txt", b"x", REG) for i in range(3)]))


IGNORE_CASES = [
    ("app/main.js.map", ["*.map"], True),
    ("app/main.js", ["*.map"], False),
    ("drafts/a.html", ["drafts/"], True),
    ("x/drafts/a.html", ["drafts/"], True),
    ("drafts", ["drafts/"], False),  # a file named like the directory stays
    ("private/key.txt", ["/private/*"], True),
    ("public/private/key.txt", ["/private/*"], False),
    ("docs/draft.html", ["docs/draft.html"], True),
    ("a.map", ["*.map", "!a.map"], False),
    ("b.map", ["*.map", "!a.map"], True),
    ("a.txt", ["# *.txt", ""], False),
    ("node_modules/x/y.js", ["node_modules"], True),
]


@pytest.mark.parametrize(("path", "patterns", "out"), IGNORE_CASES)
def test_ignore(path: str, patterns: list[str], out: bool) -> None:
    assert A.ignored(path, patterns) is out


def spec(**kw: Any) -> WorkerAssets:
    return WorkerAssets.model_validate({"configMap": {"name": "site"}, **kw})


SITE = {"index.html": b"<html>", "logo.png": b"\x89PNG", "app.js.map": b"{}"}


def test_manifest_sorted_blobs_by_sha_and_ignore_applied() -> None:
    out = A.compile_assets(spec(ignore=["*.map"]), SITE)
    assert [f.path for f in out.wire.files] == ["index.html", "logo.png"]
    png = out.wire.files[1]
    assert png.sha256 == hashlib.sha256(b"\x89PNG").hexdigest() and png.size == 4
    assert out.blobs == {f.sha256: SITE[f.path] for f in out.wire.files}


def test_config_files_and_assetsignore_are_read_not_served() -> None:
    files = {**SITE, "_headers": b"/*\n  X-Frame-Options: DENY\n", ".assetsignore": b"*.map\n"}
    out = A.compile_assets(spec(), files)
    assert [f.path for f in out.wire.files] == ["index.html", "logo.png"]
    assert "X-Frame-Options" in out.wire.config


DIGEST_CASES = [
    ("same files, other order", dict(reversed(list(SITE.items()))), {}, True),
    ("one byte changed", {**SITE, "logo.png": b"\x89PNG!"}, {}, False),
    (
        "a file renamed",
        {**{k: v for k, v in SITE.items() if k != "logo.png"}, "l.png": b"\x89PNG"},
        {},
        False,
    ),
    ("an option changed", SITE, {"notFoundHandling": "single-page-application"}, False),
    ("runWorkerFirst changed", SITE, {"runWorkerFirst": ["/api/*"]}, False),
    ("binding changed", SITE, {"binding": "ASSETS"}, False),
]


@pytest.mark.parametrize(
    ("case", "files", "opts", "same"), DIGEST_CASES, ids=[c[0] for c in DIGEST_CASES]
)
def test_digest_is_stable_and_changes_with_the_site(
    case: str, files: dict[str, bytes], opts: dict[str, Any], same: bool
) -> None:
    base = A.compile_assets(spec(), SITE).wire.digest()
    assert (A.compile_assets(spec(**opts), files).wire.digest() == base) is same


def test_service_config_is_workerds_json() -> None:
    s = spec(
        notFoundHandling="single-page-application",
        runWorkerFirst=["/api/*"],
        htmlHandling="drop-trailing-slash",
    )
    assert A.service_config(s, {}) == (
        '{"html_handling":"drop-trailing-slash","not_found_handling":"single-page-application",'
        '"run_worker_first":["/api/*"]}'
    )


SPEC_ERRORS = [
    (
        {"configMap": {"name": "s"}, "archive": {"url": "https://x/a.tgz", "sha256": "0" * 64}},
        "assets: set exactly one source",
    ),
    ({}, "assets: set exactly one source"),
    ({"configMap": {"name": "s"}, "runWorkerFirst": ["api/*"]}, "should match pattern"),
    ({"configMap": {"name": "s"}, "runWorkerFirst": True}, "valid list"),
    ({"configMap": {"name": "s"}, "notFoundHandling": "spa"}, "notFoundHandling"),
    ({"configMap": {"name": "s", "items": [{"key": "a", "path": "../a"}]}}, "'.' or '..'"),
    ({"configMap": {"name": "s", "items": [{"key": "a", "path": "/a"}]}}, "path"),
    ({"archive": {"url": "http://x/a.tgz", "sha256": "0" * 64}}, "https"),
    ({"configMap": {"name": "s"}, "binding": "not-js"}, "binding"),
]


@pytest.mark.parametrize(("body", "error"), SPEC_ERRORS)
def test_spec_errors_name_the_field(body: dict[str, Any], error: str) -> None:
    with pytest.raises(ValidationError, match=error):
        WorkerAssets.model_validate(body)


def worker(assets: dict[str, Any], bindings: list[Any] | None = None) -> Worker:
    return Worker.model_validate(
        {
            "metadata": {"name": "spa", "namespace": "web", "uid": "u"},
            "spec": {
                "compatibilityDate": "2026-01-01",
                "assets": assets,
                "bindings": bindings or [],
                "modules": [{"name": "i.js", "inline": "export default {fetch(){}}"}],
            },
        }
    )


def test_assets_binding_must_not_clash_with_a_binding() -> None:
    with pytest.raises(ValidationError, match=r"assets\.binding: 'X' is also a name"):
        worker({"configMap": {"name": "s"}, "binding": "X"}, [{"name": "X", "plainText": "v"}])


CM = {"index": "<html>", "logo": b"\x89PNG"}
ITEMS = [{"key": "index", "path": "index.html"}, {"key": "logo", "path": "img/logo.png"}]


def test_worker_with_config_map_assets_compiles_to_a_new_version() -> None:
    w = worker({"configMap": {"name": "site", "items": ITEMS}, "binding": "ASSETS"})
    assert references(w).config_maps == {"site"}
    bundle, blobs = compile_version(w, Sources(config_maps={"site": CM}))
    assert bundle.assets is not None and bundle.assets.binding == "ASSETS"
    assert [f.path for f in bundle.assets.files] == ["img/logo.png", "index.html"]
    assert set(blobs) == bundle.assets.blobs()
    changed = compile_worker(w, Sources(config_maps={"site": {**CM, "logo": b"\x89PNG2"}}))
    assert changed.version != bundle.version
    # A Worker without assets keeps the id it had before assets existed (no "assets" key).
    plain = Worker.model_validate(
        {
            **w.model_dump(by_alias=True, exclude_none=True),
            "spec": {**w.spec.model_dump(by_alias=True, exclude_none=True, exclude={"assets"})},
        }
    )
    assert b'"assets"' not in compile_worker(plain, Sources()).canonical()


COMPILE_ERRORS = [
    (
        {"configMap": {"name": "site"}},
        Sources(),
        "SourceNotFound",
        "spec.assets.configMap: ConfigMap web/site not found; create it",
    ),
    (
        {"configMap": {"name": "site", "items": [{"key": "nope", "path": "a"}]}},
        Sources(config_maps={"site": CM}),
        "SourceNotFound",
        "spec.assets.configMap.items[0].key: ConfigMap web/site has no key 'nope'",
    ),
    (
        {
            "configMap": {
                "name": "site",
                "items": [{"key": "index", "path": "a"}, {"key": "logo", "path": "a"}],
            }
        },
        Sources(config_maps={"site": CM}),
        "InvalidAssets",
        "spec.assets.configMap.items[1].path: 'a' is listed twice",
    ),
    (
        {"archive": {"url": "https://h/s.tgz", "sha256": "0" * 64}},
        Sources(),
        "SourceNotFound",
        "spec.assets.archive.url: https://h/s.tgz could not be downloaded",
    ),
    (
        {"archive": {"url": "https://h/s.tgz", "sha256": "0" * 64}},
        Sources(urls={"0" * 64: b"other"}),
        "SourceChecksumMismatch",
        "spec.assets.archive.sha256",
    ),
]


@pytest.mark.parametrize(("assets", "sources", "reason", "message"), COMPILE_ERRORS)
def test_compile_errors(
    assets: dict[str, Any], sources: Sources, reason: str, message: str
) -> None:
    with pytest.raises(CompileError) as e:
        compile_worker(worker(assets), sources)
    assert e.value.reason == reason and e.value.message.startswith(message), e.value.message


def test_archive_assets_compile() -> None:
    data = tar([("./index.html", b"<html>", REG), ("./logo.png", b"\x89PNG", REG)])
    sha = hashlib.sha256(data).hexdigest()
    w = worker({"archive": {"url": "https://h/s.tgz", "sha256": sha}, "ignore": ["*.png"]})
    assert references(w).urls == {("https://h/s.tgz", sha)}
    bundle = compile_worker(w, Sources(urls={sha: data}))
    assert bundle.assets is not None
    assert [f.path for f in bundle.assets.files] == ["index.html"]
