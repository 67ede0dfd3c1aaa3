"""OCI artifact decisions (resolve/artifact.py): references, pull-secret host matching,
auth challenges, layer choice, and the manifest `edgeplane push` writes."""

from __future__ import annotations

import base64
import json

import pytest

from edgeplane.resolve.artifact import (
    TITLE,
    ArtifactRef,
    Credentials,
    challenge,
    credentials_for,
    digest_of,
    module_manifest,
    parse_dockerconfig,
    parse_ref,
    pick_layer,
    refusal,
    registry_key,
)

D = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    "ref,want",
    [
        (f"ghcr.io/acme/app@{D}", ArtifactRef("ghcr.io", "acme/app", D)),
        (f"127.0.0.1:5000/a/b/c@{D}", ArtifactRef("127.0.0.1:5000", "a/b/c", D)),
        (f"localhost/x_y.z-w@{D}", ArtifactRef("localhost", "x_y.z-w", D)),
    ],
)
def test_refs_split(ref: str, want: ArtifactRef) -> None:
    assert parse_ref(ref) == want
    assert str(want) == ref


@pytest.mark.parametrize(
    "ref",
    [
        "ghcr.io/acme/app:latest",  # a tag: content could change under the Worker
        "ghcr.io/acme/app",
        f"ghcr.io/acme/app:v1@{D}",  # tag and digest: the tag is noise, refuse it
        f"acme/app@{D}".replace("acme/", ""),  # no repository
        f"ghcr.io/Acme/app@{D}",  # repositories are lowercase
        "ghcr.io/acme/app@sha256:" + "AB" * 32,
        "ghcr.io/acme/app@sha512:" + "ab" * 64,
        f"https://ghcr.io/acme/app@{D}",
    ],
)
def test_bad_refs_say_the_form(ref: str) -> None:
    with pytest.raises(ValueError, match="<host>/<repository>@sha256:"):
        parse_ref(ref)


@pytest.mark.parametrize(
    "address,host",
    [
        ("ghcr.io", "ghcr.io"),
        ("https://ghcr.io", "ghcr.io"),
        ("https://ghcr.io/v1/", "ghcr.io"),
        ("http://Registry.Example:5000/v2/", "registry.example:5000"),
        ("https://index.docker.io/v1/", "docker.io"),
        ("registry-1.docker.io", "docker.io"),
        ("docker.io", "docker.io"),
    ],
)
def test_registry_keys_match_as_docker_does(address: str, host: str) -> None:
    assert registry_key(address) == host


def b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


@pytest.mark.parametrize(
    "auths,host,want",
    [
        ({"ghcr.io": {"auth": b64("u:p:w")}}, "ghcr.io", Credentials("u", "p:w")),
        ({"https://ghcr.io/v1/": {"username": "u", "password": "p"}}, "ghcr.io",
         Credentials("u", "p")),
        ({"https://index.docker.io/v1/": {"auth": b64("u:p")}}, "registry-1.docker.io",
         Credentials("u", "p")),
        ({"r.example": {"registrytoken": "t"}}, "r.example", Credentials(token="t")),
        ({"ghcr.io": {"auth": b64("u:p")}}, "ghcr.io:443", None),  # another port, another host
        ({"ghcr.io": {"auth": b64("u:p")}}, "quay.io", None),
        ({"ghcr.io": {"auth": "!!not base64"}}, "ghcr.io", None),
        ({"ghcr.io": {"auth": b64("no-colon")}}, "ghcr.io", None),
        ({"ghcr.io": {"identitytoken": "x"}}, "ghcr.io", None),  # needs an OAuth exchange
    ],
)
def test_credentials_for_a_host(
    auths: dict[str, object], host: str, want: Credentials | None
) -> None:
    config = parse_dockerconfig(json.dumps({"auths": auths}).encode())
    assert credentials_for(host, [config]) == want


