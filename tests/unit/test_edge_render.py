"""The pure parts of the edge agent: config rendering, escaping, store writes, auth."""

from __future__ import annotations

import asyncio
import base64
import json
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from edgeplane.edge import render
from edgeplane.edge.access import token_ok
from edgeplane.edge.store import Store, atomic_write, purge_leftovers
from edgeplane.wire import Bundle, BundleBinding, BundleModule, Deployment, ModuleType, Route

PATHS = render.Paths(do_dir=Path("/state/do"), kv_dir=Path("/state/kv"))


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


def _dep(b: Bundle, *routes: str) -> Deployment:
    return Deployment(
        worker=b.worker,
        primary=b.version or "",
        versions=(b,),
        routes=tuple(Route(pattern=r) for r in routes),
    )


def _unescape(lit: str) -> str:
    """Inverse of render.text for the escapes it emits (as Cap'n Proto reads them)."""
    assert lit.startswith('"') and lit.endswith('"')
    return re.sub(
        r'\\(x[0-9a-f]{2}|"|\\)',
        lambda m: chr(int(m.group(1)[1:], 16)) if m.group(1)[0] == "x" else m.group(1),
        lit[1:-1],
    )


@given(st.text())
def test_text_escaping_round_trips_and_never_ends_early(s: str) -> None:
    lit = render.text(s)
    assert _unescape(lit) == s
    inner = lit[1:-1]
    # No unescaped quote and no raw control character inside the literal.
    assert not re.search(r'(?<!\\)(\\\\)*"', inner)
    assert not any(ord(c) < 0x20 for c in inner)


def test_hostile_strings_stay_inside_their_literal() -> None:
    evil = '"), (name = "pwn", external = (address = "1.2.3.4:80")), ("'
    b = _bundle("ns.a", js=evil, bindings=[{"name": "T", "text": evil}])
    cfg = render.render([_dep(b, "a.test/*")], PATHS)
    assert "external = (address" not in cfg.replace(render.text(evil), "")
    assert cfg.count(render.text(evil)) == 2


def test_one_service_per_version_and_router_bindings() -> None:
    v1, v2 = _bundle("ns.a", "export default {} // 1"), _bundle("ns.a", "export default {} // 2")
    d = Deployment(
        worker="ns.a",
        primary=v1.version or "",
        versions=(v1, v2),
        routes=(
            Route.model_validate(
                {
                    "pattern": "a.test/*",
                    "traffic": [
                        {"version": v1.version, "percent": 90},
                        {"version": v2.version, "percent": 10},
                    ],
                }
            ),
        ),
    )
    cfg = render.render([d], PATHS)
    for v in (v1, v2):
        assert render.text(render.service_name("ns.a", v.version or "")) in cfg
    table, bindings = render.router_table([d])
    assert [t["percent"] for t in table[0]["traffic"]] == [90, 10]  # type: ignore[index]
    assert set(bindings.values()) == {
        render.service_name("ns.a", v.version or "") for v in (v1, v2)
    }


def test_router_table_most_specific_first() -> None:
    a = _dep(_bundle("ns.a"), "*example.com/*")
    b = _dep(_bundle("ns.b"), "www.example.com/api/*")
    c = _dep(_bundle("ns.c"), "www.example.com/*")
    table, _ = render.router_table([a, b, c])
    assert [t["worker"] for t in table] == ["ns.b", "ns.c", "ns.a"]


def test_exclusions_sort_among_the_routes_and_name_their_namespace() -> None:
    a = _dep(_bundle("ns.a"), "*example.com/*")
    b = _dep(_bundle("ns.b"), "www.example.com/api/*")
    table, _ = render.router_table([a, b], {"st": ("www.example.com/api/static/*",)})
    owners = [t.get("worker", f"excluded by {t.get('exclude')}") for t in table]
    assert owners == ["excluded by st", "ns.b", "ns.a"]
    settings = render.RouterSettings({"st": ("example.com/x",)}, bypass_status=410)
    cfg = render.render([a], PATHS, settings)
    assert render.text('{"status": 410}') in cfg


