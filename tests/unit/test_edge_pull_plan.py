"""What the agent pulls and what it answers when it cannot (edge/pull_plan.py)."""

from __future__ import annotations

import pytest

from edgeplane.edge.pull_plan import (
    blob_ref,
    module_sources,
    parse_repository,
    pull_plan,
    reported,
    unpulled,
)
from edgeplane.resolve.artifact import ArtifactRef
from edgeplane.wire import Bundle, BundleModule, Deployment, ModuleType

A, B, C, D = ("a" * 64, "b" * 64, "c" * 64, "d" * 64)


@pytest.mark.parametrize(
    "text,want",
    [
        ("ghcr.io/acme/app", ("ghcr.io", "acme/app")),
        ("127.0.0.1:5000/ep/versions/ns/shop", ("127.0.0.1:5000", "ep/versions/ns/shop")),
        ("localhost/x_y.z-w", ("localhost", "x_y.z-w")),
    ],
)
def test_repositories_split(text: str, want: tuple[str, str]) -> None:
    assert parse_repository(text) == want


@pytest.mark.parametrize(
    "text",
    [
        "ghcr.io",  # no path
        "ghcr.io/acme/app:v1",  # a tag
        f"ghcr.io/acme/app@sha256:{A}",  # a digest
        "https://ghcr.io/acme/app",  # a scheme
        "oci://ghcr.io/acme/app",
        "GHCR.io/Acme/app",  # uppercase
        "ghcr.io/acme/app/",
        "ghcr.io//app",
        "",
    ],
)
def test_bad_repositories_are_refused_saying_the_form(text: str) -> None:
    with pytest.raises(ValueError, match=r"^repository: .* must be <host>\[:port\]/"):
        parse_repository(text)


def test_a_blob_ref_names_the_repository_and_digest() -> None:
    ref = blob_ref("127.0.0.1:5000/p/ns/w", A)
    assert ref == ArtifactRef("127.0.0.1:5000", "p/ns/w", f"sha256:{A}")
    assert str(ref) == f"127.0.0.1:5000/p/ns/w@sha256:{A}"


@pytest.mark.parametrize(
    "sources,missing,want",
    [
        # nothing missing: nothing to pull
        ([("r/a", [A, B])], [], {}),
        # the missing blobs of the one version with a repository
        ([("r/a", [A, B, C])], [C, A], {"r/a": [A, C]}),
        # a version without a repository: its blobs are the operator's to send
        ([(None, [A]), ("r/b", [B])], [A, B], {"r/b": [B]}),
        ([(None, [A])], [A], {}),
        ([("", [A])], [A], {}),
        # a blob two versions name comes from the first (a rollout: primary first)
        ([("r/new", [A, B]), ("r/old", [A, C])], [A, B, C], {"r/new": [A, B], "r/old": [C]}),
        # two versions in one repository: one list, sorted, each blob once
        ([("r/a", [C, A]), ("r/a", [B, A])], [A, B, C], {"r/a": [A, B, C]}),
        # a missing blob no version names (an asset's file) is not pulled
        ([("r/a", [A])], [A, D], {"r/a": [A]}),
        # a repeated digest in a version's list
        ([("r/a", [A, A])], [A], {"r/a": [A]}),
    ],
)
def test_the_plan(
    sources: list[tuple[str | None, list[str]]], missing: list[str], want: dict[str, list[str]]
) -> None:
    assert pull_plan(sources, missing) == want


@pytest.mark.parametrize(
    "failures,want",
    [
        ([("ArtifactUnavailable", "r/a@x")], 0),
        # the earliest reference, whatever order the fetches ended in
        ([("ArtifactUnavailable", "r/b@x"), ("ArtifactUnavailable", "r/a@x")], 1),
        # a refused digest before an outage: retrying will not fix it
        ([("ArtifactUnavailable", "r/a@x"), ("ArtifactDigestMismatch", "r/b@x")], 1),
        ([("ArtifactNotFound", "r/a@x"), ("ArtifactUnavailable", "r/a@y")], 0),
    ],
)
def test_the_failure_reported(failures: list[tuple[str, str]], want: int) -> None:
    assert reported(failures) == want


def test_the_answer_when_a_pull_failed() -> None:
    body = unpulled([A, B], "ArtifactUnavailable", f"h/r@sha256:{A}", f"h/r@sha256:{A}: down")
    assert body["missing"] == [A, B]
    assert body["reason"] == "ArtifactUnavailable"
    assert body["ref"] == f"h/r@sha256:{A}"
    assert str(body["error"]).startswith("modules: 2 blobs are not here and could not be pulled")
    assert "PUT /v1/blobs/<sha256>" in str(body["error"])


def _version(repository: str | None, *sources: str) -> Bundle:
    b = Bundle(
        worker="ns.w", compatibilityDate="2025-01-01", mainModule="m0.js",
        modules=tuple(
            BundleModule(name=f"m{i}.js", type=ModuleType.ES_MODULE, content=src)
            for i, src in enumerate(sources)
        ),
    ).with_version()
    return b.by_reference().model_copy(update={"repository": repository})


def test_module_sources_are_each_versions_repository_and_module_digests() -> None:
    new, old = _version("h/r", "export default 2;", "lib"), _version(None, "export default 1;")
    d = Deployment(worker="ns.w", primary=new.version or "", versions=(new, old))
    assert module_sources(d) == [
        ("h/r", [m.sha256 for m in new.modules]),
        (None, [m.sha256 for m in old.modules]),
    ]
    # A module sent with its content has nothing to pull.
    whole = new.model_copy(update={"modules": tuple(
        BundleModule(name=m.name, type=m.type, content="x") for m in new.modules
    )})
    assert module_sources(d.model_copy(update={"versions": (whole,)})) == [("h/r", [])]
