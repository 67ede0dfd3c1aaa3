"""The pure parts of the edge agent: what the front and the cells run (edgeplane.edge.render:
escaping, code specs, the front's state, the configs), store writes, auth."""

from __future__ import annotations

import asyncio
import base64
import json
import re
from pathlib import Path, PurePath
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from edgeplane.edge import render
from edgeplane.edge.access import token_ok
from edgeplane.edge.blobs import Blobs
from edgeplane.edge.host_js import HOST_JS
from edgeplane.edge.store import Store, atomic_write, json_member, json_object, purge_leftovers
from edgeplane.routing import parse_pattern, sort_most_specific_first
from edgeplane.wire import Bundle, BundleBinding, BundleModule, Deployment, ModuleType, Route
from tests.route_cases import VALID

KEY = "k" * 43  # the location's internal key (store.load_internal_key)

PATHS = render.Paths(
    do_dir=PurePath("/state/do"),
    kv_dir=PurePath("/state/kv"),
    code_dir=PurePath("/state/code"),
    front_dir=PurePath("/state/front"),
)
RAW = bytes(range(256))
B64 = base64.b64encode(RAW).decode()
# One module of each type, as a bundle holds them (binary content in base64).
MODULES = [
    {"name": "index.js", "type": "esModule", "content": "export default {}"},
    {"name": "lib.cjs", "type": "commonJsModule", "content": "module.exports = 1;"},
    {"name": "readme.txt", "type": "text", "content": "hello"},
    {"name": "cfg.json", "type": "json", "content": '{"a": 1}'},
    {"name": "blob.bin", "type": "data", "content": B64},
    {"name": "add.wasm", "type": "wasm", "content": B64},
]
DIGEST = "hmac-sha256:" + "0" * 64
# One binding of each kind, and what a code spec holds for it: the value, never a digest.
BINDINGS = [
    ({"name": "PLAIN", "text": "hello"}, {"name": "PLAIN", "text": "hello"}),
    ({"name": "CFG", "json": '{"a": 1}'}, {"name": "CFG", "json": '{"a": 1}'}),
    ({"name": "KEY", "secret": "hunter2"}, {"name": "KEY", "secret": "hunter2"}),
    (
        {"name": "SIGNED", "secret": "s3", "secretDigest": DIGEST},
        {"name": "SIGNED", "secret": "s3"},
    ),
    ({"name": "OTHER", "service": "ns.b"}, {"name": "OTHER", "service": "ns.b"}),
    ({"name": "CACHE", "kvNamespace": "cache"}, {"name": "CACHE", "kvNamespace": "cache"}),
    (
        {"name": "ROOM", "durableObjectClass": "Room"},
        {"name": "ROOM", "durableObjectClass": "Room"},
    ),
]


def _bundle(worker: str, js: str = "export default {}", **kw: object) -> Bundle:
    return Bundle.model_validate(
        {
            "worker": worker,
            "compatibilityDate": "2024-09-23",
            "mainModule": "index.js",
            "modules": [{"name": "index.js", "type": "esModule", "content": js}],
            **kw,
        }
    ).with_version()


def _dep(
    *bundles: Bundle, routes: tuple[str | dict[str, Any], ...] = (), primary: int = 0
) -> Deployment:
    return Deployment(
        worker=bundles[0].worker,
        primary=bundles[primary].version or "",
        versions=bundles,
        routes=tuple(
            Route.model_validate(r if isinstance(r, dict) else {"pattern": r}) for r in routes
        ),
    )


def _split(pattern: str, *split: tuple[Bundle, int]) -> dict[str, Any]:
    return {"pattern": pattern, "traffic": [{"version": b.version, "percent": p} for b, p in split]}


def _unescape(lit: str) -> str:
    """Inverse of render.text for the escapes it emits (as Cap'n Proto reads them)."""
    assert lit.startswith('"') and lit.endswith('"')
    return re.sub(
        r'\\(x[0-9a-f]{2}|"|\\)',
        lambda m: chr(int(m.group(1)[1:], 16)) if m.group(1)[0] == "x" else m.group(1),
        lit[1:-1],
    )


