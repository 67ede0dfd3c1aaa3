"""Static assets at a location, without servers: the cell config's AssetsService, what
restarts an own cell (cell_identity), the blob store and the sites on a tmp dir, and the
operator's pool of files."""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path, PurePath

import pytest

from edgeplane.api.worker import WorkerAssets
from edgeplane.compile.assets import compile_assets
from edgeplane.distribute.client import AgentClient
from edgeplane.edge import render
from edgeplane.edge.assets import Sites, site_of
from edgeplane.edge.blobs import BlobError, Blobs
from edgeplane.wire import Bundle, BundleBinding, BundleModule, Deployment, ModuleType, blobs_of

FILES = {"index.html": b"<h1>", "logo.png": b"\x89PNG"}


def site(files: dict[str, bytes] = FILES, **opts: object) -> tuple[object, dict[str, bytes]]:
    spec = WorkerAssets.model_validate({"configMap": {"name": "s"}, **opts})
    out = compile_assets(spec, files)
    return out.wire, dict(out.blobs)


def deployment(
    files: dict[str, bytes] | None = FILES, js: str = "export default {}", do: bool = False,
    **opts: object,
) -> Deployment:
    bindings = (BundleBinding(name="C", durableObjectClass="C"),) if do else ()
    b = Bundle(
        worker="web.spa",
        compatibilityDate="2025-01-01",
        mainModule="i.js",
        modules=(BundleModule(name="i.js", type=ModuleType.ES_MODULE, content=js),),
        bindings=bindings,
        assets=site(files, **opts)[0] if files is not None else None,  # type: ignore[arg-type]
    ).with_version()
    return Deployment(worker="web.spa", primary=b.version or "", versions=(b,))


PATHS = render.Paths(PurePath("/s/do"), PurePath("/s/kv"), PurePath("/s/code"),
                     PurePath("/s/front"), PurePath("/s/assets/workers"))


def test_a_cell_with_assets_has_the_assets_service_routing_to_user() -> None:
    d = deployment(notFoundHandling="single-page-application")
    assert render.needs_own_cell(d)
    text = render.cell_config(PATHS, 1234, "k" * 32, d)
    assert 'assets = (path = "/s/assets/workers/web.spa"' in text
    assert 'entrypoint = "User", props = (json = "{\\"worker\\": \\"web.spa\\"}")' in text
    assert '(name = "ASSETS_FILES", service = (name = "edgeplane:assets", entrypoint = ' \
        '"AssetWorker"))' in text
    assert "single-page-application" in text
    assert "w:web.spa@" not in text  # no static version services: the code is loaded


IDENTITY = [
    # (what changes, same cell config?)
    ("a file", deployment({**FILES, "logo.png": b"other"}), True),
    ("the code", deployment(js="export default { fetch() {} }"), True),
    ("an option", deployment(notFoundHandling="404-page"), False),
    ("assets removed", deployment(None), False),
    ("a Durable Object class bound", deployment(do=True), False),
]


@pytest.mark.parametrize(("case", "other", "same"), IDENTITY, ids=[c[0] for c in IDENTITY])
def test_what_restarts_an_own_cell(case: str, other: Deployment, same: bool) -> None:
    assert (render.cell_identity(deployment()) == render.cell_identity(other)) is same
    # A Durable Object Worker's cell holds its versions: every deploy is a new config.
    assert render.cell_identity(deployment(do=True)) != render.cell_identity(
        deployment({**FILES, "x": b"y"}, do=True)
    )


def test_code_spec_names_the_assets_binding_only_with_assets() -> None:
    assert render.code_spec(deployment(binding="ASSETS").versions[0])["assets"] == {
        "binding": "ASSETS"
    }
    assert "assets" not in render.code_spec(deployment(None).versions[0])


