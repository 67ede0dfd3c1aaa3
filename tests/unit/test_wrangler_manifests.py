"""One Worker's manifests from its config and the files read for it (pure: no directory)."""

from __future__ import annotations

from typing import Any

import pytest

from edgeplane.wrangler.config import DevVars
from edgeplane.wrangler.errors import WranglerImportError
from edgeplane.wrangler.manifests import (
    CONFIG_MAP_BUDGET,
    Options,
    Result,
    Sources,
    add_worker,
    config_map_key,
    config_maps,
    metadata,
    route_docs,
    stored_size,
    worker_bindings,
)
from edgeplane.wrangler.modules import Module

LABELS = {"app.kubernetes.io/name": "w", "app.kubernetes.io/managed-by": "edgeplane-import"}


@pytest.mark.parametrize(
    ("name", "taken", "key"),
    [
        ("index.js", set(), "index.js"),
        ("lib/greet.js", set(), "lib__greet.js"),
        ("@scope/pkg+1.js", set(), "_at_scope__pkg_plus_1.js"),
        ("a b~c.js", set(), "a_b_c.js"),
        ("a/b.js", {"a__b.js"}, "a__b.js-2"),  # a taken key gets a number
        ("a/b.js", {"a__b.js", "a__b.js-2"}, "a__b.js-3"),
    ],
)
def test_config_map_key(name: str, taken: set[str], key: str) -> None:
    before = set(taken)
    assert config_map_key(name, taken) == key
    assert taken == before | {key}


@pytest.mark.parametrize(
    ("module", "size"),
    [
        (Module("a.js", "esModule", b"x" * 10), 14),
        (Module("t.txt", "text", b""), 5),
        (Module("b.bin", "data", b"x" * 30), 45),  # base64: 4/3 of the bytes
        (Module("c.wasm", "wasm", b"x" * 3), 10),
    ],
)
def test_stored_size(module: Module, size: float) -> None:
    assert stored_size(module) == size


def _module(name: str, size: int, type_: str = "esModule") -> Module:
    return Module(name, type_, b"x" * (size - len(name)))  # stored_size == size


HALF = CONFIG_MAP_BUDGET // 2


@pytest.mark.parametrize(
    ("sizes", "maps"),
    [
        ([10], [["a0"]]),
        ([10, 20, 30], [["a0", "a1", "a2"]]),
        ([HALF, HALF], [["a0", "a1"]]),  # exactly the budget fits
        ([HALF, HALF + 1], [["a0"], ["a1"]]),
        ([HALF, HALF, HALF], [["a0", "a1"], ["a2"]]),
        ([HALF + 1, 10, HALF], [["a0", "a1"], ["a2"]]),  # filled in order, never reordered
        ([CONFIG_MAP_BUDGET], [["a0"]]),
    ],
)
def test_config_maps_fill_in_order_up_to_the_budget(
    sizes: list[int], maps: list[list[str]]
) -> None:
    modules = [_module(f"a{i}", s) for i, s in enumerate(sizes)]
    docs, entries = config_maps("w", modules, None)
    assert [sorted(d["data"]) for d in docs] == maps
    names = ["w-modules"] if len(maps) == 1 else [f"w-modules-{i + 1}" for i in range(len(maps))]
    assert [d["metadata"]["name"] for d in docs] == names
    where = {key: name for name, keys in zip(names, maps, strict=True) for key in keys}
    assert [e["configMapKeyRef"] for e in entries] == [
        {"name": where[m.name], "key": m.name} for m in modules
    ]


def test_config_maps_store_binary_as_base64_and_name_non_default_types() -> None:
    modules = [
        Module("index.js", "esModule", b"export default {};"),
        Module("lib/t.txt", "text", b"hi\n"),
        Module("add.wasm", "wasm", b"\x00asm"),
    ]
    docs, entries = config_maps("w", modules, "apps")
    assert docs == [{
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "w-modules", "namespace": "apps", "labels": LABELS},
        "data": {"index.js": "export default {};", "lib__t.txt": "hi\n"},
        "binaryData": {"add.wasm": "AGFzbQ=="},
    }]
    assert entries == [
        {"name": "index.js", "configMapKeyRef": {"name": "w-modules", "key": "index.js"}},
        {"name": "lib/t.txt", "type": "text",
         "configMapKeyRef": {"name": "w-modules", "key": "lib__t.txt"}},
        {"name": "add.wasm", "type": "wasm",
         "configMapKeyRef": {"name": "w-modules", "key": "add.wasm"}},
    ]


