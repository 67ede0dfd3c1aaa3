"""Pulling blobs from an OCI registry into the location's blob store, by digest (I/O).

A push may say where its modules' blobs can be pulled (edge/pull_plan.py); the agent then
fetches those it lacks itself with the operator's OCI client (resolve/oci.py: checked
against the digest, a timeout per request, no retries of its own: the operator pushes
again), a few at a time, and stores them (edge/blobs.py checks them once more). A blob
that two pushes need at once is fetched once.

Credentials are the agent's own (--registry-credentials, a .dockerconfigjson, and
--registry-ca): never from a push, never logged; a refusal's message names the reference
and the flag, never a secret."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter

from edgeplane.edge.blobs import BlobError, Blobs
from edgeplane.edge.pull_plan import CREDENTIALS_FIX, blob_ref, reported
from edgeplane.resolve.artifact import (
    DIGEST_MISMATCH,
    UNAVAILABLE,
    Credentials,
    credentials_for,
    parse_dockerconfig,
)
from edgeplane.resolve.oci import ArtifactError, OciClient
from edgeplane.resolve.policy import MAX_URL_BYTES, UrlSettings

log = logging.getLogger("edgeplane.agent")
# Blobs fetched at once, over all pushes: each is held in memory until stored.
CONCURRENCY = 4
TIMEOUT = 30.0  # seconds for one blob's request(s)
# Seconds one push waits for its blobs: the operator's PUT waits 120 s in all, and a
# fetch that outlives it goes on for the next push.
BUDGET = 60.0
# Seconds a registry that could not be reached is not tried again: the pushes meanwhile
# are answered 424 at once and the operator sends the blobs, so a registry the location
# cannot reach (down, firewalled) costs one push the budget, not every push.
HOLD = 30.0


@dataclass(frozen=True)
class RegistryAccess:
    """How the agent reaches registries: its own credentials (by host) and CAs."""

    auths: Mapping[str, Credentials] = field(default_factory=dict)
    # The registry is the operator's, named by its pushes: a private address is fine.
    settings: UrlSettings = field(
        default_factory=lambda: UrlSettings(
            allow_private=True, timeout=TIMEOUT, max_bytes=MAX_URL_BYTES
        )
    )
    # Where `auths` came from, and that file's stamp then: re-read when it changes (a
    # rotated Secret volume), as the token file is.
    credentials_file: str = ""
    stamp: tuple[int, int, int] | None = None


def read_credentials(path: str) -> tuple[dict[str, Credentials], tuple[int, int, int]]:
    """A .dockerconfigjson file's credentials by host, and its stamp; ValueError naming the
    flag (never the content)."""
    try:
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            raw = f.read()
    except OSError as e:
        raise ValueError(f"--registry-credentials: {e.strerror or e} ({path})") from None
    try:
        auths = parse_dockerconfig(raw)
    except ValueError as e:
        raise ValueError(f"--registry-credentials: {e}") from None
    return auths, _stamp(st)


def _stamp(st: os.stat_result) -> tuple[int, int, int]:
    return st.st_ino, st.st_mtime_ns, st.st_size


def registry_access(
    credentials_file: str | None, ca_bundle: str | None, timeout: float = TIMEOUT
) -> RegistryAccess:
    """From the agent's flags; ValueError naming the flag at fault (never the content)."""
    auths: dict[str, Credentials] = {}
    stamp = None
    if credentials_file:
        auths, stamp = read_credentials(credentials_file)
    if ca_bundle and not Path(ca_bundle).is_file():
        raise ValueError(f"--registry-ca: no such file ({ca_bundle})")
    settings = replace(RegistryAccess().settings, ca_bundle=ca_bundle or None, timeout=timeout)
    return RegistryAccess(auths, settings, credentials_file or "", stamp)


def fresh(access: RegistryAccess) -> RegistryAccess:
    """`access` with its credentials read again if their file changed; a file that is gone
    or broken keeps those in force (logged, never quoted)."""
    if not access.credentials_file:
        return access
    try:
        if _stamp(os.stat(access.credentials_file)) == access.stamp:
            return access
        auths, stamp = read_credentials(access.credentials_file)
    except (OSError, ValueError) as e:
        log.warning("registry credentials not re-read, those in force kept: %s", e)
        return access
    log.info("registry credentials re-read from %s", access.credentials_file)
    return replace(access, auths=auths, stamp=stamp)


