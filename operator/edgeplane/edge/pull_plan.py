"""What the agent pulls from a registry, and what it answers when it cannot (pure).

A deployment's version may name a `repository` (`host[:port]/repo/path`) where its
modules' blobs can be pulled by digest. Of the blobs a push needs and the location lacks,
each is pulled from the first repository (in the deployment's order) whose version names
it; a blob no such version names is left to the operator to send (PUT /v1/blobs).
edge/pull.py does the pulls."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from edgeplane.resolve.artifact import DIGEST_MISMATCH, OCI_REPO_RE, ArtifactRef
from edgeplane.wire import Deployment

REPOSITORY_FORM = (
    "must be <host>[:port]/<repository path>, lowercase, with no tag or digest "
    "(e.g. registry.example.com/edgeplane/versions/ns/worker)"
)
# Where the agent's registry credentials come from, for a refusal's message.
CREDENTIALS_FIX = "the agent's --registry-credentials (a .dockerconfigjson granting the registry)"

# (repository or None, the sha256 hex digests of blobs that version needs)
Source = tuple[str | None, Iterable[str]]


def parse_repository(text: str) -> tuple[str, str]:
    """`host[:port]/repo/path` as (host, repository path); ValueError saying the form."""
    m = re.fullmatch(OCI_REPO_RE, text)
    if m is None or m["tag"] is not None:
        raise ValueError(f"repository: {text!r} {REPOSITORY_FORM}")
    return m["host"], m["repo"].lstrip("/")


def blob_ref(repository: str, sha256: str) -> ArtifactRef:
    """The reference that names blob `sha256` (hex) of `repository`: what errors show."""
    host, path = parse_repository(repository)
    return ArtifactRef(host, path, f"sha256:{sha256}")


def module_sources(d: Deployment) -> list[Source]:
    """Each version's repository and its modules' blobs, in the deployment's order."""
    return [(b.repository, [m.sha256 for m in b.modules if m.sha256]) for b in d.versions]


def pull_plan(sources: Sequence[Source], missing: Iterable[str]) -> dict[str, list[str]]:
    """Repository -> the `missing` blobs to pull from it (sorted, each blob from one
    repository: the first that names it). Blobs no source with a repository names are
    not in the plan."""
    left = set(missing)
    plan: dict[str, list[str]] = {}
    for repository, digests in sources:
        if not repository:
            continue
        mine = sorted(left.intersection(digests))
        if mine:
            plan.setdefault(repository, []).extend(mine)
            left.difference_update(mine)
    return {r: sorted(ds) for r, ds in plan.items()}


def unpulled(missing: Sequence[str], reason: str, ref: str, why: str) -> dict[str, object]:
    """The 424 body of a push whose `missing` blobs could not all be pulled: the operator
    may send them itself; `reason` and `ref` say which pull failed and why."""
    return {
        "error": f"modules: {len(missing)} blobs are not here and could not be pulled "
        f"({why}); PUT /v1/blobs/<sha256> each of `missing`",
        "missing": list(missing),
        "reason": reason,
        "ref": ref,
    }


def reported(failures: Sequence[tuple[str, str]]) -> int:
    """Of the failed pulls' (reason, ref), the index of the one to report: a refused
    digest first (the registry serves wrong content: a retry will not fix it), then the
    first by reference, so the same fault gives the same answer."""
    return min(
        range(len(failures)), key=lambda i: (failures[i][0] != DIGEST_MISMATCH, failures[i][1])
    )
