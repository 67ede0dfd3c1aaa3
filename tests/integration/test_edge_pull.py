"""The agent's pulls by digest (edge/pull.py) from the real registry (TLS, htpasswd) into
a real blob store: bytes round-trip and are not fetched twice, a tampered blob on the
registry's disk is refused and not stored, a stopped registry is an outage naming the
reference that passes when it is back, and wrong credentials are said without the
password."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from edgeplane.edge.blobs import Blobs
from edgeplane.edge.pull import Puller, RegistryAccess, registry_access
from edgeplane.localstack.registry import Registry
from edgeplane.resolve.artifact import Credentials
from edgeplane.resolve.oci import ArtifactError, OciClient
from edgeplane.resolve.policy import UrlSettings

pytestmark = pytest.mark.integration


def _sha(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


async def _push(registry: Registry, repository: str, modules: dict[str, bytes]) -> None:
    """An artifact of one layer per module, as the operator's version registry pushes."""
    client = OciClient(UrlSettings(allow_private=True, ca_bundle=str(registry.ca)))
    try:
        await client.push(
            registry.host, repository, "v-1",
            [(name, "application/javascript+module", b) for name, b in modules.items()],
            b'{"worker":"test"}', Credentials(registry.user, registry.password),
        )
    finally:
        await client.close()


def _access(registry: Registry, tmp: Path, password: str | None = None) -> RegistryAccess:
    """As the agent's flags give it: a .dockerconfigjson file and the registry's CA."""
    creds = tmp / f"dockerconfig-{os.urandom(4).hex()}.json"
    creds.write_text(registry.dockerconfigjson(password))
    return registry_access(str(creds), str(registry.ca))


def _puller(registry: Registry, blobs: Blobs, tmp: Path, password: str | None = None) -> Puller:
    # Tried again at once after a failure: the hold has a test of its own.
    return Puller(blobs, CollectorRegistry(), _access(registry, tmp, password), hold=0)


@pytest.fixture
async def modules(registry: Registry) -> AsyncIterator[tuple[str, dict[str, bytes]]]:
    """A repository of its own with two modules of fresh content (tampering with one
    touches no other test's blob)."""
    repository = f"edgeplane/versions/t-{os.urandom(4).hex()}/shop"
    mods = {
        "index.js": b"export default {fetch() { return new Response('hi') }};" + os.urandom(8),
        "lib.js": b"export const lib = '" + os.urandom(20_000).hex().encode() + b"';",
    }
    await _push(registry, repository, mods)
    yield f"{registry.host}/{repository}", mods


def _pulled(p: Puller, result: str = "stored") -> float:
    return p.pulled_bytes.labels(result)._value.get()


async def test_pulled_blobs_match_and_are_not_pulled_twice(
    registry: Registry, modules: tuple[str, dict[str, bytes]], tmp_path: Path
) -> None:
    repository, mods = modules
    blobs = Blobs(tmp_path / "state")
    p = _puller(registry, blobs, tmp_path)
    try:
        digests = [_sha(b) for b in mods.values()]
        assert await p.pull(repository, digests) == sum(map(len, mods.values()))
        for b in mods.values():
            assert blobs.path(_sha(b)).read_bytes() == b
        assert _pulled(p) == sum(map(len, mods.values()))
        assert await p.pull(repository, digests) == 0  # all here: nothing crosses again
        assert _pulled(p) == sum(map(len, mods.values()))
    finally:
        await p.close()


async def test_two_pushes_needing_one_blob_fetch_it_once(
    registry: Registry, modules: tuple[str, dict[str, bytes]], tmp_path: Path
) -> None:
    repository, mods = modules
    p = _puller(registry, Blobs(tmp_path / "state"), tmp_path)
    try:
        lib = _sha(mods["lib.js"])
        await asyncio.gather(*(p.pull(repository, [lib]) for _ in range(3)))
        assert _pulled(p) + _pulled(p, "present") == len(mods["lib.js"])
    finally:
        await p.close()