def _skeleton(cfg: str) -> str:
    """A config with every text and data literal emptied: its structure alone."""
    return re.sub(r'"(?:[^"\\]|\\.)*"', '""', cfg)


V1, V2, V3 = (_bundle("ns.a", f"export default {{}} // {i}") for i in (1, 2, 3))
P1, P2, P3 = (b.version or "" for b in (V1, V2, V3))


# ---- escaping ---------------------------------------------------------------------------
@given(st.text())
def test_text_escaping_round_trips_and_never_ends_early(s: str) -> None:
    lit = render.text(s)
    assert _unescape(lit) == s
    inner = lit[1:-1]
    # No unescaped quote and no raw control character inside the literal.
    assert not re.search(r'(?<!\\)(\\\\)*"', inner)
    assert not any(ord(c) < 0x20 for c in inner)


def _hostile_do_worker(s: str) -> Deployment:
    """A Durable Object Worker (its code goes into its cell's config) carrying `s` in every
    free-text place a bundle has: module source, text, secret and json values, a flag."""
    b = _bundle(
        "ns.a",
        js=s,
        compatibilityFlags=[s],
        bindings=[
            {"name": "T", "text": s},
            {"name": "K", "secret": s},
            {"name": "J", "json": json.dumps(s)},
            {"name": "ROOM", "durableObjectClass": "Room"},
        ],
    )
    return _dep(b)


EVIL = '"), (name = "pwn", external = (address = "1.2.3.4:80")), ("'


@pytest.mark.parametrize("evil", [EVIL, EVIL.replace('"', '\\"'), "\\", '"\n"', "\x00\x7f)"])
def test_hostile_strings_stay_inside_their_literal(evil: str) -> None:
    cfg = render.cell_config(PATHS, 9, KEY, _hostile_do_worker(evil))
    assert _skeleton(cfg) == _skeleton(render.cell_config(PATHS, 9, KEY, _hostile_do_worker("x")))
    assert cfg.count(render.text(evil)) == 4  # module, flag, text, secret
    assert render.text(json.dumps(evil)) in cfg


@given(st.text())
def test_no_string_changes_a_configs_structure(s: str) -> None:
    cfg = render.cell_config(PATHS, 9, KEY, _hostile_do_worker(s))
    assert _skeleton(cfg) == _skeleton(render.cell_config(PATHS, 9, KEY, _hostile_do_worker("x")))


def test_hostile_state_dir_stays_inside_its_literal() -> None:
    """The state dir comes from the agent's command line: a quote in it is still text."""
    evil = render.Paths(*(PurePath(f"/s/{EVIL}/{d}") for d in ("do", "kv", "code", "front")))
    static = _dep(_bundle("ns.a", bindings=[{"name": "R", "durableObjectClass": "R"}]))
    for make in (
        lambda p: render.front_config(p, KEY),
        lambda p: render.cell_config(p, 9, KEY, static),
    ):
        assert _skeleton(make(evil)) == _skeleton(make(PATHS))


# ---- code specs -------------------------------------------------------------------------
def test_code_spec_holds_every_module_and_binding_as_the_host_loads_them() -> None:
    b = _bundle(
        "ns.a",
        compatibilityFlags=["nodejs_compat"],
        modules=MODULES,
        bindings=[given_ for given_, _ in BINDINGS],
    )
    assert render.code_spec(b) == {
        "worker": "ns.a",
        "version": b.version,
        "compatibilityDate": "2024-09-23",
        "compatibilityFlags": ["nodejs_compat"],
        "mainModule": "index.js",
        "modules": MODULES,  # binary content as stored: base64
        "bindings": [spec for _, spec in BINDINGS],
    }


