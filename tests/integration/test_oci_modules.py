"""oci modules against a real registry (the distribution registry, TLS and htpasswd): a
pushed artifact resolves to the same bytes; a digest the registry does not hold, a
tampered blob on its disk, and a wrong password each fail with a clear error (never the
password); with the registry stopped the module is ArtifactUnavailable naming the ref and
retried, and resolves once it is back. The pull secret reaches the Resolver the way the
Secret watch delivers it (`Resolver.seen`); no apiserver is needed."""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from edgeplane.api import Worker
from edgeplane.compile import CompileError, Sources, compile_worker
from edgeplane.localstack.registry import Registry
from edgeplane.resolve.artifact import Credentials
from edgeplane.resolve.oci import OciClient
from edgeplane.resolve.policy import UrlSettings
from edgeplane.resolve.sources import Resolver

pytestmark = pytest.mark.integration

INDEX = b"export default { fetch() { return new Response('from oci'); } };\n"
LIB = b"export const answer = 42;\n"
NS = "t"


def settings(registry: Registry) -> UrlSettings:
    return UrlSettings(ca_bundle=str(registry.ca), allowed_networks=("127.0.0.1/32",))


async def push(registry: Registry, repo: str, layers: dict[str, bytes]) -> str:
    """`host/repo@digest` of a new artifact with one layer per (title, content)."""
    client = OciClient(settings(registry))
    try:
        digest = await client.push(
            registry.host, repo, "v1",
            [(name, "application/javascript", body) for name, body in layers.items()],
            b"{}", Credentials(registry.user, registry.password),
        )
    finally:
        await client.close()
    return f"{registry.host}/{repo}@{digest}"


def pull_secret(name: str, config: str) -> dict[str, Any]:
    return {
        "metadata": {"namespace": NS, "name": name, "resourceVersion": "1"},
        "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": base64.b64encode(config.encode()).decode()},
    }


def worker(ref: str, files: tuple[str, ...] = ("index.js",), secret: str = "pull") -> Worker:
    return Worker.model_validate({
        "metadata": {"name": "w", "namespace": NS, "uid": "u"},
        "spec": {
            "compatibilityDate": "2025-01-01",
            "modules": [{"name": f, "oci": {"ref": ref, "file": f}} for f in files],
            "imagePullSecrets": [{"name": secret}],
        },
    })


async def resolve(registry: Registry, w: Worker, password: str | None = None) -> Sources:
    """What a fresh Resolver (empty caches), its pull secret watched, reads for `w`."""
    r = Resolver(kube=None, urls=settings(registry))  # type: ignore[arg-type]
    r.seen("Secret", pull_secret("pull", registry.dockerconfigjson(password)), False, True)
    try:
        return await r.resolve(w)
    finally:
        await r.close()


def only_error(got: Sources) -> tuple[str, str, bool]:
    assert not got.artifacts and len(got.artifact_errors) == 1, got
    return next(iter(got.artifact_errors.values()))


async def test_a_pushed_artifact_resolves_and_compiles(registry: Registry) -> None:
    ref = await push(registry, "acme/roundtrip", {"index.js": INDEX, "lib.js": LIB})
    w = worker(ref, ("index.js", "lib.js"))
    got = await resolve(registry, w)
    assert got.artifacts == {(ref, "index.js"): INDEX, (ref, "lib.js"): LIB}
    bundle = compile_worker(w, got)
    assert [m.content.encode() for m in bundle.modules] == [INDEX, LIB]


async def test_a_digest_the_registry_does_not_hold_is_not_found(registry: Registry) -> None:
    ref = await push(registry, "acme/other", {"index.js": INDEX})
    wrong = ref[:-8] + "00000000"
    reason, message, retry = only_error(await resolve(registry, worker(wrong)))
    assert (reason, retry) == ("ArtifactNotFound", False)
    assert message.startswith(wrong) and "fix oci.ref" in message


def blob_file(registry: Registry, digest: str) -> Path:
    hexd = digest.removeprefix("sha256:")
    root = registry.state_dir / "data" / "docker" / "registry" / "v2" / "blobs" / "sha256"
    return root / hexd[:2] / hexd / "data"


async def test_a_tampered_layer_is_refused(registry: Registry) -> None:
    body = b"export default { fetch() { return new Response('tamper me'); } };\n"
    body += f"// {uuid.uuid4()}\n".encode()  # blobs are shared by all repositories
    ref = await push(registry, "acme/tampered", {"index.js": body})
    layer = blob_file(registry, "sha256:" + hashlib.sha256(body).hexdigest())
    layer.write_bytes(body.replace(b"tamper me", b"tampered!"))  # same size, other bytes
    reason, message, retry = only_error(await resolve(registry, worker(ref)))
    assert (reason, retry) == ("ArtifactDigestMismatch", False)
    assert message.startswith(ref) and "does not match its digest" in message
    with pytest.raises(CompileError) as e:
        compile_worker(worker(ref), await resolve(registry, worker(ref)))
    assert e.value.reason == "ArtifactDigestMismatch" and "spec.modules[0]" in e.value.message


