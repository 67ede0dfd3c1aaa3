"""The operator's version registry (I/O over `versions.artifacts`, --version-registry):
push each recorded version as one OCI artifact, pull a version's layers back by digest,
and delete a pruned version's manifest.

Deleting a manifest unlinks its tag; the blobs only it referenced are freed by the
registry's own garbage collection (`registry garbage-collect`, offline, for
distribution; online in Harbor and Zot). Errors are CompileErrors whose messages name
the reference, never the credentials (those travel only in Authorization headers)."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping
from pathlib import Path

import aiohttp

from edgeplane.api.version import VersionArtifact, WorkerVersionSpec
from edgeplane.compile import CompileError
from edgeplane.resolve.artifact import (
    UNAVAILABLE,
    ArtifactRef,
    Credentials,
    credentials_for,
    parse_dockerconfig,
    parse_ref,
)
from edgeplane.resolve.download import explain
from edgeplane.resolve.oci import ArtifactError, OciClient
from edgeplane.resolve.policy import DownloadError, UrlSettings
from edgeplane.versions.archive import ArchiveError
from edgeplane.versions.artifacts import (
    RegistryLocation,
    RegistrySettings,
    artifact_record,
    artifact_ref,
    file_bytes,
    file_digests,
    parse_registry,
    rebuilt_from_layers,
    retry_delete,
    tag_for,
    version_layers,
    wanted_digests,
)
from edgeplane.wire import Bundle, BundleAssets, BundleModule

log = logging.getLogger("edgeplane.versions")
FIX = "--version-registry-credentials (a .dockerconfigjson granting the registry)"
# Assets' files may be larger than url modules' cap; a layer is checked by digest anyway.
MAX_LAYER_BYTES = 256 * 1000 * 1000


class CredentialsFile:
    """The --version-registry-credentials file, read again whenever it changes: a Secret
    mounted as a file is rotated in place (the kubelet swaps in a new file at the same
    path), and an operator that read it once would keep using the revoked credentials.
    Each use costs a stat; a changed file that cannot be used keeps the last good ones."""

    FLAG = "--version-registry-credentials"

    def __init__(self, path: str) -> None:
        self.path = path
        self.stamp: tuple[int, int, int] | None = None  # (mtime ns, size, inode) read
        self.auths: dict[str, Credentials] = {}

    def _stamp(self) -> tuple[int, int, int]:
        st = os.stat(self.path)
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def _read(self) -> dict[str, Credentials]:
        try:
            return parse_dockerconfig(Path(self.path).read_bytes())
        except OSError as e:
            raise ValueError(f"{self.FLAG}: {e.strerror or e} ({self.path})") from None
        except ValueError as e:
            raise ValueError(f"{self.FLAG}: {e} ({self.path})") from None

    def first(self) -> None:
        """Read at start; ValueError naming the flag (the operator does not start)."""
        try:
            stamp = self._stamp()  # before the read: a change in between is seen next use
        except OSError:
            stamp = None  # _read says why
        self.auths, self.stamp = self._read(), stamp

    def current(self) -> dict[str, Credentials]:
        """The credentials the file holds now (blocking: call it in a thread)."""
        try:
            stamp = self._stamp()
        except OSError:
            return self.auths  # mid-swap or removed: the last good ones, until it is back
        if stamp != self.stamp:
            self.stamp = stamp  # said once per change, not at every use
            try:
                self.auths = self._read()
                log.info("%s: %s changed, read again", self.FLAG, self.path)
            except ValueError as e:
                log.warning("%s; the credentials read before are used until it is fixed", e)
        return self.auths


class VersionRegistry:
    def __init__(
        self,
        location: RegistryLocation,
        credentials: CredentialsFile | None,
        settings: UrlSettings,
    ) -> None:
        self.location = location
        self.credentials = credentials
        self.client = OciClient(settings)

    @classmethod
    def configure(cls, flags: RegistrySettings, timeout: float = 30.0) -> VersionRegistry:
        """From the operator's flags, at start; ValueError naming the flag at fault."""
        location = parse_registry(flags.url)
        credentials = None
        if flags.credentials_file:
            credentials = CredentialsFile(flags.credentials_file)
            credentials.first()
        # The operator's own registry, named by its admin: a private address is fine.
        settings = UrlSettings(
            allow_private=True, ca_bundle=flags.ca_bundle or None, timeout=timeout,
            max_bytes=MAX_LAYER_BYTES,
        )
        return cls(location, credentials, settings)

    async def close(self) -> None:
        await self.client.close()

    async def _creds(self, host: str) -> Credentials | None:
        if self.credentials is None:
            return None
        auths = await asyncio.to_thread(self.credentials.current)
        return credentials_for(host, [auths])

    async def push(
        self, namespace: str, worker: str, bundle: Bundle, blobs: Mapping[str, bytes]
    ) -> VersionArtifact:
        """Push the version's artifact (blobs the repository has are not sent again)."""
        assert bundle.version is not None
        loc = self.location
        repository = loc.repository(namespace, worker)
        where = f"{loc.host}/{repository}:{tag_for(bundle.version)}"
        try:
            layers, config, assets_digest = version_layers(bundle, blobs)
            digest = await self.client.push(
                loc.host, repository, tag_for(bundle.version), layers, config,
                await self._creds(loc.host),
            )
        except ArchiveError as e:
            raise CompileError(
                "ArchiveUnavailable", f"version {bundle.version[:12]}: {e}"
            ) from None
        except (DownloadError, aiohttp.ClientError, TimeoutError) as e:
            why = str(explain(e, where) if isinstance(e, aiohttp.ClientError) else e)
            if " HTTP 401" in why or " HTTP 403" in why:
                why += f"; check {FIX}"
            raise CompileError(
                UNAVAILABLE,
                f"version {bundle.version[:12]} could not be stored in the version registry: "
                f"{why or f'{where}: no answer in time'}",
                retry=True,
            ) from None
        return artifact_record(artifact_ref(loc, namespace, worker, digest), assets_digest)

    async def pull(
        self, spec: WorkerVersionSpec
    ) -> tuple[list[BundleModule], BundleAssets | None, dict[str, bytes]]:
        """The version's modules (bundle order), assets and their files, each by digest."""
        assert spec.artifact is not None
        ref = parse_ref(spec.artifact.ref)
        try:
            layers = await self._layers(ref, wanted_digests(spec))
            modules, assets = rebuilt_from_layers(spec, layers)
            files = await self._layers(ref, file_digests(assets))
            return modules, assets, file_bytes(assets, files)
        except ArtifactError as e:
            raise CompileError(
                e.reason, f"version {spec.version_id[:12]}: {e.message}", retry=e.retry
            ) from None
        except ArchiveError as e:
            raise CompileError(
                "ArchiveUnavailable", f"version {spec.version_id[:12]} ({ref}): {e}"
            ) from None

    async def _layers(self, ref: ArtifactRef, digests: list[str]) -> dict[str, bytes]:
        creds = await self._creds(ref.host)
        return {d: await self.client.blob(ref, d, creds, FIX) for d in dict.fromkeys(digests)}

    async def delete(self, ref: str) -> bool:
        """Delete a pruned version's manifest. False: the registry could not do it now
        (unreachable, or failing); the caller keeps what names the manifest and tries again
        later, or the manifest would be left with nothing to find it by. True once it is
        gone, and also when the registry refuses (logged): deletes not granted or disabled
        stay so, and keeping versions for them would grow etcd without end."""
        parsed = parse_ref(ref)
        try:
            await self.client.delete(parsed, await self._creds(parsed.host), FIX)
        except ArtifactError as e:
            if retry_delete(e.status):
                log.warning("a pruned version's artifact was not deleted yet, tried again "
                            "at the next prune: %s", e.message)
                return False
            log.warning("a pruned version's artifact is left in the registry: %s", e.message)
        return True