@pytest.mark.parametrize(("binding", "spec"), BINDINGS, ids=[b["name"] for b, _ in BINDINGS])
def test_code_spec_binding(binding: dict[str, str], spec: dict[str, str]) -> None:
    got = render.code_spec(_bundle("ns.a", bindings=[binding]))["bindings"]
    assert got == [spec]
    assert "secretDigest" not in json.dumps(got)  # the file holds the value itself


# Every binding kind but a Durable Object class, which its Worker's own cell serves
# (render.needs_own_cell): a new kind in the wire format needs the host too.
LOADED_KINDS = [
    f.alias or name
    for name, f in BundleBinding.model_fields.items()
    if name not in ("name", "secret_digest", "durable_object_class")
]


@pytest.mark.parametrize("kind", LOADED_KINDS)
def test_host_loads_every_binding_kind_but_durable_objects(kind: str) -> None:
    assert any(kind in spec for _, spec in BINDINGS)  # and a code spec holds it
    assert f"b.{kind} !== undefined" in HOST_JS


@pytest.mark.parametrize("module_type", list(ModuleType))
def test_host_loads_every_module_type(module_type: ModuleType) -> None:
    assert f'case "{module_type.value}":' in HOST_JS


# ---- the front's state ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("d", "traffic"),
    [
        (_dep(V1, V2, routes=("a.test/*",)), [[(P1, 100)]]),  # no split: the primary
        (_dep(V1, V2, routes=("a.test/*",), primary=1), [[(P2, 100)]]),
        (_dep(V1, V2, routes=(_split("a.test/*", (V1, 90), (V2, 10)),)), [[(P1, 90), (P2, 10)]]),
        (_dep(V1, V2, routes=(_split("a.test/*", (V2, 10), (V1, 90)),)), [[(P2, 10), (P1, 90)]]),
        # A 0 % version is dark: never picked by chance (an override still reaches it).
        (_dep(V1, V2, routes=(_split("a.test/*", (V1, 100), (V2, 0)),)), [[(P1, 100)]]),
        (_dep(V1, V2, routes=(_split("a.test/*", (V1, 0), (V2, 100)),)), [[(P2, 100)]]),
        (
            _dep(V1, V2, V3, routes=(_split("a.test/*", (V1, 50), (V2, 0), (V3, 50)),)),
            [[(P1, 50), (P3, 50)]],
        ),
        # Each route its own split.
        (
            _dep(V1, V2, routes=(_split("a.test/*", (V1, 90), (V2, 10)), "b.test/*")),
            [[(P1, 90), (P2, 10)], [(P1, 100)]],
        ),
        (_dep(V1), []),  # no routes: reached through service bindings only
    ],
    ids=[
        "primary",
        "primary-2nd",
        "90-10",
        "10-90",
        "dark-2nd",
        "dark-1st",
        "3-way",
        "2-routes",
        "no-routes",
    ],
)
def test_worker_entry_traffic(d: Deployment, traffic: list[list[tuple[str, int]]]) -> None:
    routes: list[dict[str, Any]] = render.worker_entry(d, "c0")["routes"]  # type: ignore[assignment]
    assert [[(t["version"], t["percent"]) for t in r["traffic"]] for r in routes] == traffic


def test_worker_entry_whole() -> None:
    d = _dep(V1, V2, routes=("https://A.test/x", "*.a.test/*"), primary=1)
    p, q = parse_pattern("https://A.test/x"), parse_pattern("*.a.test/*")
    assert render.worker_entry(d, "do:ns.a") == {
        "primary": P2,
        "cell": "do:ns.a",
        "versions": [P1, P2],
        "routes": [
            {
                "pattern": p.to_json(),
                "rank": render.route_rank(p),
                "traffic": [{"version": P2, "percent": 100}],
            },
            {
                "pattern": q.to_json(),
                "rank": render.route_rank(q),
                "traffic": [{"version": P2, "percent": 100}],
            },
        ],
    }


def _distinct(patterns: list[str]) -> list[str]:
    return list({parse_pattern(p).canonical(): p for p in patterns}.values())


