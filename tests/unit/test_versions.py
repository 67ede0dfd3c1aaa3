"""WorkerVersion decisions (pure): the recorded object, its archive ConfigMaps, pruning,
and version references."""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from edgeplane.api import Worker, WorkerVersion
from edgeplane.api.crdgen import resource_schema
from edgeplane.compile import CompileError, Sources, compile_worker
from edgeplane.versions.archive import PART_KEY, ArchiveError
from edgeplane.versions.objects import (
    WORKER_LABEL,
    Known,
    archive_config_map,
    archived_modules,
    known_version,
    match_ref,
    rebuilt_modules,
    to_prune,
    version_object,
)

T0 = datetime(2026, 11, 1, tzinfo=UTC)
A, B, C = "a" * 64, "ab" + "0" * 62, "c" * 64


def _item(name: str, created: str, generation: int | None = None) -> dict:
    spec = {"created": created, **({} if generation is None else {"workerGeneration": generation})}
    return {"metadata": {"name": name}, "spec": spec}


ITEMS = [_item("w-1", "2026-11-01"), _item("w-2", "2026-11-02"), _item("w-3", "2026-11-03")]


@pytest.mark.parametrize(
    ("retained", "keep", "pruned"),
    [
        (3, set(), []),  # nothing beyond the newest three
        (2, set(), ["w-1"]),
        (1, set(), ["w-2", "w-1"]),  # newest first
        (1, {"w-1"}, ["w-2"]),  # in use (ready version, a split): kept however old
        (0, {"w-1", "w-2", "w-3"}, []),
    ],
)
def test_to_prune(retained: int, keep: set[str], pruned: list[str]) -> None:
    assert to_prune(ITEMS, retained, keep) == pruned


@pytest.mark.parametrize(
    ("items", "pruned"),
    [
        # `created` has whole seconds: two edits within one are told apart by generation.
        ([_item("w-a", "2026-11-01", 2), _item("w-b", "2026-11-01", 1)], ["w-b"]),
        ([_item("w-b", "2026-11-01", 1), _item("w-a", "2026-11-01", 2)], ["w-b"]),
        ([_item("w-a", "2026-11-02", 1), _item("w-b", "2026-11-01", 2)], ["w-b"]),  # time first
        ([_item("w-b", "2026-11-01"), _item("w-a", "2026-11-01")], ["w-a"]),  # then by name
    ],
)
def test_to_prune_orders_equal_times(items: list[dict], pruned: list[str]) -> None:
    assert to_prune(items, 1, set()) == pruned


@pytest.mark.parametrize(
    ("ref", "expected", "error"),
    [
        (A, A, None),  # a full id
        ("aaaaaaaa", A, None),  # a unique prefix
        ("ab000000", B, None),
        ("a", None, "matches 2 versions of Worker w; give more digits"),
        ("dddddddd", None, "no retained version of Worker w starts with 'dddddddd'"),
    ],
)
def test_match_ref(ref: str, expected: str | None, error: str | None) -> None:
    ids = [A, B, C]
    if error is None:
        assert match_ref(ids, ref, "spec.version", "ns", "w") == expected
        return
    with pytest.raises(CompileError) as e:
        match_ref(ids, ref, "spec.version", "ns", "w")
    assert e.value.reason == "VersionNotFound"
    assert e.value.message.startswith("spec.version: ")  # names the field
    assert error in e.value.message
    assert f"kubectl get workerversions -n ns -l {WORKER_LABEL}=w" in e.value.message


def _worker() -> Worker:
    return Worker.model_validate(
        {
            "apiVersion": "edgeplane.io/v1alpha1",
            "kind": "Worker",
            "metadata": {"name": "hello", "namespace": "apps", "uid": "u-1", "generation": 4},
            "spec": {
                "compatibilityDate": "2024-09-23",
                "modules": [{"name": "index.js", "inline": "export default {}"}],
                "bindings": [{"name": "GREETING", "plainText": "hi"}],
            },
        }
    )


