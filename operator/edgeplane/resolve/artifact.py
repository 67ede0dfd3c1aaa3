"""What the operator decides about OCI artifacts (pure): how a `host/repo@sha256:…`
reference splits, which `.dockerconfigjson` entry grants a registry host, what a registry's
auth challenge asks for, and which layer of a manifest is a module. resolve/oci.py does
the I/O."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

# host[:port]/path@sha256:<64 hex>: a digest, never a tag, so the content cannot change
# under a Worker. Path components as the OCI distribution spec has them.
OCI_REF_RE = (
    r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[0-9]{1,5})?"
    r"(/[a-z0-9]+([._-]+[a-z0-9]+)*)+@sha256:[0-9a-f]{64}$"
)
# The same, with an optional tag and no digest: where `edgeplane push` publishes.
OCI_REPO_RE = (
    r"^(?P<host>[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[0-9]{1,5})?)"
    r"(?P<repo>(/[a-z0-9]+([._-]+[a-z0-9]+)*)+)(:(?P<tag>[A-Za-z0-9_][A-Za-z0-9._-]{0,127}))?$"
)
OCI_REF_FORM = (
    "must be <host>/<repository>@sha256:<64 hex digits> (a digest, not a tag; "
    "`edgeplane push` prints one)"
)
TITLE = "org.opencontainers.image.title"
MANIFEST_TYPES = (
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
ARTIFACT_TYPE = "application/vnd.edgeplane.worker.v1"
# A layer's media type by the module type it holds.
MEDIA_TYPES = {
    "esModule": "application/javascript+module",
    "commonJsModule": "application/javascript",
    "text": "text/plain",
    "data": "application/octet-stream",
    "json": "application/json",
    "wasm": "application/wasm",
}
# A manifest is a small JSON document; a larger answer is not one.
MAX_MANIFEST_BYTES = 4 << 20
UNAVAILABLE = "ArtifactUnavailable"  # retried with backoff: the registry may come back
NOT_FOUND = "ArtifactNotFound"
DIGEST_MISMATCH = "ArtifactDigestMismatch"  # refused: the content is not what was named
TOO_LARGE = "ArtifactTooLarge"
# Docker Hub's credentials are filed under its old index address.
_DOCKER_HUB = {"docker.io", "index.docker.io", "registry-1.docker.io"}


@dataclass(frozen=True)
class ArtifactRef:
    host: str
    repository: str
    digest: str  # sha256:<hex>

    def __str__(self) -> str:
        return f"{self.host}/{self.repository}@{self.digest}"


def parse_ref(ref: str) -> ArtifactRef:
    """`host/repo@sha256:<hex>` split; ValueError saying the expected form otherwise."""
    if not re.match(OCI_REF_RE, ref):
        raise ValueError(OCI_REF_FORM)
    name, digest = ref.split("@", 1)
    host, repository = name.split("/", 1)
    return ArtifactRef(host, repository, digest)


@dataclass(frozen=True)
class Credentials:
    """Basic credentials, or a bearer token; never shown in a repr."""

    username: str = field(default="", repr=False)
    password: str = field(default="", repr=False)
    token: str = field(default="", repr=False)


def registry_key(address: str) -> str:
    """The host a `.dockerconfigjson` key or a reference names, as Docker matches them:
    `host`, `https://host`, `host/v1/` all name `host`."""
    host = address.strip().lower()
    for scheme in ("https://", "http://"):
        if host.startswith(scheme):
            host = host[len(scheme):]
    host = host.split("/", 1)[0]
    return "docker.io" if host in _DOCKER_HUB else host


def parse_dockerconfig(raw: bytes) -> dict[str, Credentials]:
    """The `auths` of a `.dockerconfigjson`, by registry host; ValueError saying what is
    wrong, never quoting the content."""
    try:
        auths = json.loads(raw).get("auths")
    except (ValueError, AttributeError):
        raise ValueError("its .dockerconfigjson is not a JSON object") from None
    if not isinstance(auths, dict):
        raise ValueError('its .dockerconfigjson has no "auths" object')
    out: dict[str, Credentials] = {}
    for key, entry in auths.items():
        if isinstance(entry, dict) and (creds := _entry(entry)) is not None:
            out.setdefault(registry_key(key), creds)
    return out


def _entry(entry: Mapping[str, object]) -> Credentials | None:
    if isinstance(token := entry.get("registrytoken"), str) and token:
        return Credentials(token=token)
    user, password = entry.get("username"), entry.get("password")
    if isinstance(user, str) and isinstance(password, str) and user:
        return Credentials(user, password)
    if isinstance(auth := entry.get("auth"), str) and auth:
        try:
            user, sep, password = base64.b64decode(auth, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return Credentials(user, password) if sep and user else None
    return None


def credentials_for(host: str, configs: Sequence[Mapping[str, Credentials]]) -> Credentials | None:
    """The first pull secret (in spec order) that grants `host`, or None (anonymous)."""
    want = registry_key(host)
    return next((c[want] for c in configs if want in c), None)


def challenge(header: str) -> tuple[str, dict[str, str]]:
    """A `WWW-Authenticate` header's scheme (lowercase) and parameters, e.g.
    `Bearer realm="https://auth/token",service="reg"` -> ("bearer", {...})."""
    scheme, _, rest = header.strip().partition(" ")
    params = {
        k.lower(): v
        for k, v in re.findall(r'([A-Za-z_][A-Za-z0-9_-]*)\s*=\s*"([^"]*)"', rest)
    }
    return scheme.lower(), params


@dataclass(frozen=True)
class Layer:
    digest: str
    size: int
    media_type: str


def pick_layer(manifest: bytes, file: str) -> Layer:
    """The layer titled `file`; ValueError naming the titles there are otherwise."""
    try:
        doc = json.loads(manifest)
        layers = doc["layers"]
        assert isinstance(layers, list)
    except (ValueError, KeyError, TypeError, AssertionError):
        raise ValueError("its manifest is not an OCI image manifest with layers") from None
    titles = []
    for layer in layers:
        title = (layer.get("annotations") or {}).get(TITLE) if isinstance(layer, dict) else None
        if title == file:
            digest, size = layer.get("digest"), layer.get("size")
            if not (isinstance(digest, str) and re.match(r"^sha256:[0-9a-f]{64}$", digest)):
                raise ValueError(f"layer {file!r} has no sha256 digest")
            if not isinstance(size, int) or size < 0:
                raise ValueError(f"layer {file!r} has no valid size")
            return Layer(digest, size, str(layer.get("mediaType", "")))
        if isinstance(title, str):
            titles.append(title)
    there = ", ".join(repr(t) for t in titles) or "none"
    raise ValueError(f"no layer titled {file!r} (titles there: {there}); fix oci.file")


def digest_of(content: bytes) -> str:
    return "sha256:" + hashlib.sha256(content).hexdigest()


def module_manifest(
    layers: Sequence[tuple[str, str, bytes]], config: bytes, annotations: Mapping[str, str]
) -> bytes:
    """The OCI image manifest of an artifact of (title, media type, content) layers, with
    `config` as its config blob; canonical JSON so the same modules give the same digest."""
    doc = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPES[0],
        "artifactType": ARTIFACT_TYPE,
        "config": {
            "mediaType": "application/vnd.edgeplane.worker.config.v1+json",
            "digest": digest_of(config),
            "size": len(config),
        },
        "layers": [
            {
                "mediaType": media_type,
                "digest": digest_of(content),
                "size": len(content),
                "annotations": {TITLE: title},
            }
            for title, media_type, content in layers
        ],
        **({"annotations": dict(sorted(annotations.items()))} if annotations else {}),
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


# Where the credentials of a Worker's OCI modules come from, for a refusal's message.
PULL_FIX = "spec.imagePullSecrets and the credentials in them"


def refusal(status: int, thing: str, fix: str = PULL_FIX) -> tuple[str, str]:
    """A registry's non-200 answer for a manifest or layer (`thing`) as (reason, why);
    `fix` names where the credentials come from."""
    if status in (401, 403):
        # Retried too: a fixed Secret reconciles at once, a registry's ACL change does not.
        return UNAVAILABLE, f"the registry refused access (HTTP {status}); check {fix}"
    if status == 404:
        return NOT_FOUND, f"the registry has no such {thing} (HTTP 404); push it or fix oci.ref"
    return UNAVAILABLE, f"the registry answered HTTP {status} for the {thing}"