async def test_a_tampered_blob_is_refused_and_not_stored(
    registry: Registry, modules: tuple[str, dict[str, bytes]], tmp_path: Path
) -> None:
    repository, mods = modules
    index, lib = _sha(mods["index.js"]), _sha(mods["lib.js"])
    # Different bytes of the same length, on the registry's own disk: it serves them.
    stored = registry.blob_file(f"sha256:{lib}")
    data = bytearray(stored.read_bytes())
    data[-3] ^= 0x01
    stored.write_bytes(bytes(data))
    blobs = Blobs(tmp_path / "state")
    p = _puller(registry, blobs, tmp_path)
    try:
        with pytest.raises(ArtifactError) as e:
            await p.pull(repository, [index, lib])
        assert e.value.reason == "ArtifactDigestMismatch"
        assert e.value.ref == f"{repository}@sha256:{lib}"
        assert "refused" in e.value.message
        assert not blobs.has(lib) and blobs.missing([lib]) == [lib]
        assert blobs.has(index)  # the good one is kept: not pulled again
        assert p.failures.labels("ArtifactDigestMismatch")._value.get() == 1
    finally:
        await p.close()


async def test_a_digest_the_repository_lacks_is_not_found(
    registry: Registry, modules: tuple[str, dict[str, bytes]], tmp_path: Path
) -> None:
    repository, _ = modules
    absent = _sha(b"never pushed")
    p = _puller(registry, Blobs(tmp_path / "state"), tmp_path)
    try:
        with pytest.raises(ArtifactError) as e:
            await p.pull(repository, [absent])
        assert e.value.reason == "ArtifactNotFound"
        assert e.value.ref == f"{repository}@sha256:{absent}"
    finally:
        await p.close()


async def test_a_stopped_registry_is_an_outage_naming_the_ref_until_it_is_back(
    registry: Registry, modules: tuple[str, dict[str, bytes]], tmp_path: Path
) -> None:
    repository, mods = modules
    lib = _sha(mods["lib.js"])
    blobs = Blobs(tmp_path / "state")
    p = _puller(registry, blobs, tmp_path)
    try:
        registry.stop()
        try:
            with pytest.raises(ArtifactError) as e:
                await p.pull(repository, [lib])
        finally:
            registry.start()
        assert e.value.reason == "ArtifactUnavailable" and e.value.retry
        assert e.value.message.startswith(f"{repository}@sha256:{lib}: ")
        assert "cannot connect" in e.value.message
        assert not blobs.has(lib)
        assert await p.pull(repository, [lib]) == len(mods["lib.js"])
        assert blobs.path(lib).read_bytes() == mods["lib.js"]
    finally:
        await p.close()


async def test_a_hung_registry_answers_the_push_in_time_and_the_fetch_goes_on(
    registry: Registry, modules: tuple[str, dict[str, bytes]], tmp_path: Path
) -> None:
    repository, mods = modules
    lib = _sha(mods["lib.js"])
    blobs = Blobs(tmp_path / "state")
    p = Puller(blobs, CollectorRegistry(), _access(registry, tmp_path), budget=2)
    assert registry.proc is not None
    pid = registry.proc.popen.pid
    os.kill(pid, signal.SIGSTOP)  # accepts connections (the kernel does), answers nothing
    try:
        started = time.monotonic()
        with pytest.raises(ArtifactError) as e:
            await p.pull(repository, [lib])
        assert time.monotonic() - started < 10
        assert e.value.reason == "ArtifactUnavailable"
        assert e.value.message == f"{repository}@sha256:{lib}: not all 1 blobs arrived within 2s"
    finally:
        os.kill(pid, signal.SIGCONT)
    try:
        # The fetch outlived the push that asked: it stores the blob for the next one.
        for _ in range(300):
            if blobs.has(lib):
                break
            await asyncio.sleep(0.1)
        assert blobs.path(lib).read_bytes() == mods["lib.js"]
        assert await p.pull(repository, [lib]) == 0
    finally:
        await p.close()