def test_blobs_verified_atomic_epoch_mtime_and_collected(tmp_path: Path) -> None:
    blobs = Blobs(tmp_path, grace=3600)
    sha = hashlib.sha256(b"x").hexdigest()
    assert blobs.missing([sha, sha]) == [sha]
    with pytest.raises(BlobError, match="body: its sha256 is"):
        blobs.put(sha, b"y")
    with pytest.raises(BlobError, match="sha256: 'ABC' is not 64"):
        blobs.put("ABC", b"x")
    assert blobs.put(sha, b"x") is True and blobs.put(sha, b"x") is False
    st = blobs.path(sha).stat()
    assert st.st_mtime == 0 and st.st_mode & 0o777 == 0o600
    assert blobs.collect(set()) == []  # within its grace: kept for the deployment to come
    blobs.grace = 0
    assert blobs.collect({sha}) == []  # referenced
    assert blobs.collect(set()) == [sha] and blobs.missing([sha]) == [sha]


def test_a_sweep_while_blobs_arrive_does_not_fail(tmp_path: Path) -> None:
    """A sweep lists the temp files of puts under way; one renamed into place between the
    listing and its stat is no error (it failed a whole batch with ENOENT at 10,000
    Workers: the sweep runs after each batch, while other pushes send blobs)."""
    blobs = Blobs(tmp_path)
    contents = [f"blob {i}".encode() for i in range(800)]

    def arrive() -> None:
        for c in contents:
            blobs.put(hashlib.sha256(c).hexdigest(), c)

    arriving = threading.Thread(target=arrive)
    arriving.start()
    sweeps = 0
    try:
        while arriving.is_alive():
            assert blobs.collect(set()) == []  # within their grace: all kept
            sweeps += 1
    finally:
        arriving.join()
    assert sweeps > 1
    assert blobs.missing(hashlib.sha256(c).hexdigest() for c in contents) == []


def test_sites_are_hard_links_swapped_by_one_rename_and_collected(tmp_path: Path) -> None:
    blobs = Blobs(tmp_path, grace=0)
    sites = Sites(tmp_path, blobs)
    one, files = site()
    with pytest.raises(BlobError, match="is not here"):
        sites.build(one)  # type: ignore[arg-type]
    assert not list(sites.sites.iterdir())  # nothing half-made
    for sha, content in files.items():
        blobs.put(sha, content)
    digest = sites.build(one)  # type: ignore[arg-type]
    sites.point("web.spa", digest)
    logo = sites.link("web.spa") / "logo.png"
    assert logo.read_bytes() == b"\x89PNG"
    assert os.stat(logo).st_ino == blobs.path(hashlib.sha256(b"\x89PNG").hexdigest()).stat().st_ino
    two, files2 = site({"index.html": b"<h2>"})
    for sha, content in files2.items():
        blobs.put(sha, content)
    sites.point("web.spa", sites.build(two))  # type: ignore[arg-type]
    assert not (sites.link("web.spa") / "logo.png").exists()
    assert sites.collect(["web.spa"]) == [digest]
    assert sites.collect([]) == [two.digest()]  # type: ignore[attr-defined]
    assert not sites.link("web.spa").exists()


def test_deployment_blobs_and_site() -> None:
    d = deployment()
    assert site_of(d) == d.versions[0].assets
    assert blobs_of([d, None]) == {hashlib.sha256(b).hexdigest() for b in FILES.values()}


def test_the_operator_holds_each_workers_last_two_sites() -> None:
    client = AgentClient()
    sites = [{f"v{i}": f"{i}".encode()} for i in range(3)]
    for files in sites:
        client.hold_blobs("web.spa", {hashlib.sha256(b).hexdigest(): b for b in files.values()})
    held = set(client.blobs.values())
    assert held == {b"1", b"2"}
    client.hold_blobs("web.other", {hashlib.sha256(b"o").hexdigest(): b"o",
                                    hashlib.sha256(b"2").hexdigest(): b"2"})
    assert set(client.blobs.values()) == {b"1", b"2", b"o"}
    client.drop_blobs("web.spa")  # deleted: its files go, but one another Worker holds
    assert set(client.blobs.values()) == {b"2", b"o"}