@pytest.mark.parametrize(
    ("modules", "message"),
    [
        ([_module("big.js", CONFIG_MAP_BUDGET + 1)],
         r"w: module big.js is \d+ bytes, more than one ConfigMap holds"),
        ([Module("t.txt", "text", b"\xff")],
         r"w: module t.txt \(text\) is not UTF-8; add a rules entry with type Data"),
        # The first problem in module order is the one reported.
        ([Module("t.txt", "text", b"\xff"), _module("big.js", CONFIG_MAP_BUDGET + 1)],
         "is not UTF-8"),
    ],
)
def test_config_maps_refuse(modules: list[Module], message: str) -> None:
    with pytest.raises(WranglerImportError, match=message):
        config_maps("w", modules, None)


@pytest.mark.parametrize(
    ("name", "namespace", "expected"),
    [
        ("w-1", None, {"name": "w-1", "labels": LABELS}),
        ("w", "apps", {"name": "w", "namespace": "apps", "labels": LABELS}),
    ],
)
def test_metadata(name: str, namespace: str | None, expected: dict[str, Any]) -> None:
    assert metadata(name, "w", namespace) == expected


@pytest.mark.parametrize(
    ("cfg", "dev_vars", "bindings", "secrets", "unsupported"),
    [
        ({}, None, [], {}, {}),
        (
            {"vars": {"A": "a"}, "secrets": {"required": ["A", "S"]},
             "kv_namespaces": [{"binding": "K", "id": "k"}],
             "durable_objects": {"bindings": [{"name": "D", "class_name": "C"}]},
             "services": [{"binding": "V", "service": "v"}]},
            None,
            ["A", "S", "K", "D", "V"],  # vars, secrets, KV, DOs, services
            {"w-secrets": ["S"]},
            {},
        ),
        ({}, DevVars(".dev.vars", b"S=1\n"), ["S"], {"w-secrets": ["S"]}, {}),
        # Every declared name is a var: the Secret is listed without keys.
        ({"vars": {"A": "a"}, "secrets": ["A"]}, None, ["A"], {"w-secrets": []}, {}),
        (
            {"durable_objects": {"bindings": [{"name": "D", "class_name": "C",
                                               "script_name": "x"}]},
             "services": [{"binding": "V", "service": "v", "entrypoint": "E"}]},
            None, [], {},
            {"w": ["durable_objects.bindings[D].script_name=x", "services[V].entrypoint=E"]},
        ),
    ],
)
def test_worker_bindings(
    cfg: dict[str, Any], dev_vars: DevVars | None, bindings: list[str],
    secrets: dict[str, list[str]], unsupported: dict[str, list[str]],
) -> None:
    result = Result()
    assert [b["name"] for b in worker_bindings(cfg, "w", dev_vars, result)] == bindings
    assert result.secrets == secrets
    assert result.unsupported == unsupported


@pytest.mark.parametrize(
    ("raw", "names", "warnings"),
    [
        ("a.example/*", ["w"], []),
        (["a.example/*", "b.example/*"], ["w-1", "w-2"], []),
        (None, [], ["w: no routes; add a WorkerRoute for it to receive requests"]),
        ([], [], ["w: no routes; add a WorkerRoute for it to receive requests"]),
    ],
)
def test_route_docs(raw: Any, names: list[str], warnings: list[str]) -> None:
    warn: list[str] = []
    docs = route_docs("w", raw, None, warn)
    assert [d["metadata"]["name"] for d in docs] == names
    assert all(d["spec"]["worker"] == "w" for d in docs)
    assert warn == warnings


MAIN = Module("index.js", "esModule", b"export default {};")
CFG = {"name": "w", "compatibility_date": "2025-01-01", "route": "w.example/*"}


