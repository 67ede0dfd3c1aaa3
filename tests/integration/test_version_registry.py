"""Versions kept in the real OCI registry (TLS, htpasswd) with the real apiserver
(versions/registry.py through VersionStore): 60 versions recorded, one 50 back rebuilt
byte for byte by a store that never saw it, pruned versions' manifests deleted (later,
if the registry was down), a tampered layer on the registry's disk refused, credentials
kept out of errors and read again when their file is rotated."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from edgeplane.api import Worker, WorkerVersion
from edgeplane.compile import CompileError, Sources, compile_worker
from edgeplane.kube.auth import async_api_client
from edgeplane.kube.client import Kube
from edgeplane.localstack.cluster import Cluster
from edgeplane.localstack.registry import Registry
from edgeplane.resolve.policy import UrlSettings
from edgeplane.resolve.sources import Resolver
from edgeplane.versions.artifacts import RegistrySettings
from edgeplane.versions.registry import VersionRegistry
from edgeplane.versions.store import PLURAL, VersionStore
from edgeplane.wire import AssetFile, BundleAssets

pytestmark = pytest.mark.integration

LIB = "export const lib = " + json.dumps("x" * 50_000) + ";\n"


def _apply(cluster: Cluster, namespace: str, i: int) -> Worker:
    doc = {
        "apiVersion": "edgeplane.io/v1alpha1", "kind": "Worker",
        "metadata": {"name": "shop", "namespace": namespace},
        "spec": {"compatibilityDate": "2025-01-01", "mainModule": "index.js", "modules": [
            {"name": "index.js",
             "inline": f"import {{lib}} from './lib.js'; export default {{ v: {i} }};"},
            {"name": "lib.js", "inline": LIB},  # the same in every version: one blob
            {"name": "n.bin", "type": "data",
             "inline": base64.b64encode(bytes([i, 0, 255])).decode()},
        ]},
    }
    out = cluster.kubectl("apply", "-o", "json", "-f", "-", input=json.dumps(doc))
    return Worker.model_validate(json.loads(out.stdout))


def _version_registry(
    registry: Registry, tmp: Path, password: str | None = None
) -> VersionRegistry:
    creds = tmp / "registry-auth.json"
    creds.write_text(registry.dockerconfigjson(password))
    return VersionRegistry.configure(
        RegistrySettings(f"oci://{registry.host}/edgeplane/versions", str(creds), str(registry.ca))
    )


@asynccontextmanager
async def _store(
    registry: Registry, tmp: Path, retained: int, password: str | None = None
) -> AsyncIterator[VersionStore]:
    """A VersionStore on the real apiserver keeping versions in the real registry, with
    credentials from `tmp`/registry-auth.json (`password`: another password in it)."""
    api = await async_api_client()
    kube = Kube(api)
    vr = _version_registry(registry, tmp, password)
    try:
        yield VersionStore(kube, Resolver(kube, UrlSettings()), retained=retained, registry=vr)
    finally:
        await vr.close()
        await api.close()


def _fresh(store: VersionStore) -> VersionStore:
    """Another store on the same apiserver and registry, that has seen nothing."""
    return VersionStore(store.kube, store.resolver, retained=store.retained,
                        registry=store.registry)


def _blob_path(registry: Registry, digest: str) -> Path:
    """Where the registry's filesystem storage keeps a blob."""
    hex_ = digest.removeprefix("sha256:")
    return registry.state_dir / "data/docker/registry/v2/blobs/sha256" / hex_[:2] / hex_ / "data"


def _blob(registry: Registry, bundle, module: str) -> Path:  # type: ignore[no-untyped-def]
    m = next(m for m in bundle.modules if m.name == module)
    return _blob_path(registry, "sha256:" + hashlib.sha256(m.raw()).hexdigest())


def _garbage_collect(registry: Registry) -> None:
    """distribution's GC, which runs with the registry stopped."""
    registry.stop()
    try:
        subprocess.run(
            [registry.bin_dir / "registry", "garbage-collect", registry.state_dir / "config.yml"],
            check=True, capture_output=True, timeout=120,
        )
    finally:
        registry.start()


def _tamper(registry: Registry, digest: str) -> None:
    """Flip a byte of a blob on the registry's own disk (same size: served as it is)."""
    path = _blob_path(registry, digest)
    data = bytearray(path.read_bytes())
    data[0] ^= 0x01
    path.write_bytes(bytes(data))