def test_the_first_pull_secret_granting_a_host_wins() -> None:
    a = {"ghcr.io": Credentials("a", "1")}
    b = {"ghcr.io": Credentials("b", "2"), "quay.io": Credentials("b", "3")}
    assert credentials_for("ghcr.io", [a, b]) == Credentials("a", "1")
    assert credentials_for("quay.io", [a, b]) == Credentials("b", "3")
    assert credentials_for("quay.io", []) is None


def test_credentials_never_show_in_a_repr() -> None:
    text = repr(Credentials("user-x", "pw-secret", "tok-secret"))
    assert "pw-secret" not in text and "tok-secret" not in text and "user-x" not in text


@pytest.mark.parametrize(
    "raw,why",
    [
        (b"not json", "not a JSON object"),
        (b"[]", "not a JSON object"),
        (b'{"auths": []}', 'no "auths" object'),
        (b"{}", 'no "auths" object'),
    ],
)
def test_bad_dockerconfigs_say_why(raw: bytes, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_dockerconfig(raw)


@pytest.mark.parametrize(
    "header,want",
    [
        ('Basic realm="reg"', ("basic", {"realm": "reg"})),
        (
            'Bearer realm="https://auth.example/token",service="reg",scope="repository:a/b:pull"',
            ("bearer", {"realm": "https://auth.example/token", "service": "reg",
                        "scope": "repository:a/b:pull"}),
        ),
        ("", ("", {})),
    ],
)
def test_auth_challenges(header: str, want: tuple[str, dict[str, str]]) -> None:
    assert challenge(header) == want


def test_the_manifest_push_writes_is_canonical_and_its_layers_are_found() -> None:
    layers = [("index.js", "application/javascript", b"a"), ("lib.js", "text/plain", b"bb")]
    raw = module_manifest(layers, b"{}", {"k": "v"})
    assert raw == module_manifest(layers, b"{}", {"k": "v"})
    doc = json.loads(raw)
    assert doc["artifactType"] == "application/vnd.edgeplane.worker.v1"
    assert [x["annotations"][TITLE] for x in doc["layers"]] == ["index.js", "lib.js"]
    lib = pick_layer(raw, "lib.js")
    assert (lib.digest, lib.size) == (digest_of(b"bb"), 2)


@pytest.mark.parametrize(
    "manifest,file,why",
    [
        (b"{}", "a.js", "not an OCI image manifest"),
        (b"nope", "a.js", "not an OCI image manifest"),
        (
            json.dumps({"layers": [{"digest": D, "size": 1, "annotations": {TITLE: "b.js"}}]}),
            "a.js",
            r"no layer titled 'a.js' \(titles there: 'b.js'\); fix oci.file",
        ),
        (
            json.dumps(
                {"layers": [{"digest": "md5:x", "size": 1, "annotations": {TITLE: "a.js"}}]}
            ),
            "a.js",
            "no sha256 digest",
        ),
        (
            json.dumps({"layers": [{"digest": D, "size": -1, "annotations": {TITLE: "a.js"}}]}),
            "a.js",
            "no valid size",
        ),
    ],
)
def test_layers_that_cannot_be_used_say_why(manifest: bytes | str, file: str, why: str) -> None:
    raw = manifest.encode() if isinstance(manifest, str) else manifest
    with pytest.raises(ValueError, match=why):
        pick_layer(raw, file)


@pytest.mark.parametrize(
    "status,thing,reason,words",
    [
        (401, "manifest", "ArtifactUnavailable", "refused access (HTTP 401); check spec.imagePull"),
        (403, "layer", "ArtifactUnavailable", "refused access (HTTP 403)"),
        (404, "manifest", "ArtifactNotFound", "no such manifest (HTTP 404); push it or fix"),
        (404, "layer", "ArtifactNotFound", "no such layer"),
        (429, "layer", "ArtifactUnavailable", "answered HTTP 429 for the layer"),
        (503, "manifest", "ArtifactUnavailable", "answered HTTP 503 for the manifest"),
    ],
)
def test_registry_answers_map_to_a_reason(status: int, thing: str, reason: str, words: str) -> None:
    got_reason, why = refusal(status, thing)
    assert got_reason == reason and words in why
