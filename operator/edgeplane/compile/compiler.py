"""Compile a Worker into a Bundle: pure, deterministic, and precise about what is wrong.

The same spec and the same source contents always give the same bundle bytes and so the
same version id; nothing here reads the clock, the network or the apiserver.
"""

from __future__ import annotations

import base64
import hashlib
import json
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field

from pydantic import ValidationError

from edgeplane.api import Worker
from edgeplane.api.worker import WorkerModule
from edgeplane.compile.assets import (
    AssetsError,
    CompiledAssets,
    compile_assets,
    config_map_files,
    untar,
)
from edgeplane.fieldpath import describe
from edgeplane.wire import (
    MAX_COMPRESSED,
    MAX_UNCOMPRESSED,
    Bundle,
    BundleAssets,
    BundleBinding,
    BundleModule,
    ModuleType,
    secret_digest,
)


class CompileError(Exception):
    """Why a Worker cannot be compiled: a CamelCase `reason` for its conditions and a
    message that names the field and how to fix it."""

    def __init__(self, reason: str, message: str, retry: bool = False) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.retry = retry  # may pass by itself (a registry down): retried with backoff


@dataclass(frozen=True)
class Sources:
    """What the Worker's references resolved to. A reference missing here was not found.

    config_maps: ConfigMap name -> key -> value (str from data, bytes from binaryData).
    secrets: Secret name -> key -> decoded bytes.
    urls: sha256 -> downloaded bytes (the compiler checks them against that sha256).
    url_errors: (url, sha256) -> why that URL could not be downloaded.
    artifacts: (oci ref, file) -> the layer's bytes, both digests already checked.
    artifact_errors: (oci ref, file) -> why not: (reason, message, retried by itself).
    digest_key: the cluster's key that binds secret values into version ids (wire.
    secret_digest); empty: a bare hash.
    """

    config_maps: Mapping[str, Mapping[str, str | bytes]] = field(default_factory=dict)
    secrets: Mapping[str, Mapping[str, bytes]] = field(default_factory=dict)
    urls: Mapping[str, bytes] = field(default_factory=dict)
    url_errors: Mapping[tuple[str, str], str] = field(default_factory=dict)
    artifacts: Mapping[tuple[str, str], bytes] = field(default_factory=dict)
    artifact_errors: Mapping[tuple[str, str], tuple[str, str, bool]] = field(default_factory=dict)
    digest_key: str = field(default="", repr=False)


@dataclass(frozen=True)
class References:
    config_maps: frozenset[str]
    secrets: frozenset[str]
    urls: frozenset[tuple[str, str]]  # (url, sha256)
    artifacts: frozenset[tuple[str, str]] = frozenset()  # (oci ref, file)
    pull_secrets: tuple[str, ...] = ()  # in spec order: the first that grants a host wins


def references(worker: Worker) -> References:
    """Everything the Worker reads besides its own spec, for resolving and for indexing."""
    spec = worker.spec
    cms = {m.config_map_key_ref.name for m in spec.modules if m.config_map_key_ref}
    urls = {(m.url, m.sha256) for m in spec.modules if m.url and m.sha256}
    if spec.assets is not None and spec.assets.config_map is not None:
        cms.add(spec.assets.config_map.name)
    if spec.assets is not None and spec.assets.archive is not None:
        urls.add((spec.assets.archive.url, spec.assets.archive.sha256))
    return References(
        config_maps=frozenset(cms),
        secrets=frozenset(b.secret_key_ref.name for b in spec.bindings if b.secret_key_ref),
        urls=frozenset(urls),
        artifacts=frozenset((m.oci.ref, m.oci.file) for m in spec.modules if m.oci),
        pull_secrets=tuple(s.name for s in spec.image_pull_secrets),
    )