async def test_sixty_versions_in_the_registry_and_one_fifty_back_rebuilt(
    cluster: Cluster, crds_installed: list[str], namespace: str, registry: Registry,
    tmp_path: Path,
) -> None:
    bundles = []
    async with _store(registry, tmp_path, retained=55) as store:
        for i in range(60):
            worker = _apply(cluster, namespace, i)
            bundle = compile_worker(worker, Sources())
            await store.record(worker, bundle, keep=set(), first=i == 0)
            bundles.append(bundle)
        objs = {o["spec"]["versionId"]: o for o in await store.kube.list(PLURAL, namespace, "")}
        assert len(objs) == 55
        refs = []
        for b in bundles:
            obj = objs.get(b.version)
            if obj is not None:
                # Only digests in etcd: no ConfigMap archive, no code in the record.
                assert "archiveParts" not in obj["spec"] and "export default" not in json.dumps(obj)
                # As stored, managedFields included (was ~3 KB with defaults and per-field
                # managedFields); each inline module names the artifact again in `source`.
                stored = len(json.dumps(obj, separators=(",", ":")))
                assert stored <= 2300, stored
                refs.append(obj["spec"]["artifact"]["ref"])
        cms = cluster.kubectl("get", "configmaps", "-n", namespace, "-l", "edgeplane.io/worker",
                              "-o", "name").stdout
        assert cms.strip() == ""
        # The five oldest were pruned and so were their manifests; the rest are there.
        pruned = [
            f"{registry.host}/edgeplane/versions/{namespace}/shop@{_digest_for(b)}"
            for b in bundles[:5]
        ]
        assert [registry.manifest_status(r) for r in pruned] == [404] * 5
        assert {registry.manifest_status(r) for r in refs} == {200}
        # The registry's own GC (offline for distribution, as the README says) frees the
        # blobs only pruned versions used, and keeps the retained ones' and the shared lib.
        gone, kept, lib = (_blob(registry, bundles[0], "index.js"),
                           _blob(registry, bundles[5], "index.js"),
                           _blob(registry, bundles[0], "lib.js"))
        assert gone.exists() and kept.exists()
        _garbage_collect(registry)
        assert not gone.exists() and kept.exists() and lib.exists()

        # The 50th-newest, rebuilt by a store that never saw it: from the registry only.
        old = bundles[-50]
        got = await _fresh(store).bundle(worker, old.version or "")
        assert got.version == old.version
        assert [m.raw() for m in got.modules] == [m.raw() for m in old.modules]

        # A layer changed on the registry's disk is refused, naming the reference.
        victim = bundles[-40]
        index_digest = next(
            f"sha256:{m['sha256']}" for m in objs[victim.version]["spec"]["modules"]
            if m["name"] == "index.js"
        )
        _tamper(registry, index_digest)
        with pytest.raises(CompileError) as e:
            await _fresh(store).bundle(worker, victim.version or "")
        assert e.value.reason == "ArtifactDigestMismatch"
        assert "does not match its digest; refused" in e.value.message
        assert f"{registry.host}/edgeplane/versions/{namespace}/shop@sha256:" in e.value.message


def _digest_for(bundle) -> str:  # type: ignore[no-untyped-def]
    """The manifest digest a version's artifact has (the push is deterministic)."""
    from edgeplane.resolve.artifact import digest_of, module_manifest
    from edgeplane.versions.artifacts import version_layers

    layers, config, _ = version_layers(bundle, {})
    return digest_of(module_manifest(layers, config, {}))


async def test_registry_credentials_never_appear_in_errors(
    cluster: Cluster, crds_installed: list[str], namespace: str, registry: Registry,
    tmp_path: Path,
) -> None:
    wrong = registry.password + "-wrong"
    async with _store(registry, tmp_path, retained=5, password=wrong) as store:
        worker = _apply(cluster, namespace, 1)
        bundle = compile_worker(worker, Sources())
        with pytest.raises(CompileError) as e:
            await store.record(worker, bundle, keep=set(), first=True)
        assert e.value.reason == "ArtifactUnavailable" and e.value.retry
        assert "HTTP 401" in e.value.message and "--version-registry-credentials" in e.value.message
        for secret in (wrong, registry.password, base64.b64encode(wrong.encode()).decode()):
            assert secret not in e.value.message and secret not in repr(e.value)
        # Nothing was recorded: the version is not half there.
        listed = cluster.kubectl("get", "workerversions", "-n", namespace, "-o", "name")
        assert listed.stdout.strip() == ""


