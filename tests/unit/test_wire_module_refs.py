"""Modules by reference on the wire (wire.BundleModule.sha256): what a version id hashes,
what a location is sent and stores, and what it rebuilds from its blobs."""

from __future__ import annotations

import base64
import hashlib

import pytest
from pydantic import ValidationError

from edgeplane.wire import Bundle, BundleModule, Deployment, ModuleType, blobs_of

JS = b"export default { fetch() { return new Response('hi'); } };"
LIB = b"export const x = 1;"
WASM = bytes.fromhex("0061736d01000000")


def _sha(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def _bundle(worker: str = "ns.a", lib: bytes = LIB) -> Bundle:
    return Bundle(
        worker=worker,
        compatibilityDate="2025-01-01",
        mainModule="index.js",
        modules=(
            BundleModule(name="index.js", type=ModuleType.ES_MODULE, content=JS.decode()),
            BundleModule(name="lib.js", type=ModuleType.ES_MODULE, content=lib.decode()),
            BundleModule(
                name="m.wasm", type=ModuleType.WASM, content=base64.b64encode(WASM).decode()
            ),
        ),
    ).with_version()


BLOBS = {_sha(r): r for r in (JS, LIB, WASM)}


def test_a_version_id_is_the_same_whole_or_by_reference() -> None:
    whole = _bundle()
    ref = whole.by_reference()
    assert [m.content for m in ref.modules] == [None, None, None]
    assert [m.sha256 for m in ref.modules] == [_sha(JS), _sha(LIB), _sha(WASM)]
    assert ref.version == whole.version
    # Where to pull the modules from is delivery, not the version.
    pulled = whole.model_copy(update={"repository": "reg.example:5000/v/ns/a"})
    assert pulled.compute_version() == whole.version
    back = ref.hydrated(BLOBS.__getitem__)
    assert back.compute_version() == whole.version
    assert [m.raw() for m in back.modules] == [JS, LIB, WASM]
    assert [m.sha256 for m in back.modules] == [m.sha256 for m in ref.modules]


@pytest.mark.parametrize(
    ("blobs", "error"),
    [
        # A blob that is not the module the id was made with: the id does not match.
        ({**BLOBS, _sha(LIB): b"export const x = 2;"}, ValueError),
        # A blob the location lacks: what the reader raises (the agent answers 424).
        ({k: v for k, v in BLOBS.items() if v != LIB}, KeyError),
    ],
    ids=["other-bytes", "missing"],
)
def test_rebuilding_from_blobs_refuses(blobs: dict[str, bytes], error: type[Exception]) -> None:
    ref = _bundle().by_reference()
    with pytest.raises(error):
        ref.hydrated(blobs.__getitem__)


@pytest.mark.parametrize(
    ("module", "problem"),
    [
        ({"name": "a.js", "type": "esModule"}, "needs content or sha256"),
        ({"name": "a.js", "type": "esModule", "sha256": "ab"}, "sha256"),
        ({"name": "a.js", "type": "esModule", "sha256": "A" * 64}, "sha256"),
    ],
)
def test_a_module_names_content_or_its_sha256(module: dict[str, str], problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        BundleModule.model_validate(module)


def test_a_version_by_reference_names_every_module_blob() -> None:
    a, b = _bundle("ns.a"), _bundle("ns.a", lib=b"export const x = 3;")
    d = Deployment(worker="ns.a", primary=a.version or "", versions=(a, b))
    lib3 = b"export const x = 3;"
    assert blobs_of([d]) == set()  # whole: nothing to send apart
    assert blobs_of([d.by_reference()]) == {_sha(JS), _sha(LIB), _sha(WASM), _sha(lib3)}
    # A hydrated deployment (what an agent holds) keeps them referenced: not collected.
    held = d.by_reference().hydrated({**BLOBS, _sha(lib3): lib3}.__getitem__)
    assert blobs_of([held]) == blobs_of([d.by_reference()])


def test_a_module_with_content_gets_its_sha256_computed_not_trusted() -> None:
    main, lib, wasm = _bundle().modules
    wrong = lib.model_copy(update={"sha256": "0" * 64})
    b = _bundle().model_copy(update={"modules": (main, wrong, wasm)})
    rebuilt = b.hydrated(BLOBS.__getitem__)
    assert rebuilt.modules[1].sha256 == _sha(LIB)
