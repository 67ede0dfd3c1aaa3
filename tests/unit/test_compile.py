"""The compile step: deterministic version ids and precise errors, with no servers."""

from __future__ import annotations

import base64
import hashlib
import os
from typing import Any

import pytest

from edgeplane.api import Worker
from edgeplane.compile import MAX_COMPRESSED, CompileError, Sources, compile_worker


def worker(spec: dict[str, Any], name: str = "hello", ns: str = "team-a") -> Worker:
    base = {"compatibilityDate": "2026-01-01"}
    return Worker.model_validate(
        {"metadata": {"name": name, "namespace": ns, "uid": "u"}, "spec": {**base, **spec}}
    )


HELLO = {"modules": [{"name": "index.js", "inline": "export default {fetch(){}}"}]}


def test_same_input_same_version_and_any_change_a_new_one() -> None:
    a = compile_worker(worker(HELLO), Sources())
    b = compile_worker(worker(HELLO), Sources())
    assert a.version == b.version and a.version is not None and len(a.version) == 64
    changed = {"modules": [{"name": "index.js", "inline": "export default {fetch(){ }}"}]}
    assert compile_worker(worker(changed), Sources()).version != a.version
    flags = {**HELLO, "compatibilityFlags": ["nodejs_compat"]}
    assert compile_worker(worker(flags), Sources()).version != a.version


def test_version_id_is_the_sha256_of_the_canonical_bundle() -> None:
    bundle = compile_worker(worker(HELLO), Sources())
    assert bundle.version == hashlib.sha256(bundle.canonical()).hexdigest()
    assert bundle.worker == "team-a.hello"


def test_main_module_goes_first_and_others_keep_their_order() -> None:
    spec = {
        "mainModule": "main.js",
        "modules": [
            {"name": "a.js", "inline": "export const a = 1"},
            {"name": "main.js", "inline": "export default {}"},
            {"name": "b.txt", "type": "text", "inline": "hi"},
        ],
    }
    bundle = compile_worker(worker(spec), Sources())
    assert [m.name for m in bundle.modules] == ["main.js", "a.js", "b.txt"]


def test_sources_resolve_from_config_maps_secrets_and_urls() -> None:
    wasm = b"\0asm\1\0\0\0"
    sha = hashlib.sha256(b"export const lib = 1").hexdigest()
    spec = {
        "modules": [
            {"name": "index.js", "configMapKeyRef": {"name": "code", "key": "index.js"}},
            {"name": "m.wasm", "type": "wasm", "configMapKeyRef": {"name": "code", "key": "w"}},
            {"name": "lib.js", "url": "https://example.com/lib.js", "sha256": sha},
        ],
        "bindings": [
            {"name": "TOKEN", "secretKeyRef": {"name": "creds", "key": "token"}},
            {"name": "CONF", "json": {"b": [1, 2], "a": None}},
            {"name": "OTHER", "service": {"worker": "backend"}},
            {"name": "CACHE", "kvNamespace": {"namespace": "cache"}},
        ],
    }
    sources = Sources(
        config_maps={"code": {"index.js": "export default {}", "w": wasm}},
        secrets={"creds": {"token": b"s3cret-value"}},
        urls={sha: b"export const lib = 1"},
    )
    bundle = compile_worker(worker(spec), sources)
    by_name = {m.name: m for m in bundle.modules}
    assert by_name["index.js"].content == "export default {}"
    assert base64.b64decode(by_name["m.wasm"].content) == wasm
    assert by_name["lib.js"].content == "export const lib = 1"
    b = {x.name: x for x in bundle.bindings}
    assert b["TOKEN"].secret == "s3cret-value"
    assert b["CONF"].json_ == '{"a":null,"b":[1,2]}'
    assert b["OTHER"].service == "team-a.backend"
    assert b["CACHE"].kv_namespace == "team-a.cache"  # never shared across namespaces
    assert "s3cret-value" not in repr(bundle)