class Puller:
    def __init__(
        self,
        blobs: Blobs,
        metrics: CollectorRegistry,
        access: RegistryAccess | None = None,
        concurrency: int = CONCURRENCY,
        budget: float = BUDGET,
        hold: float = HOLD,
    ) -> None:
        self.blobs = blobs
        self.pulled_bytes, self.failures = _counters(metrics)
        self.access = access or RegistryAccess()
        self.client = OciClient(self.access.settings)
        self.budget, self.hold = budget, hold
        self._down: dict[str, tuple[float, str]] = {}  # host -> (until, why), monotonic
        self._slots = asyncio.Semaphore(concurrency)
        self._inflight: dict[str, asyncio.Task[int]] = {}

    async def close(self) -> None:
        for task in list(self._inflight.values()):
            task.cancel()
        await self.client.close()

    async def pull(self, repository: str, digests: Sequence[str]) -> int:
        """Fetch and store those of `digests` (sha256 hex) the store lacks, from
        `repository` (`host[:port]/path`); the bytes of them that arrived (once per
        blob in the metric, however many pushes waited for it). Every blob is tried; those
        that arrived are kept, and one failure (pull_plan.reported) is raised as an
        ArtifactError naming `repository@sha256:...`; a registry that could not be reached
        is not tried again for `hold` seconds (nor until the credentials change). ValueError
        for a repository that is not one; OSError if the store cannot be written."""
        wanted = await asyncio.to_thread(self.blobs.missing, digests)
        if not wanted:
            return 0
        access = await asyncio.to_thread(fresh, self.access)
        if access is not self.access:
            self._down.clear()  # new credentials: worth trying at once
        self.access = access
        first = blob_ref(repository, wanted[0])  # a bad repository fails before any request
        until, why = self._down.get(first.host, (0.0, ""))
        if time.monotonic() < until:
            raise ArtifactError(UNAVAILABLE, str(first), f"not tried again yet: {why}")
        try:
            pulled = await self._pull(repository, wanted)
        except ArtifactError as e:
            if e.reason == UNAVAILABLE:
                self._down[first.host] = (time.monotonic() + self.hold, e.message)
            raise
        self._down.pop(first.host, None)
        return pulled

    async def _pull(self, repository: str, wanted: list[str]) -> int:
        # Shielded: a push whose client went away, or whose time is up, leaves the shared
        # fetch to the others.
        try:
            async with asyncio.timeout(self.budget):
                results = await asyncio.gather(
                    *(asyncio.shield(self._fetch(repository, sha)) for sha in wanted),
                    return_exceptions=True,
                )
        except TimeoutError:
            ref = str(blob_ref(repository, wanted[0]))
            raise ArtifactError(
                UNAVAILABLE, ref, f"not all {len(wanted)} blobs arrived within {self.budget:g}s"
            ) from None
        errors = [r for r in results if isinstance(r, BaseException)]
        refused = [e for e in errors if isinstance(e, ArtifactError)]
        if len(refused) < len(errors):  # the store failed (OSError), or a bug
            raise next(e for e in errors if not isinstance(e, ArtifactError))
        if refused:
            raise refused[reported([(e.reason, e.ref) for e in refused])]
        return sum(r for r in results if isinstance(r, int))

    def _fetch(self, repository: str, sha256: str) -> asyncio.Task[int]:
        """The one task fetching `sha256`, started if none is under way."""
        task = self._inflight.get(sha256)
        if task is None:
            task = asyncio.create_task(self._one(repository, sha256))
            self._inflight[sha256] = task
            task.add_done_callback(lambda t: self._done(sha256, t))
        return task

    def _done(self, sha256: str, task: asyncio.Task[int]) -> None:
        self._inflight.pop(sha256, None)
        if not task.cancelled():
            task.exception()  # retrieved: a push that stopped waiting may not read it

    async def _one(self, repository: str, sha256: str) -> int:
        ref = blob_ref(repository, sha256)
        async with self._slots:
            if await asyncio.to_thread(self.blobs.has, sha256):
                return 0  # a PUT or another pull stored it meanwhile
            try:
                content = await self.client.blob(
                    ref, ref.digest, credentials_for(ref.host, [self.access.auths]), CREDENTIALS_FIX
                )
            except ArtifactError as e:
                self.failures.labels(e.reason).inc()
                raise
            try:
                created = await asyncio.to_thread(self.blobs.put, sha256, content)
            except BlobError as e:  # the client checked it: only a bug or bad memory
                self.failures.labels(DIGEST_MISMATCH).inc()
                raise ArtifactError(DIGEST_MISMATCH, str(ref), f"{e}; refused") from None
        self.pulled_bytes.labels("stored" if created else "present").inc(len(content))
        return len(content)


def _counters(r: CollectorRegistry) -> tuple[Counter, Counter]:
    """The agent's metrics of pulls (in its registry, so /metrics serves them)."""
    p = "edgeplane_agent_"
    pulled = Counter(
        p + "pulled_bytes_total",
        "Bytes of blobs (modules) pulled from a registry by digest and checked: stored, or "
        "present (another push stored the same blob meanwhile)",
        ["result"],
        registry=r,
    )
    failures = Counter(
        p + "pull_failures_total",
        "Blobs that could not be pulled from a registry, by reason: ArtifactUnavailable, "
        "ArtifactNotFound, ArtifactTooLarge, ArtifactDigestMismatch (refused, not stored)",
        ["reason"],
        registry=r,
    )
    return pulled, failures
