"""Versions kept in an OCI registry instead of ConfigMaps (pure): where a version's
artifact goes, what its layers are, the slim `source` a WorkerVersion records (inline
modules replaced by the artifact's layers, so the record stays a few KiB however large the
code), and the version's modules and assets rebuilt from layers checked by digest.

One artifact per version, in `<prefix>/<namespace>/<worker>`, tagged `v-<version id>`:
- one layer per module, its content the module's raw bytes, so the layer's digest is the
  module's `sha256` the WorkerVersion records in spec.modules (recorded once, there);
- with static assets, a layer of the assets' description (its digest in `artifact.assets`)
  and one layer per file, named by its sha256 in that description;
- a config blob naming the Worker and the version id, so two versions never share a
  manifest and deleting a pruned one's manifest never takes another's.
An unchanged module is the same blob in the repository and is not uploaded again.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass

from edgeplane.api.version import VersionArtifact, WorkerVersionSpec
from edgeplane.api.worker import OciSource, WorkerSpec
from edgeplane.resolve.artifact import MEDIA_TYPES, OCI_REF_RE, digest_of
from edgeplane.versions.archive import ArchiveError
from edgeplane.wire import Bundle, BundleAssets, BundleModule, ModuleType

ASSETS_TITLE = "edgeplane.assets.json"
ASSETS_MEDIA_TYPE = "application/vnd.edgeplane.assets.v1+json"
FILE_MEDIA_TYPE = "application/octet-stream"
# oci://host[:port]/prefix: the prefix is one or more repository path components.
_REGISTRY_RE = re.compile(
    r"^oci://(?P<host>[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[0-9]{1,5})?)"
    r"(?P<prefix>(/[a-z0-9]+([._-]+[a-z0-9]+)*)+)/?$"
)
REGISTRY_FORM = (
    "must be oci://<host>[:port]/<repository prefix>, lowercase, e.g. "
    "oci://registry.example.com/edgeplane/versions"
)

# Versions kept per Worker by default: ConfigMaps weigh on etcd, a registry does not
# (100 is what Cloudflare keeps).
RETAINED_IN_CONFIGMAPS = 10
RETAINED_IN_REGISTRY = 100

Layer = tuple[str, str, bytes]  # (title, media type, content), as OciClient.push takes


@dataclass(frozen=True)
class RegistrySettings:
    """The operator's --version-registry flags."""

    url: str
    credentials_file: str = ""  # a .dockerconfigjson
    ca_bundle: str = ""


@dataclass(frozen=True)
class RegistryLocation:
    host: str
    prefix: str  # without leading or trailing '/'

    def repository(self, namespace: str, worker: str) -> str:
        """Where one Worker's versions go; Kubernetes names are valid path components."""
        return f"{self.prefix}/{namespace}/{worker}"


def parse_registry(url: str, flag: str = "--version-registry") -> RegistryLocation:
    """`oci://host/prefix` split; ValueError naming `flag` and the expected form."""
    m = _REGISTRY_RE.match(url.strip())
    if m is None:
        raise ValueError(f"{flag}: {url!r} {REGISTRY_FORM}")
    return RegistryLocation(m["host"], m["prefix"].strip("/"))


def tag_for(version: str) -> str:
    """The tag that keeps a version's manifest from the registry's GC of untagged ones."""
    return f"v-{version}"


def version_layers(
    bundle: Bundle, blobs: Mapping[str, bytes]
) -> tuple[list[Layer], bytes, str | None]:
    """The layers of a version's artifact, its config blob, and the digest of its assets'
    description (None without assets); ArchiveError if a file of the assets is not held."""
    layers: list[Layer] = [
        (m.name, MEDIA_TYPES.get(m.type, FILE_MEDIA_TYPE), m.raw()) for m in bundle.modules
    ]
    assets_digest = None
    if bundle.assets is not None:
        doc = bundle.assets.model_dump_json(by_alias=True).encode()
        assets_digest = digest_of(doc)
        layers.append((ASSETS_TITLE, ASSETS_MEDIA_TYPE, doc))
        for sha in sorted(bundle.assets.blobs()):
            if sha not in blobs:
                raise ArchiveError(f"the file with sha256 {sha} of the assets is not held")
            layers.append((sha, FILE_MEDIA_TYPE, blobs[sha]))
    config = json.dumps(
        {"worker": bundle.worker, "versionId": bundle.version, "mainModule": bundle.main_module},
        sort_keys=True,
        separators=(",", ":"),
    ).encode()
    return layers, config, assets_digest