def test_bindings_mapped_and_missing_service_stubbed() -> None:
    b = _bundle(
        "ns.a",
        bindings=[
            {"name": "PLAIN", "text": "hello"},
            {"name": "CFG", "json": '{"a": 1}'},
            {"name": "KEY", "secret": "hunter2"},
            {"name": "OTHER", "service": "ns.b"},
            {"name": "GONE", "service": "ns.gone"},
            {"name": "CACHE", "kvNamespace": "cache"},
            {"name": "ROOM", "durableObjectClass": "Room"},
        ],
    )
    other = _bundle("ns.b")
    cfg = render.render([_dep(b), _dep(other)], PATHS)
    assert '(name = "PLAIN", text = "hello")' in cfg
    assert '(name = "KEY", text = "hunter2")' in cfg
    assert (
        f'(name = "OTHER", service = "{render.service_name("ns.b", other.version or "")}")' in cfg
    )
    assert '(name = "GONE", service = "missing:ns.gone")' in cfg
    assert '(name = "missing:ns.gone", worker' in cfg
    assert 'bundled = "/workerd/kv.js"' in cfg and '\\"namespace\\": \\"ns/cache\\"' in cfg
    assert 'className = "Room", uniqueKey = "ns.a-Room"' in cfg
    assert '"/state/do"' in cfg


def test_binary_modules_are_hex_data() -> None:
    raw = bytes(range(256))
    b = Bundle.model_validate(
        {
            "worker": "ns.a",
            "compatibilityDate": "2024-09-23",
            "mainModule": "index.js",
            "modules": [
                {"name": "index.js", "type": "esModule", "content": "export default {}"},
                {"name": "lib/blob.bin", "type": "data", "content": base64.b64encode(raw).decode()},
            ],
        }
    ).with_version()
    assert f'data = 0x"{raw.hex()}"' in render.render([_dep(b)], PATHS)


@pytest.mark.parametrize("name", ["../../x", "/etc/passwd", "a/../b", "./a", "a//b", "a\\b"])
def test_module_names_cannot_escape(name: str) -> None:
    with pytest.raises(ValidationError):
        BundleModule(name=name, type=ModuleType.TEXT, content="x")


def test_store_round_trip_and_no_temp_files(tmp_path: Path) -> None:
    s = Store(tmp_path)
    d = _dep(
        _bundle(
            "ns.a",
            bindings=[
                BundleBinding(name="K", secret="s").model_dump(by_alias=True, exclude_none=True)
            ],
        ),
        "a.test/*",
    )
    s._apply_sync({"ns.a": d})
    assert Store(tmp_path).load_all() == {"ns.a": d}
    assert [p.name for p in (tmp_path / "deployments").iterdir()] == ["ns.a.json"]
    # A crash between write and rename leaves a temp file: not accepted, purged at start.
    (tmp_path / "deployments" / ".ns.b.json.tmp-99").write_text('{"half')
    assert Store(tmp_path).load_all() == {"ns.a": d}
    purge_leftovers(tmp_path)
    assert [p.name for p in (tmp_path / "deployments").iterdir()] == ["ns.a.json"]
    s._apply_sync({"ns.a": None, "ns.b": None})
    assert Store(tmp_path).load_all() == {}
    with pytest.raises(ValueError):
        s._path("../evil")


def test_atomic_write_replaces_whole_file(tmp_path: Path) -> None:
    p = tmp_path / "f.json"
    atomic_write(p, json.dumps({"a": 1}).encode())
    atomic_write(p, json.dumps({"a": 2}).encode())
    assert json.loads(p.read_text()) == {"a": 2}
    assert sorted(x.name for x in tmp_path.iterdir()) == ["f.json"]


def test_token_ok() -> None:
    assert token_ok("Bearer abc", "abc")
    assert not token_ok("Bearer abd", "abc")
    assert not token_ok("abc", "abc")
    assert not token_ok(None, "abc")
    assert not token_ok("Bearer ", "abc")


def test_store_keeps_exclusions_across_a_restart(tmp_path: Path) -> None:
    store = Store(tmp_path)
    assert store.load_exclusions() == {}
    asyncio.run(store.save_exclusions({"b": ("y.io/",), "a": ("x.io/a", "x.io/b")}))
    assert Store(tmp_path).load_exclusions() == {"a": ("x.io/a", "x.io/b"), "b": ("y.io/",)}
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp file