def test_version_object_records_identity_owner_and_summaries() -> None:
    worker = _worker()
    bundle = compile_worker(worker, Sources())
    obj = version_object(worker, bundle, parts=2, now=T0).to_wire()
    assert obj["metadata"]["name"] == f"hello-{bundle.version[:12]}"
    assert obj["metadata"]["labels"] == {WORKER_LABEL: "hello"}
    owner = obj["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == (
        "Worker",
        "hello",
        "u-1",
        True,
    )
    spec = obj["spec"]
    assert spec["versionId"] == bundle.version and spec["workerGeneration"] == 4
    assert spec["archiveParts"] == 2
    assert [m["name"] for m in spec["modules"]] == ["index.js"]
    assert spec["bindings"] == [{"name": "GREETING", "kind": "plainText"}]


def test_the_record_leaves_defaults_out_and_reads_back_the_same() -> None:
    """etcd keeps every retained version: fields at their defaults are not written (nor
    named again in managedFields), and parse back to the same spec; a record written
    before, with every field, still reads."""
    worker = _worker()
    obj = version_object(worker, compile_worker(worker, Sources()), parts=0, now=T0)
    wire = obj.to_wire()
    spec, source = wire["spec"], wire["spec"]["source"]
    assert {"archiveParts", "compatibilityFlags"} & spec.keys() == set()
    assert {"rollout", "targets", "imagePullSecrets", "compatibilityFlags"} & source.keys() == set()
    assert "type" not in source["modules"][0]  # esModule, the default
    assert spec["bindings"] == [{"name": "GREETING", "kind": "plainText"}]  # not a default
    assert WorkerVersion.model_validate(wire).spec == obj.spec
    old = {**wire, "spec": obj.spec.model_dump(mode="json", by_alias=True, exclude_none=True)}
    assert old["spec"]["archiveParts"] == 0 and old["spec"]["source"]["rollout"]
    assert WorkerVersion.model_validate(old).spec == obj.spec
    known = known_version({**wire, "metadata": {**wire["metadata"], "uid": "v"}})
    assert known is not None and known.complete


def test_the_recorded_spec_is_atomic_for_managed_fields() -> None:
    """The apiserver names an atomic object's fields once (`f:spec`) in managedFields,
    not each of them again; the spec is written whole and never changes."""
    spec = resource_schema(WorkerVersion)["properties"]["spec"]
    assert spec["x-kubernetes-map-type"] == "atomic"
    assert spec["x-kubernetes-validations"][0]["rule"] == "self == oldSelf"


def test_archive_config_map_is_immutable_and_owned_by_the_version() -> None:
    created = {
        "metadata": {
            "name": "hello-abc",
            "namespace": "apps",
            "uid": "v-1",
            "labels": {WORKER_LABEL: "hello"},
        }
    }
    cm = archive_config_map(created, 1, b"\x1f\x8b part")
    assert cm["metadata"]["name"] == "hello-abc-m1"
    assert cm["metadata"]["ownerReferences"][0]["uid"] == "v-1"
    assert cm["metadata"]["ownerReferences"][0]["kind"] == "WorkerVersion"
    assert cm["immutable"] is True
    assert base64.b64decode(cm["binaryData"][PART_KEY]) == b"\x1f\x8b part"


def _mixed_worker(main: str) -> Worker:
    """Two inline modules and one from a ConfigMap (which only the archive keeps)."""
    return Worker.model_validate(
        {
            "apiVersion": "edgeplane.io/v1alpha1",
            "kind": "Worker",
            "metadata": {"name": "mixed", "namespace": "team-a", "uid": "u-2", "generation": 1},
            "spec": {
                "compatibilityDate": "2025-01-01",
                "mainModule": main,
                "modules": [
                    {"name": "lib.js", "inline": "export const x = 1;"},
                    {"name": "index.js", "inline": "import {x} from './lib.js'; export default {}"},
                    {
                        "name": "data.json",
                        "type": "json",
                        "configMapKeyRef": {"name": "cfg", "key": "data.json"},
                    },
                ],
            },
        }
    )


MIXED_SOURCES = Sources(config_maps={"cfg": {"data.json": '{"a": 1}'}})


@pytest.mark.parametrize("main", ["index.js", "lib.js"])
def test_only_modules_not_inline_are_archived_and_the_rest_rebuilt_in_order(main: str) -> None:
    worker = _mixed_worker(main)
    bundle = compile_worker(worker, MIXED_SOURCES)
    archived = archived_modules(worker.spec, bundle.modules)
    assert [m.name for m in archived] == ["data.json"]
    digests = {m.name: hashlib.sha256(m.raw()).hexdigest() for m in bundle.modules}
    rebuilt = rebuilt_modules(worker.spec, "team-a", list(archived), digests)
    assert tuple(rebuilt) == bundle.modules  # main first, the others as listed
    # An archive from an older operator holds every module: taken as it is.
    assert tuple(rebuilt_modules(worker.spec, "team-a", list(bundle.modules), digests)) == (
        bundle.modules
    )