def artifact_ref(location: RegistryLocation, namespace: str, worker: str, digest: str) -> str:
    ref = f"{location.host}/{location.repository(namespace, worker)}@{digest}"
    if not re.match(OCI_REF_RE, ref):
        raise ValueError(f"the version artifact reference {ref!r} is not a valid OCI reference")
    return ref


def slim_source(spec: WorkerSpec, ref: str) -> WorkerSpec:
    """The spec as a WorkerVersion records it with a registry: each inline module becomes
    the artifact's layer of the same name, so no module content is kept in etcd."""
    modules = [
        m.model_copy(update={"inline": None, "oci": OciSource(ref=ref, file=m.name)})
        if m.inline is not None
        else m
        for m in spec.modules
    ]
    return spec.model_copy(update={"modules": modules})


def module_digests(spec: WorkerVersionSpec) -> dict[str, str]:
    """Each module's layer digest, by module name."""
    return {m.name: f"sha256:{m.sha256}" for m in spec.modules}


def wanted_digests(spec: WorkerVersionSpec) -> list[str]:
    """The layers to pull (before the assets' files, which its description names)."""
    artifact = spec.artifact
    assert artifact is not None
    extra = [artifact.assets] if artifact.assets else []
    return [*module_digests(spec).values(), *extra]


def module_from_layer(name: str, type_: ModuleType, raw: bytes) -> BundleModule:
    """A module as the bundle holds it, from its layer's bytes."""
    if type_.is_binary:
        content = base64.b64encode(raw).decode()
    else:
        try:
            content = raw.decode()
        except UnicodeDecodeError:
            raise ArchiveError(f"module {name}: its layer is not UTF-8 text") from None
    return BundleModule(name=name, type=type_, content=content)


def rebuilt_from_layers(
    spec: WorkerVersionSpec, layers: Mapping[str, bytes]
) -> tuple[list[BundleModule], BundleAssets | None]:
    """The version's modules in bundle order and its assets' description, from `layers`
    (digest -> bytes), each checked against the digest that names it."""
    for digest, content in layers.items():
        if digest_of(content) != digest:
            raise ArchiveError(f"the layer {digest} does not match its digest; refused")
    modules = []
    for m in spec.modules:
        raw = layers.get(f"sha256:{m.sha256}")
        if raw is None:
            raise ArchiveError(f"module {m.name} (sha256:{m.sha256}) is not in the artifact")
        modules.append(module_from_layer(m.name, m.type, raw))
    assets = None
    if spec.artifact is not None and spec.artifact.assets:
        doc = layers.get(spec.artifact.assets)
        if doc is None:
            raise ArchiveError("the assets' description is not in the artifact")
        try:
            assets = BundleAssets.model_validate_json(doc)
        except ValueError as e:
            raise ArchiveError(f"the assets' description is damaged: {e}") from None
    return modules, assets


def retry_delete(status: int | None) -> bool:
    """Whether a manifest delete that failed with `status` (None: no answer) is tried again
    later: the registry was unreachable or failing, which passes. A refusal (401/403: the
    credentials do not grant deletes; 405: deletes are disabled) is not: it stays."""
    return status is None or status >= 500 or status in (408, 429)


def artifact_record(ref: str, assets_digest: str | None) -> VersionArtifact:
    return VersionArtifact(ref=ref, assets=assets_digest)


def file_digests(assets: BundleAssets | None) -> list[str]:
    """The layers of the assets' files, to pull once the description is known."""
    return [f"sha256:{s}" for s in sorted(assets.blobs())] if assets else []


def file_bytes(assets: BundleAssets | None, layers: Mapping[str, bytes]) -> dict[str, bytes]:
    """The assets' files, by bare sha256 as the pool holds them, each checked."""
    out = {}
    for sha in sorted(assets.blobs()) if assets else ():
        content = layers.get(f"sha256:{sha}")
        if content is None or hashlib.sha256(content).hexdigest() != sha:
            raise ArchiveError(f"the assets' file sha256:{sha} is missing or damaged; refused")
        out[sha] = content
    return out