def test_route_rank_orders_as_sort_most_specific_first() -> None:
    """Every pattern of tests/data/route_cases.json: larger rank first is the order the
    operator and the Python matcher use, JSON round trip included (the front's copy)."""
    pats = [parse_pattern(p) for p in _distinct(VALID)]
    ranks = {p: json.loads(json.dumps(render.route_rank(p))) for p in pats}
    by_rank = sorted(pats, key=lambda p: ranks[p], reverse=True)
    assert by_rank == [p for p, _ in sort_most_specific_first((p, None) for p in pats)]


@pytest.mark.parametrize(
    ("first", "then"),
    [
        ("a.example.com/*", "*.example.com/api/*"),  # an exact host before any wildcard
        ("*.a.example.com/*", "*.example.com/api/x"),  # a longer host suffix first
        ("example.com/api", "example.com/api/*"),  # an exact path before a prefix
        ("example.com/api/*", "example.com/*"),  # a longer prefix first
        ("https://example.com/*", "example.com/*"),  # a scheme before none
        ("example.com/b*", "example.com/a*"),  # ties broken by the canonical text
        ("https://example.com/a", "http://example.com/a"),
    ],
)
def test_route_rank_pairs(first: str, then: str) -> None:
    assert render.route_rank(parse_pattern(first)) > render.route_rank(parse_pattern(then))


@pytest.mark.parametrize(
    ("quarantined", "router", "expected"),
    [
        (
            {},
            render.RouterSettings(),
            {
                "exclusions": {},
                "quarantined": {},
                "bypass": {"status": 404},
                "signing": {"key": "", "trustForwardedProto": False},
            },
        ),
        (
            {P1: "it hung its cell 3 times"},
            render.RouterSettings({}, 410, "k" * 32, True),
            {
                "exclusions": {},
                "quarantined": {P1: "it hung its cell 3 times"},
                "bypass": {"status": 410},
                "signing": {"key": "k" * 32, "trustForwardedProto": True},
            },
        ),
    ],
)
def test_front_settings(quarantined: dict, router: render.RouterSettings, expected: dict) -> None:
    assert render.front_settings(quarantined, router) == expected


def test_front_settings_exclusions_by_namespace_with_ranks() -> None:
    """Each namespace's routes without a Worker, in its order, each ranked as a route."""
    router = render.RouterSettings({"zz": ("Z.test/static/*",), "aa": ("a.test/x", "*.a.test/*")})
    got = render.front_settings({}, router)["exclusions"]
    assert list(got) == ["aa", "zz"]  # type: ignore[arg-type]
    assert got == {
        ns: [
            {"pattern": parse_pattern(p).to_json(), "rank": render.route_rank(parse_pattern(p))}
            for p in ps
        ]
        for ns, ps in [("aa", ("a.test/x", "*.a.test/*")), ("zz", ("Z.test/static/*",))]
    }
    assert got["zz"][0]["pattern"]["host"] == "z.test"  # type: ignore[index]


@pytest.mark.parametrize(
    ("d", "own"),
    [
        (_dep(V1), False),
        (_dep(_bundle("ns.a", bindings=[{"name": "C", "kvNamespace": "c"}])), False),
        (_dep(_bundle("ns.a", bindings=[{"name": "R", "durableObjectClass": "Room"}])), True),
        # A Durable Object in any version, primary or not: the class must be served.
        (_dep(V1, _bundle("ns.a", bindings=[{"name": "R", "durableObjectClass": "Room"}])), True),
    ],
    ids=["plain", "kv", "do", "do-in-canary"],
)
def test_needs_own_cell(d: Deployment, own: bool) -> None:
    assert render.needs_own_cell(d) is own