def _module_bytes(i: int, m: WorkerModule, namespace: str, sources: Sources) -> bytes:
    where = f"spec.modules[{i}] ({m.name})"
    if m.inline is not None:
        return base64.b64decode(m.inline) if m.type.is_binary else m.inline.encode()
    if m.config_map_key_ref is not None:
        ref = m.config_map_key_ref
        cm = sources.config_maps.get(ref.name)
        if cm is None:
            raise CompileError(
                "SourceNotFound",
                f"{where}.configMapKeyRef: ConfigMap {namespace}/{ref.name} not found; "
                "create it or fix the name",
            )
        if ref.key not in cm:
            raise CompileError(
                "SourceNotFound",
                f"{where}.configMapKeyRef: ConfigMap {namespace}/{ref.name} has no key "
                f"{ref.key!r}; add it to data (or binaryData) or fix the key",
            )
        value = cm[ref.key]
        return value.encode() if isinstance(value, str) else value
    if m.oci is not None:
        key = (m.oci.ref, m.oci.file)
        if (content := sources.artifacts.get(key)) is not None:
            return content
        reason, why, retry = sources.artifact_errors.get(
            key, ("ArtifactUnavailable", f"{m.oci.ref}: not pulled yet", True)
        )
        raise CompileError(reason, f"{where}.oci: {why}", retry=retry)
    assert m.url is not None and m.sha256 is not None  # the model allows nothing else
    content = sources.urls.get(m.sha256)
    if content is None:
        why = sources.url_errors.get((m.url, m.sha256), f"{m.url} could not be downloaded")
        raise CompileError("SourceNotFound", f"spec.modules[{i}].url ({m.name}): {why}")
    if hashlib.sha256(content).hexdigest() != m.sha256:
        raise CompileError(
            "SourceChecksumMismatch",
            f"{where}.sha256: the file at {m.url} does not match; update sha256 if the "
            "file changed on purpose",
        )
    return content


def _module(i: int, m: WorkerModule, namespace: str, sources: Sources) -> BundleModule:
    raw = _module_bytes(i, m, namespace, sources)
    if m.type.is_binary:
        content = base64.b64encode(raw).decode()
    else:
        try:
            content = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise CompileError(
                "InvalidSource",
                f"spec.modules[{i}] ({m.name}): a {m.type} module must be UTF-8 text "
                f"(byte {e.start} is not); use type data or wasm for binary content",
            ) from None
        if m.type is ModuleType.JSON:
            try:
                json.loads(content)
            except ValueError as e:
                raise CompileError(
                    "InvalidSource", f"spec.modules[{i}] ({m.name}): not valid JSON: {e}"
                ) from None
    return BundleModule(name=m.name, type=m.type, content=content)


def _binding(i: int, worker: Worker, sources: Sources) -> BundleBinding:
    b = worker.spec.bindings[i]
    ns = worker.metadata.namespace
    if b.plain_text is not None:
        return BundleBinding(name=b.name, text=b.plain_text)
    if b.json_ is not None:
        return BundleBinding(
            name=b.name, json=json.dumps(b.json_, sort_keys=True, separators=(",", ":"))
        )
    if b.secret_key_ref is not None:
        ref = b.secret_key_ref
        where = f"spec.bindings[{i}] ({b.name}).secretKeyRef"
        secret = sources.secrets.get(ref.name)
        if secret is None:
            raise CompileError(
                "SourceNotFound",
                f"{where}: Secret {ns}/{ref.name} not found; create it or fix the name",
            )
        if ref.key not in secret:
            raise CompileError(
                "SourceNotFound",
                f"{where}: Secret {ns}/{ref.name} has no key {ref.key!r}; add it or fix the key",
            )
        try:
            value = secret[ref.key].decode("utf-8")
        except UnicodeDecodeError:
            raise CompileError(
                "InvalidSource", f"{where}: the value of key {ref.key!r} is not UTF-8 text"
            ) from None
        digest = secret_digest(sources.digest_key, value)
        return BundleBinding(name=b.name, secret=value, secretDigest=digest)
    if b.service is not None:
        return BundleBinding(name=b.name, service=f"{ns}.{b.service.worker}")
    if b.kv_namespace is not None:
        return BundleBinding(name=b.name, kvNamespace=f"{ns}.{b.kv_namespace.namespace}")
    assert b.durable_object_namespace is not None
    return BundleBinding(name=b.name, durableObjectClass=b.durable_object_namespace.class_name)


def inline_module(i: int, m: WorkerModule, namespace: str) -> BundleModule:
    """Module `i` of a spec, which must be inline, as the bundle holds it."""
    assert m.inline is not None
    return _module(i, m, namespace, Sources())


def bundle_order(modules: list[BundleModule], main: str) -> list[BundleModule]:
    """The modules in the order a bundle holds them: main first, the others as listed."""
    return sorted(modules, key=lambda m: m.name != main)