@pytest.mark.parametrize(
    ("archived", "digest_of_lib", "error"),
    [
        ([], None, "module data.json is neither in its archive nor inline"),
        (None, "0" * 64, "module lib.js does not match its recorded sha256"),
    ],
    ids=["archive-lost", "inline-differs"],
)
def test_a_module_that_cannot_be_rebuilt_is_named(
    archived: list | None, digest_of_lib: str | None, error: str
) -> None:
    worker = _mixed_worker("index.js")
    bundle = compile_worker(worker, MIXED_SOURCES)
    digests = {m.name: hashlib.sha256(m.raw()).hexdigest() for m in bundle.modules}
    if digest_of_lib:
        digests["lib.js"] = digest_of_lib
    kept = list(archived_modules(worker.spec, bundle.modules)) if archived is None else archived
    with pytest.raises(ArchiveError, match=error):
        rebuilt_modules(worker.spec, "team-a", kept, digests)


def _site() -> tuple[Any, dict[str, bytes]]:
    from edgeplane.api.worker import WorkerAssets
    from edgeplane.compile.assets import compile_assets

    spec = WorkerAssets.model_validate({"configMap": {"name": "s"}})
    out = compile_assets(spec, {"index.html": b"<h1>", "logo.png": b"\x89PNG"})
    return out.wire, dict(out.blobs)


def test_assets_ride_in_the_archive_and_come_back_checked() -> None:
    from edgeplane.versions.archive import pack, unpack, unpack_all
    from edgeplane.wire import BundleModule, ModuleType

    mod = BundleModule(name="a.js", type=ModuleType.ES_MODULE, content="export default {}")
    digests = {"a.js": hashlib.sha256(mod.raw()).hexdigest()}
    site, blobs = _site()
    parts = pack((mod,), site, blobs)
    assert unpack_all(parts, digests) == ([mod], site, blobs)
    assert unpack(parts, digests) == [mod]
    # Without assets the archive is the list of modules it always was (old archives load).
    assert unpack_all(pack((mod,)), digests) == ([mod], None, {})
    with pytest.raises(ArchiveError, match="is not held"):
        pack((mod,), site, {})
    bad = {s: b + b"!" if b == b"<h1>" else b for s, b in blobs.items()}
    raw = {"modules": [mod.model_dump(mode="json")], "assets": site.model_dump(mode="json"),
           "blobs": {s: base64.b64encode(b).decode() for s, b in bad.items()}}
    damaged = [gzip.compress(json.dumps(raw).encode())]
    with pytest.raises(ArchiveError, match="does not match its recorded sha256"):
        unpack_all(damaged, digests)


def _listed(
    name: str = "w-" + A[:12], worker: str | None = "w", version: str | None = A,
    parts: int = 0, status: dict[str, Any] | None = None, deleting: bool = False,
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": "ns"}
    if deleting:
        meta["deletionTimestamp"] = "2026-11-02T00:00:00Z"
    spec = {"worker": worker, "versionId": version, "created": "2026-11-01T00:00:00Z",
            "workerGeneration": 4, "archiveParts": parts}
    return {"metadata": meta, "spec": spec, "status": status}


KNOWN = Known("ns", "w", "w-" + A[:12], "2026-11-01T00:00:00Z", 4, complete=True)


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        (_listed(), KNOWN),
        # servingTargets an earlier operator wrote says nothing any more.
        (_listed(status={"servingTargets": 3}), KNOWN),
        # An archive may be missing (killed between the writes): its record writes it again.
        (_listed(parts=2), Known(**{**KNOWN.__dict__, "complete": False})),
        (_listed(deleting=True), None),
        (_listed(worker=None), None),
        (_listed(version=None), None),
        (_listed(name="someone-else"), None),  # not named after its Worker and version
        ({"metadata": {}}, None),
    ],
)
def test_known_version(item: dict[str, Any], expected: Known | None) -> None:
    assert known_version(item) == expected