# ---- configs ----------------------------------------------------------------------------
def test_front_config_sockets_and_disks() -> None:
    cfg = render.front_config(PATHS, KEY)
    assert '(name = "http", http = (), service = (name = "edgeplane:front"))' in cfg
    for s in ("admin", "internal"):
        assert (
            f'(name = "{s}", http = (), service = (name = "edgeplane:front", entrypoint = "{s}"))'
            in cfg
        )
    assert '(name = "edgeplane:state", disk = (path = "/state/front"))' in cfg  # read-only
    assert '(name = "edgeplane:kv-disk", disk = (path = "/state/kv", writable = true))' in cfg
    assert "/state/code" not in cfg and "/state/do" not in cfg  # the front runs no tenant code


def test_shared_cell_config_loads_code_and_holds_none() -> None:
    cfg = render.cell_config(PATHS, 4321, KEY)
    assert '(name = "LOADER", workerLoader = ())' in cfg
    assert '(name = "edgeplane:code", disk = (path = "/state/code"))' in cfg
    assert 'external = (address = "127.0.0.1:4321", http = ())' in cfg
    for service in ('(name = "edgeplane:do-disk"', '(name = "v:', '(name = "w:'):
        assert service not in cfg


@pytest.mark.parametrize(
    ("tail_port", "want"),
    [
        (0, False),  # no sink (the validator's cell): the Tail entrypoint sends nothing
        (5555, True),
    ],
)
def test_cell_config_names_the_tail_sink(tail_port: int, want: bool) -> None:
    cfg = render.cell_config(PATHS, 4321, KEY, None, tail_port)
    assert ('(name = "TAIL", service = "edgeplane:tail")' in cfg) is want
    sink = '(name = "edgeplane:tail", external = (address = "127.0.0.1:5555", http = ()))'
    assert (sink in cfg) is want
    # A Durable Object Worker's versions, static services, name the host's Tail themselves.
    static = render.cell_config(PATHS, 4321, KEY, _static_bindings(), tail_port)
    tails = 'tails = [(name = "edgeplane:host", entrypoint = "Tail", props = (json = '
    assert static.count(tails) == (2 if want else 0)


def _static_bindings() -> Deployment:
    canary = _bundle("ns.a", "// canary", bindings=[{"name": "ROOM", "durableObjectClass": "Room"}])
    primary = _bundle("ns.a", bindings=[given_ for given_, _ in BINDINGS])
    return _dep(primary, canary, routes=("a.test/*",))


@pytest.mark.parametrize(
    "expected",
    [
        '(name = "PLAIN", text = "hello")',
        '(name = "KEY", text = "hunter2")',  # a secret is text to the Worker
        '(name = "SIGNED", text = "s3")',
        '(name = "CFG", json = "{\\"a\\": 1}")',
        # Service and KV bindings reach the front through the host's entrypoints.
        '(name = "OTHER", service = (name = "edgeplane:host", entrypoint = "Service", '
        'props = (json = "{\\"worker\\": \\"ns.b\\"}")))',
        '(name = "CACHE", service = (name = "edgeplane:host", entrypoint = "Kv", '
        'props = (json = "{\\"namespace\\": \\"ns/cache\\"}")))',
        '(name = "edgeplane:do-disk", disk = (path = "/state/do", writable = true))',
    ],
)
def test_do_cell_config_bindings(expected: str) -> None:
    assert expected in render.cell_config(PATHS, 9, KEY, _static_bindings())


def test_do_cell_config_one_service_per_version_and_the_primary_owns_the_classes() -> None:
    d = _static_bindings()
    primary, canary = (render.service_name("ns.a", b.version or "") for b in d.versions)
    cfg = render.cell_config(PATHS, 9, KEY, d)
    for b, svc in zip(d.versions, (primary, canary), strict=True):
        assert f'(name = "v:{b.version}", service = "{svc}")' in cfg  # the host prefers it
        assert f'(name = "{svc}", worker = (' in cfg
    room = 'durableObjectNamespace = (className = "Room", serviceName = "{}")'
    assert cfg.count(room.format(primary)) == 2  # the canary's objects are the primary's
    assert cfg.count("durableObjectNamespaces = [") == 1
    assert '(className = "Room", uniqueKey = "ns.a-Room", enableSql = true)' in cfg