async def test_rotated_credentials_are_read_again_from_the_file(
    cluster: Cluster, crds_installed: list[str], namespace: str, registry: Registry,
    tmp_path: Path,
) -> None:
    """The credentials file is a mounted Secret: rotating it changes the file, not the
    operator's flags, and the next push uses what the file says now."""
    async with _store(registry, tmp_path, retained=5, password="revoked") as store:
        worker = _apply(cluster, namespace, 1)
        bundle = compile_worker(worker, Sources())
        with pytest.raises(CompileError, match="HTTP 401"):
            await store.record(worker, bundle, keep=set(), first=True)
        # As the kubelet rotates a Secret volume: a new file swapped in at the same path.
        creds = tmp_path / "registry-auth.json"
        swap = tmp_path / "registry-auth.json.new"
        swap.write_text(registry.dockerconfigjson())
        os.replace(swap, creds)
        await store.record(worker, bundle, keep=set(), first=True)
        (obj,) = await store.list(namespace, "shop")
        assert registry.manifest_status(obj["spec"]["artifact"]["ref"]) == 200
        # And rewritten in place (the same file): a wrong password is used at once too.
        creds.write_text(registry.dockerconfigjson("revoked-again"))
        assert store.registry is not None
        with pytest.raises(CompileError, match="HTTP 401"):
            await store.registry.push(namespace, "shop", bundle, {})


async def test_a_manifest_the_registry_could_not_delete_is_pruned_later(
    cluster: Cluster, crds_installed: list[str], namespace: str, registry: Registry,
    tmp_path: Path,
) -> None:
    """Registry down during a prune: the version over the count stays, naming its
    manifest, and goes with its manifest at the next prune once the registry is back."""
    async with _store(registry, tmp_path, retained=2) as store:
        bundles = []
        for i in range(3):
            worker = _apply(cluster, namespace, i)
            bundle = compile_worker(worker, Sources())
            # The oldest is in use (say pinned) while the others are recorded.
            pinned = {bundles[0].version or ""} if bundles else set()
            await store.record(worker, bundle, keep=pinned, first=i == 0)
            bundles.append(bundle)
        oldest = WorkerVersion.name_for("shop", bundles[0].version or "")
        ref = (await store.kube.get(PLURAL, namespace, oldest) or {})["spec"]["artifact"]["ref"]
        registry.stop()
        try:
            await store.prune(worker, keep=set())  # the pin is gone; the registry too
        finally:
            registry.start()
        assert await store.kube.get(PLURAL, namespace, oldest) is not None
        assert registry.manifest_status(ref) == 200
        # A store that restarted knows it from its LIST and finishes the job.
        fresh = _fresh(store)
        await fresh.prune(worker, keep=set())
        assert await store.kube.get(PLURAL, namespace, oldest) is None
        assert registry.manifest_status(ref) == 404
        assert len(await store.list(namespace, "shop")) == 2


async def test_a_deleted_workers_artifacts_are_deleted(
    cluster: Cluster, crds_installed: list[str], namespace: str, registry: Registry,
    tmp_path: Path,
) -> None:
    async with _store(registry, tmp_path, retained=10) as store:
        for i in range(3):
            worker = _apply(cluster, namespace, i)
            await store.record(worker, compile_worker(worker, Sources()), keep=set(), first=i == 0)
        refs = [o["spec"]["artifact"]["ref"] for o in await store.list(namespace, "shop")]
        assert len(refs) == 3 and {registry.manifest_status(r) for r in refs} == {200}
        # As the Worker's finalizer does before it lets the Worker (and its versions) go.
        await store.drop_artifacts(namespace, "shop")
        assert {registry.manifest_status(r) for r in refs} == {404}


async def test_a_version_with_assets_comes_back_with_its_files(
    cluster: Cluster, crds_installed: list[str], namespace: str, registry: Registry,
    tmp_path: Path,
) -> None:
    """The assets' description and files are layers too: a store that never saw the
    version gets them back from the registry, checked, and holds the files for pushes."""
    files = {"index.html": b"<h1>shop</h1>", "app.css": b"h1{color:red}"}
    blobs = {hashlib.sha256(b).hexdigest(): b for b in files.values()}
    site = BundleAssets(config="{}", files=tuple(
        AssetFile(path=p, sha256=hashlib.sha256(b).hexdigest(), size=len(b))
        for p, b in files.items()
    ))
    async with _store(registry, tmp_path, retained=10) as store:
        fresh = _fresh(store)
        worker = _apply(cluster, namespace, 9)
        bundle = compile_worker(worker, Sources()).model_copy(update={"assets": site})
        bundle = bundle.with_version()
        store.pool.hold_blobs(worker.full_name, blobs)
        await store.record(worker, bundle, keep=set(), first=True)
        got = await fresh.bundle(worker, bundle.version or "")
        assert got.version == bundle.version and got.assets == site
        assert fresh.pool.blobs == blobs