def test_add_worker_builds_a_project_without_a_directory() -> None:
    result = Result()
    cfg = {**CFG, "vars": {"A": "a"}, "account_id": "x", "r2_buckets": [{}]}
    add_worker(cfg, cfg, "w", Sources([MAIN], [], None), Options(namespace="ns"), result)
    assert [(d["kind"], d["metadata"]["name"]) for d in result.docs] == [
        ("ConfigMap", "w-modules"), ("Worker", "w"), ("WorkerRoute", "w"),
    ]
    assert result.docs[1]["spec"] == {
        "compatibilityDate": "2025-01-01",
        "mainModule": "index.js",
        "modules": [{"name": "index.js", "configMapKeyRef": {"name": "w-modules",
                                                             "key": "index.js"}}],
        "bindings": [{"name": "A", "plainText": "a"}],
    }
    assert result.unsupported == {"w": ["r2_buckets"]}
    assert result.ignored == {"w": ["account_id"]}
    assert result.warnings == []


@pytest.mark.parametrize(
    ("cfg", "top", "spec"),
    [
        # An environment inherits date and flags; an empty list of its own clears flags.
        ({}, {**CFG, "compatibility_flags": ["f"]},
         {"compatibilityDate": "2025-01-01", "compatibilityFlags": ["f"]}),
        ({"compatibility_flags": []}, {**CFG, "compatibility_flags": ["f"]},
         {"compatibilityDate": "2025-01-01"}),
        ({"compatibility_date": "2024-06-01"}, CFG, {"compatibilityDate": "2024-06-01"}),
    ],
)
def test_add_worker_inherits(
    cfg: dict[str, Any], top: dict[str, Any], spec: dict[str, Any]
) -> None:
    result = Result()
    add_worker(cfg, top, "w", Sources([MAIN], [], None), Options(), result)
    worker = next(d for d in result.docs if d["kind"] == "Worker")
    picked = {k: v for k, v in worker["spec"].items() if k.startswith("compatibility")}
    assert picked == spec
    assert result.warnings == []


@pytest.mark.parametrize(
    ("incomplete", "allow", "error", "listed"),
    [
        ([], False, None, {}),
        ([], True, None, {}),
        (['"hono" (imported by src/index.ts)'], False,
         'w: these imports will not load: "hono" \\(imported by src/index.ts\\); install them',
         {}),
        (['"hono" (imported by src/index.ts)'], True, None,
         {"w": ['"hono" (imported by src/index.ts)']}),
    ],
)
def test_a_worker_whose_imports_will_not_load_is_refused_unless_allowed(
    incomplete: list[str], allow: bool, error: str | None, listed: dict[str, list[str]]
) -> None:
    result = Result()
    sources = Sources([MAIN], incomplete, None, built="bundled index.js")
    if error:
        with pytest.raises(WranglerImportError, match=error):
            add_worker(CFG, CFG, "w", sources, Options(allow_incomplete=allow), result)
        return
    add_worker(CFG, CFG, "w", sources, Options(allow_incomplete=allow), result)
    assert result.incomplete == listed
    assert result.built == {"w": "bundled index.js"}
    assert any("will not load" in w for w in result.warnings) == bool(listed)


@pytest.mark.parametrize(
    ("cfg", "opts", "message"),
    [
        ({"name": "w"}, Options(), "w: no compatibility_date; add one"),
        ({**CFG, "compatibility_date": "2025-13-01"}, Options(),
         "w: compatibility_date '2025-13-01' is not a date; write YYYY-MM-DD"),
        ({**CFG, "compatibility_flags": ["Node-Compat"]}, Options(),
         r"w: the Worker would be rejected: spec.compatibilityFlags\[0\]: String should match"),
        (CFG, Options(target_labels=(("region", "not a value"),)),
         "w: the Worker would be rejected"),
        ({**CFG, "route": "w.example/*.jpg"}, Options(), r"w: route 'w.example/\*.jpg'"),
    ],
)
def test_add_worker_refuses(cfg: dict[str, Any], opts: Options, message: str) -> None:
    with pytest.raises(WranglerImportError, match=message):
        add_worker(cfg, cfg, "w", Sources([MAIN], [], None), opts, Result())