def test_do_cell_config_binary_modules_are_hex_data() -> None:
    b = _bundle("ns.a", modules=MODULES, bindings=[{"name": "R", "durableObjectClass": "R"}])
    cfg = render.cell_config(PATHS, 9, KEY, _dep(b))
    assert f'(name = "blob.bin", data = 0x"{RAW.hex()}")' in cfg
    assert f'(name = "add.wasm", wasm = 0x"{RAW.hex()}")' in cfg
    assert '(name = "lib.cjs", commonJsModule = "module.exports = 1;")' in cfg
    assert B64 not in cfg


@pytest.mark.parametrize("name", ["../../x", "/etc/passwd", "a/../b", "./a", "a//b", "a\\b"])
def test_module_names_cannot_escape(name: str) -> None:
    with pytest.raises(ValidationError):
        BundleModule(name=name, type=ModuleType.TEXT, content="x")


# ---- the store --------------------------------------------------------------------------
def test_store_round_trip_and_no_temp_files(tmp_path: Path) -> None:
    s = Store(tmp_path, Blobs(tmp_path))
    d = _dep(
        _bundle(
            "ns.a",
            bindings=[
                BundleBinding(name="K", secret="s").model_dump(by_alias=True, exclude_none=True)
            ],
        ),
        routes=("a.test/*",),
    ).hydrated(s.blobs.read)  # as the agent holds it: each module with its sha256
    staged = s._prepare_sync({"ns.a": d})
    assert Store(tmp_path, Blobs(tmp_path)).load_all() == {}  # prepared is not stored yet
    s._commit_sync(staged)
    assert Store(tmp_path, Blobs(tmp_path)).load_all() == {"ns.a": d}
    assert [p.name for p in (tmp_path / "deployments").iterdir()] == ["ns.a.json"]
    # A crash between write and rename leaves a temp file: not accepted, purged at start.
    (tmp_path / "deployments" / ".ns.b.json.tmp-99").write_text('{"half')
    assert Store(tmp_path, Blobs(tmp_path)).load_all() == {"ns.a": d}
    purge_leftovers(tmp_path)
    assert [p.name for p in (tmp_path / "deployments").iterdir()] == ["ns.a.json"]
    s._commit_sync(s._prepare_sync({"ns.a": None, "ns.b": None}))
    assert Store(tmp_path, Blobs(tmp_path)).load_all() == {}


def test_a_batch_that_fails_to_prepare_leaves_nothing(tmp_path: Path) -> None:
    s = Store(tmp_path, Blobs(tmp_path))
    a, b = (_dep(_bundle(w)).hydrated(s.blobs.read) for w in ("ns.a", "ns.b"))
    s._commit_sync(s._prepare_sync({"ns.a": a}))
    # The second write fails (here: a name the store refuses; a full disk is the same path).
    with pytest.raises(ValueError, match="invalid worker name"):
        s._prepare_sync({"ns.b": b, "../escape": b, "ns.a": None})
    assert sorted(p.name for p in (tmp_path / "deployments").iterdir()) == ["ns.a.json"]
    # A Worker dropped from a prepared batch keeps what it had.
    staged = s._prepare_sync({"ns.a": None, "ns.b": b})
    staged.drop("ns.a")
    staged.drop("ns.b")
    s._commit_sync(staged)
    assert Store(tmp_path, Blobs(tmp_path)).load_all() == {"ns.a": a}
    assert sorted(p.name for p in (tmp_path / "deployments").iterdir()) == ["ns.a.json"]
    with pytest.raises(ValueError):
        s._path("../evil")