@pytest.mark.parametrize(
    ("spec", "sources", "reason", "fragment"),
    [
        (
            {"modules": [{"name": "i.js", "configMapKeyRef": {"name": "code", "key": "i.js"}}]},
            Sources(),
            "SourceNotFound",
            "spec.modules[0] (i.js).configMapKeyRef: ConfigMap team-a/code not found",
        ),
        (
            {"modules": [{"name": "i.js", "configMapKeyRef": {"name": "code", "key": "i.js"}}]},
            Sources(config_maps={"code": {"other": "x"}}),
            "SourceNotFound",
            "has no key 'i.js'",
        ),
        (
            {**HELLO, "bindings": [{"name": "T", "secretKeyRef": {"name": "s", "key": "k"}}]},
            Sources(),
            "SourceNotFound",
            "spec.bindings[0] (T).secretKeyRef: Secret team-a/s not found",
        ),
        (
            {"modules": [{"name": "i.js", "configMapKeyRef": {"name": "c", "key": "k"}}]},
            Sources(config_maps={"c": {"k": b"\xff\xfe"}}),
            "InvalidSource",
            "must be UTF-8 text",
        ),
        (
            {"modules": [{"name": "d.json", "type": "json", "inline": "{nope"}]},
            Sources(),
            "InvalidSource",
            "spec.modules[0] (d.json): not valid JSON",
        ),
        (
            {"modules": [{"name": "i.js", "url": "https://x.example/i.js", "sha256": "a" * 64}]},
            Sources(),
            "SourceNotFound",
            "could not be downloaded",
        ),
        (
            {"modules": [{"name": "i.js", "url": "https://x.example/i.js", "sha256": "a" * 64}]},
            Sources(url_errors={("https://x.example/i.js", "a" * 64): "the server answered 404"}),
            "SourceNotFound",
            "spec.modules[0].url (i.js): the server answered 404",
        ),
        (
            {"modules": [{"name": "i.js", "url": "https://x.example/i.js", "sha256": "a" * 64}]},
            Sources(urls={"a" * 64: b"tampered"}),
            "SourceChecksumMismatch",
            "spec.modules[0] (i.js).sha256",
        ),
    ],
)
def test_errors_name_the_field_and_the_fix(
    spec: dict[str, Any], sources: Sources, reason: str, fragment: str
) -> None:
    with pytest.raises(CompileError) as err:
        compile_worker(worker(spec), sources)
    assert err.value.reason == reason
    assert fragment in err.value.message


REF = "registry.example/acme/app@sha256:" + "b" * 64
OCI = {"modules": [{"name": "i.js", "oci": {"ref": REF, "file": "i.js"}}]}


@pytest.mark.parametrize(
    ("sources", "reason", "retry", "fragment"),
    [
        # Not pulled (the resolver gave no answer): retried, never a guess.
        (Sources(), "ArtifactUnavailable", True, f"spec.modules[0] (i.js).oci: {REF}"),
        (
            Sources(artifact_errors={(REF, "i.js"): ("ArtifactUnavailable", f"{REF}: down", True)}),
            "ArtifactUnavailable", True, f"spec.modules[0] (i.js).oci: {REF}: down",
        ),
        (
            Sources(artifact_errors={
                (REF, "i.js"): ("ArtifactDigestMismatch", f"{REF}: layer refused", False)
            }),
            "ArtifactDigestMismatch", False, "layer refused",
        ),
    ],
)
def test_oci_errors_name_the_ref_and_say_if_they_pass_by_themselves(
    sources: Sources, reason: str, retry: bool, fragment: str
) -> None:
    with pytest.raises(CompileError) as err:
        compile_worker(worker(OCI), sources)
    assert (err.value.reason, err.value.retry) == (reason, retry)
    assert fragment in err.value.message


def test_an_oci_module_compiles_from_its_pulled_bytes() -> None:
    body = b"export default {fetch(){}}"
    bundle = compile_worker(worker(OCI), Sources(artifacts={(REF, "i.js"): body}))
    assert bundle.modules[0].content.encode() == body
    inline = compile_worker(worker({"modules": [{"name": "i.js", "inline": body.decode()}]}),
                            Sources())
    assert bundle.version == inline.version  # the same code is the same version


def test_size_limit_is_measured_after_compression() -> None:
    # 11 MB that compresses well is fine; 11 MB of noise is over the 10 MB limit.
    big = "x" * (11 * 1000 * 1000)
    spec = {"modules": [{"name": "i.js", "configMapKeyRef": {"name": "c", "key": "k"}}]}
    compile_worker(worker(spec), Sources(config_maps={"c": {"k": "export default {};//" + big}}))
    noise = base64.b64encode(os.urandom(MAX_COMPRESSED)).decode()
    with pytest.raises(CompileError) as err:
        compile_worker(worker(spec), Sources(config_maps={"c": {"k": noise}}))
    assert err.value.reason == "ScriptTooLarge"
    assert "after gzip" in err.value.message