async def test_a_registry_that_did_not_answer_is_not_tried_again_for_a_while(
    registry: Registry, modules: tuple[str, dict[str, bytes]], tmp_path: Path
) -> None:
    """Without the hold, every push to a location that cannot reach the registry (here:
    frozen) waited the whole budget before the operator sent the blobs itself."""
    repository, mods = modules
    index, lib = _sha(mods["index.js"]), _sha(mods["lib.js"])
    blobs = Blobs(tmp_path / "state")
    p = Puller(blobs, CollectorRegistry(), _access(registry, tmp_path), budget=2, hold=6)
    assert registry.proc is not None
    pid = registry.proc.popen.pid
    os.kill(pid, signal.SIGSTOP)
    try:
        with pytest.raises(ArtifactError):
            await p.pull(repository, [lib])  # waits the budget
        started = time.monotonic()
        with pytest.raises(ArtifactError) as e:
            await p.pull(repository, [index])  # another blob: not tried at all
        assert time.monotonic() - started < 0.5
        assert e.value.reason == "ArtifactUnavailable"
        assert e.value.message.startswith(f"{repository}@sha256:{index}: not tried again yet: ")
        assert "within 2s" in e.value.message  # why: the failure that started the hold
    finally:
        os.kill(pid, signal.SIGCONT)
    try:
        await asyncio.sleep(6)
        # The hold is over: tried, and it answers now.
        assert await p.pull(repository, [index]) == len(mods["index.js"])
    finally:
        await p.close()


async def test_wrong_credentials_are_said_without_the_password(
    registry: Registry, modules: tuple[str, dict[str, bytes]], tmp_path: Path
) -> None:
    repository, mods = modules
    wrong = "wrong-" + os.urandom(8).hex()
    p = _puller(registry, Blobs(tmp_path / "state"), tmp_path, password=wrong)
    try:
        with pytest.raises(ArtifactError) as e:
            await p.pull(repository, [_sha(mods["index.js"])])
        said = f"{e.value!s} {e.value.message!r} {e.value!r}"
        assert "refused access (HTTP 401)" in said and "--registry-credentials" in said
        assert wrong not in said and registry.password not in said
    finally:
        await p.close()


async def test_rotated_credentials_are_read_again_without_a_restart(
    registry: Registry, modules: tuple[str, dict[str, bytes]], tmp_path: Path
) -> None:
    repository, mods = modules
    index, lib = _sha(mods["index.js"]), _sha(mods["lib.js"])
    creds = tmp_path / "dockerconfig.json"
    creds.write_text(registry.dockerconfigjson("wrong-" + os.urandom(8).hex()))
    p = Puller(Blobs(tmp_path / "state"), CollectorRegistry(),
               registry_access(str(creds), str(registry.ca)))
    try:
        with pytest.raises(ArtifactError, match=r"HTTP 401"):
            await p.pull(repository, [index])
        # A Secret volume's update: a new file swapped in.
        new = tmp_path / "dockerconfig.json.new"
        new.write_text(registry.dockerconfigjson())
        new.replace(creds)
        assert await p.pull(repository, [index]) == len(mods["index.js"])
        # A broken file keeps the credentials in force.
        creds.write_text("{not json")
        assert await p.pull(repository, [lib]) == len(mods["lib.js"])
    finally:
        await p.close()


def test_bad_flags_are_named_without_content(tmp_path: Path) -> None:
    bad = tmp_path / "config.json"
    bad.write_text('{"auths": "secret-ish"}')
    with pytest.raises(ValueError, match=r"^--registry-credentials: .*no \"auths\" object"):
        registry_access(str(bad), None)
    with pytest.raises(ValueError, match=r"^--registry-credentials: No such file"):
        registry_access(str(tmp_path / "none"), None)
    with pytest.raises(ValueError, match=r"^--registry-ca: no such file"):
        registry_access(None, str(tmp_path / "none"))