def test_store_code_files_by_version(tmp_path: Path) -> None:
    s = Store(tmp_path, Blobs(tmp_path))
    assert s.missing_code([P1, P2]) == {P1, P2}
    asyncio.run(s.save_code({P1: b"one", P2: b"two"}))
    assert Store(tmp_path, Blobs(tmp_path)).missing_code([P1, P2, P3]) == {P3}
    assert (tmp_path / "code" / f"{P1}.json").read_bytes() == b"one"
    # A version id is a content hash: a file already there is the same, never rewritten.
    asyncio.run(s.save_code({P1: b"other"}))
    assert (tmp_path / "code" / f"{P1}.json").read_bytes() == b"one"
    asyncio.run(s.remove_code({P1, P3}))  # one never stored: no error
    assert s.missing_code([P1, P2, P3]) == {P1, P3}
    assert [p.name for p in (tmp_path / "code").iterdir()] == [f"{P2}.json"]  # no temp file


@pytest.mark.parametrize("version", ["../" + "a" * 61, "A" * 64, "a" * 63, "", "a" * 64 + "/x"])
def test_store_code_path_is_a_version_id(tmp_path: Path, version: str) -> None:
    s = Store(tmp_path, Blobs(tmp_path))
    with pytest.raises(ValueError):
        asyncio.run(s.save_code({version: b"x"}))
    with pytest.raises(ValueError):
        asyncio.run(s.remove_code({version}))


def test_store_keeps_quarantine_across_a_restart(tmp_path: Path) -> None:
    s = Store(tmp_path, Blobs(tmp_path))
    assert s.load_quarantine() == {}
    asyncio.run(s.save_quarantine({P2: "hung", P1: "hung too"}))
    assert Store(tmp_path, Blobs(tmp_path)).load_quarantine() == {P1: "hung too", P2: "hung"}
    asyncio.run(s.save_quarantine({}))
    assert Store(tmp_path, Blobs(tmp_path)).load_quarantine() == {}


def test_atomic_write_replaces_whole_file(tmp_path: Path) -> None:
    p = tmp_path / "f.json"
    atomic_write(p, json.dumps({"a": 1}).encode())
    atomic_write(p, json.dumps({"a": 2}).encode())
    assert json.loads(p.read_text()) == {"a": 2}
    assert sorted(x.name for x in tmp_path.iterdir()) == ["f.json"]


def test_store_keeps_exclusions_across_a_restart(tmp_path: Path) -> None:
    store = Store(tmp_path, Blobs(tmp_path))
    assert store.load_exclusions() == {}
    asyncio.run(store.save_exclusions({"b": ("y.io/",), "a": ("x.io/a", "x.io/b")}))
    assert Store(tmp_path, Blobs(tmp_path)).load_exclusions() == {
        "a": ("x.io/a", "x.io/b"),
        "b": ("y.io/",),
    }
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp file


# ---- auth -------------------------------------------------------------------------------
def test_token_ok() -> None:
    assert token_ok("Bearer abc", "abc")
    assert not token_ok("Bearer abd", "abc")
    assert not token_ok("abc", "abc")
    assert not token_ok(None, "abc")
    assert not token_ok("Bearer ", "abc")


ENTRY = {"routes": [{"pattern": "a.example/*"}], "cell": "shared-0", "v": '\u2603 "q"'}


@pytest.mark.parametrize(
    ("head", "entries", "expected"),
    [
        ({}, {}, {"workers": {}}),
        ({"base": None, "seq": 1}, {}, {"base": None, "seq": 1, "workers": {}}),
        # A member per Worker, encoded once: the document is the same as encoding it whole.
        (
            {"base": 3, "seq": 4, "cells": {"shared-0": 8080}},
            {"ns.a": ENTRY, "ns.b": None},
            {
                "base": 3,
                "seq": 4,
                "cells": {"shared-0": 8080},
                "workers": {"ns.a": ENTRY, "ns.b": None},
            },
        ),
    ],
)
def test_json_object(
    head: dict[str, Any], entries: dict[str, Any], expected: dict[str, Any]
) -> None:
    members = [json_member(w, e) for w, e in entries.items()]
    assert json.loads(json_object(head, "workers", members)) == expected