async def test_a_tampered_manifest_is_refused(registry: Registry) -> None:
    """A manifest whose bytes are not its digest could point at any layer: refused before
    any layer is read."""
    # Blobs are shared by every repository of a registry: unique content, so the tampered
    # manifest is no other test's.
    unique = INDEX + f"// {uuid.uuid4()}\n".encode()
    ref = await push(registry, "acme/tampered-manifest", {"index.js": unique})
    stored = blob_file(registry, ref.split("@", 1)[1])
    raw = stored.read_bytes()
    stored.write_bytes(raw.replace(b'"schemaVersion":2', b'"schemaVersion":2 '))
    reason, message, retry = only_error(await resolve(registry, worker(ref)))
    assert (reason, retry) == ("ArtifactDigestMismatch", False)
    assert message.startswith(ref) and "manifest of digest" in message


async def test_a_wrong_password_fails_without_showing_it(registry: Registry) -> None:
    ref = await push(registry, "acme/private", {"index.js": INDEX})
    wrong = "Wr0ng-" + registry.password[::-1]
    reason, message, _ = only_error(await resolve(registry, worker(ref), password=wrong))
    assert reason == "ArtifactUnavailable"
    assert "HTTP 401" in message and "imagePullSecrets" in message
    for secret in (wrong, registry.password, base64.b64encode(wrong.encode()).decode()):
        assert secret not in message


async def test_a_missing_or_malformed_pull_secret_names_it(registry: Registry) -> None:
    ref = f"{registry.host}/acme/x@sha256:" + "0" * 64
    r = Resolver(kube=None, urls=settings(registry))  # type: ignore[arg-type]
    # Watched as deleted: the resolver knows it does not exist without asking.
    r.seen("Secret", pull_secret("gone", "{}"), True, True)
    r.seen("Secret", pull_secret("bad", json.dumps({"auths": []})), False, True)
    try:
        gone = only_error(await r.resolve(worker(ref, secret="gone")))
        bad = only_error(await r.resolve(worker(ref, secret="bad")))
    finally:
        await r.close()
    assert gone[0] == "SourceNotFound" and "imagePullSecrets[0]: Secret t/gone not found" in gone[1]
    assert bad[0] == "InvalidSource" and 'no "auths" object' in bad[1]


async def test_a_stopped_registry_is_unavailable_then_recovers(registry: Registry) -> None:
    ref = await push(registry, "acme/outage", {"index.js": INDEX})
    w = worker(ref)
    registry.stop()
    try:
        reason, message, retry = only_error(await resolve(registry, w))
    finally:
        registry.start()
    assert (reason, retry) == ("ArtifactUnavailable", True)
    assert message.startswith(ref) and "cannot connect" in message
    with pytest.raises(CompileError) as e:
        compile_worker(w, Sources(artifact_errors={(ref, "index.js"): (reason, message, retry)}))
    assert e.value.retry and ref in e.value.message
    again = await resolve(registry, w)
    assert again.artifacts == {(ref, "index.js"): INDEX}, again.artifact_errors


async def test_pulled_layers_are_cached_by_digest(registry: Registry) -> None:
    ref = await push(registry, "acme/cached", {"index.js": INDEX})
    r = Resolver(kube=None, urls=settings(registry))  # type: ignore[arg-type]
    r.seen("Secret", pull_secret("pull", registry.dockerconfigjson()), False, True)
    try:
        assert (await r.resolve(worker(ref))).artifacts == {(ref, "index.js"): INDEX}
        registry.stop()
        try:  # immutable: served from the cache with the registry gone
            assert (await r.resolve(worker(ref))).artifacts == {(ref, "index.js"): INDEX}
        finally:
            registry.start()
    finally:
        await r.close()


async def test_a_title_the_manifest_lacks_names_the_titles_there(registry: Registry) -> None:
    ref = await push(registry, "acme/titles", {"index.js": INDEX, "lib.js": LIB})
    got = await resolve(registry, worker(ref, ("index.js", "missing.js")))
    assert got.artifacts == {(ref, "index.js"): INDEX}
    reason, message, retry = got.artifact_errors[(ref, "missing.js")]
    assert (reason, retry) == ("ArtifactNotFound", False)
    assert "no layer titled 'missing.js' (titles there: 'index.js', 'lib.js')" in message