def compile_worker(worker: Worker, sources: Sources) -> Bundle:
    """The Worker's bundle, with its version id set. Raises CompileError."""
    return compile_version(worker, sources)[0]


def compile_version(worker: Worker, sources: Sources) -> tuple[Bundle, Mapping[str, bytes]]:
    """The Worker's bundle and its assets' bytes by sha256 (sent to the locations as
    blobs, apart from the bundle). Raises CompileError."""
    spec = worker.spec
    ns = worker.metadata.namespace or ""
    # workerd runs the first module: put the main one first, keep the others in order.
    modules = bundle_order(
        [_module(i, m, ns, sources) for i, m in enumerate(spec.modules)], spec.main
    )
    _check_size(modules)
    site = _assets(worker, sources)
    bundle = assemble(worker, modules, sources, site.wire if site else None)
    return bundle, (site.blobs if site else {})


def _assets(worker: Worker, sources: Sources) -> CompiledAssets | None:
    spec = worker.spec.assets
    if spec is None:
        return None
    ns = worker.metadata.namespace or ""
    try:
        if spec.config_map is not None:
            data = sources.config_maps.get(spec.config_map.name)
            if data is None:
                raise CompileError(
                    "SourceNotFound",
                    f"spec.assets.configMap: ConfigMap {ns}/{spec.config_map.name} not found; "
                    "create it or fix the name",
                )
            return compile_assets(spec, config_map_files(spec, data, ns))
        assert spec.archive is not None
        return compile_assets(spec, untar(_archive(spec.archive.url, spec.archive.sha256, sources)))
    except AssetsError as e:
        raise CompileError(e.reason, e.message) from None


def _archive(url: str, sha256: str, sources: Sources) -> bytes:
    content = sources.urls.get(sha256)
    if content is None:
        why = sources.url_errors.get((url, sha256), f"{url} could not be downloaded")
        raise CompileError("SourceNotFound", f"spec.assets.archive.url: {why}")
    if hashlib.sha256(content).hexdigest() != sha256:
        raise CompileError(
            "SourceChecksumMismatch",
            f"spec.assets.archive.sha256: the file at {url} does not match; update sha256 if "
            "the site changed on purpose",
        )
    return content


def assemble(
    worker: Worker,
    modules: list[BundleModule],
    sources: Sources,
    assets: BundleAssets | None = None,
) -> Bundle:
    """The bundle of `modules` (main first) with the spec's bindings resolved as of now.
    Rebuilding a recorded version passes its archived modules and the spec it was compiled
    from, so ConfigMaps and URLs are not read again; Secrets are today's."""
    spec = worker.spec
    main = spec.main
    bindings = [_binding(i, worker, sources) for i in range(len(spec.bindings))]
    try:
        bundle = Bundle(
            worker=worker.full_name,
            compatibilityDate=spec.compatibility_date,
            compatibilityFlags=tuple(spec.compatibility_flags),
            mainModule=main,
            modules=tuple(modules),
            bindings=tuple(bindings),
            assets=assets,
        )
    except ValidationError as e:
        # The CRD's schema should have caught this already; say what is wrong anyway.
        raise CompileError("InvalidSpec", f"spec: {describe(e, limit=1)}") from None
    return bundle.with_version()


def _check_size(modules: list[BundleModule]) -> None:
    raws = [m.raw() for m in modules]
    total = sum(len(r) for r in raws)
    if total > MAX_UNCOMPRESSED:
        raise CompileError(
            "ScriptTooLarge",
            f"spec.modules: {total} bytes in all, over the {MAX_UNCOMPRESSED} byte limit "
            "before compression; split the Worker or trim its modules",
        )
    if total <= MAX_COMPRESSED:
        return  # compression cannot make it larger than the limit
    compressor = zlib.compressobj(6, zlib.DEFLATED, 31)  # gzip, as Cloudflare measures
    compressed = sum(len(compressor.compress(r)) for r in raws) + len(compressor.flush())
    if compressed > MAX_COMPRESSED:
        raise CompileError(
            "ScriptTooLarge",
            f"spec.modules: {compressed} bytes after gzip, over the {MAX_COMPRESSED} byte "
            "limit; trim the Worker's modules",
        )
