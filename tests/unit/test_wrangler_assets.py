"""`edgeplane import` of wrangler's [assets]: a ConfigMap with the directory's files and
spec.assets with Cloudflare's options; assets-only projects; a directory too large for a
ConfigMap refused with the archive route; the Worker it writes compiles to the same site."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from edgeplane.api import Worker
from edgeplane.compile import Sources, compile_version
from edgeplane.wrangler.errors import WranglerImportError
from edgeplane.wrangler.project import convert

PNG = b"\x89PNG\r\n\x1a\n\x00\x01"


def project(tmp_path: Path, config: str, main: bool = True) -> Path:
    (tmp_path / "wrangler.toml").write_text(config)
    if main:
        (tmp_path / "src").mkdir()
        (tmp_path / "src" / "index.js").write_text(
            "export default { fetch(r, env) { return env.ASSETS.fetch(r); } };\n"
        )
    public = tmp_path / "public"
    (public / "img").mkdir(parents=True)
    (public / "index.html").write_text("<h1>hi</h1>")
    (public / "img" / "logo.png").write_bytes(PNG)
    (public / "app.js.map").write_text("{}")
    (public / ".assetsignore").write_text("*.map\n")
    return tmp_path


BASE = 'name = "site"\ncompatibility_date = "2025-01-01"\n'
WITH_MAIN = BASE + 'main = "src/index.js"\nno_bundle = true\n'
ASSETS = """
[assets]
directory = "./public"
binding = "ASSETS"
html_handling = "drop-trailing-slash"
not_found_handling = "single-page-application"
run_worker_first = ["/api/*"]
"""


def docs_by_kind(docs: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for d in docs:
        out.setdefault(d["kind"], []).append(d)
    return out


def test_assets_map_to_a_config_map_and_spec_assets(tmp_path: Path) -> None:
    result = convert(project(tmp_path, WITH_MAIN + ASSETS), opts=_opts())
    kinds = docs_by_kind(result.docs)
    worker = kinds["Worker"][0]
    assets = worker["spec"]["assets"]
    assert assets["binding"] == "ASSETS"
    assert assets["htmlHandling"] == "drop-trailing-slash"
    assert assets["notFoundHandling"] == "single-page-application"
    assert assets["runWorkerFirst"] == ["/api/*"]
    cm = next(c for c in kinds["ConfigMap"] if c["metadata"]["name"] == "site-assets")
    paths = {i["path"]: i["key"] for i in assets["configMap"]["items"]}
    assert set(paths) == {"index.html", "img/logo.png"}  # .assetsignore applied
    assert base64.b64decode(cm["binaryData"][paths["img/logo.png"]]) == PNG
    assert "assets" not in result.unsupported.get("site", [])
    # What the operator compiles from these manifests: the same two files.
    compiled = compile_worker_of(worker, kinds["ConfigMap"])
    assert {f.path for f in compiled} == {"index.html", "img/logo.png"}


def test_an_assets_only_project_gets_a_404_worker(tmp_path: Path) -> None:
    result = convert(project(tmp_path, BASE + '[assets]\ndirectory = "public"\n', main=False),
                     opts=_opts())
    kinds = docs_by_kind(result.docs)
    worker = kinds["Worker"][0]
    assert worker["spec"]["assets"]["configMap"]["name"] == "site-assets"
    module = worker["spec"]["modules"][0]
    assert module["name"] == "index.js"
    assert compile_worker_of(worker, kinds["ConfigMap"])  # it compiles, with its site


def test_a_directory_over_one_config_map_is_refused_with_the_archive_route(
    tmp_path: Path,
) -> None:
    root = project(tmp_path, WITH_MAIN + ASSETS)
    (root / "public" / "big.bin").write_bytes(b"\x00" * 800_000)
    with pytest.raises(WranglerImportError, match=r"set spec\.assets\.archive \{url, sha256\}"):
        convert(root, opts=_opts())


def _opts() -> Any:
    from edgeplane.wrangler.manifests import Options

    return Options(namespace="web")


def compile_worker_of(doc: dict[str, Any], maps: list[dict[str, Any]]) -> Any:
    """The operator's view: the Worker compiled with its ConfigMaps as sources."""
    worker = Worker.model_validate({**doc, "metadata": {**doc["metadata"], "uid": "u"}})
    sources = Sources(config_maps={
        cm["metadata"]["name"]: {
            **cm.get("data", {}),
            **{k: base64.b64decode(v) for k, v in cm.get("binaryData", {}).items()},
        }
        for cm in maps
    })
    bundle, _ = compile_version(worker, sources)
    assert bundle.assets is not None
    return bundle.assets.files


def test_assets_without_a_directory_are_listed_as_not_imported(tmp_path: Path) -> None:
    """A framework's build plugin (Vite) fills the directory in: without it, nothing to map."""
    config = WITH_MAIN + '[assets]\nnot_found_handling = "single-page-application"\n'
    result = convert(project(tmp_path, config), opts=_opts())
    assert result.unsupported["site"] == ["assets"]
    assert "assets" not in docs_by_kind(result.docs)["Worker"][0]["spec"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [(True, ["/*"]), (False, None), (["/api/*", "!/api/docs"], ["/api/*", "!/api/docs"])],
)
def test_run_worker_first_maps_to_patterns(value: Any, expected: Any) -> None:
    from edgeplane.wrangler.assets import assets_docs

    _, spec = assets_docs("w", {"directory": "p", "run_worker_first": value}, {}, None)
    assert spec.get("runWorkerFirst") == expected
