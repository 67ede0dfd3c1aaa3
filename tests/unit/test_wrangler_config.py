"""Reading the wrangler configuration (pure): JSONC, the environment table, the Worker's
name, which keys map, and .dev.vars names."""

from __future__ import annotations

from pathlib import PurePath
from typing import Any

import pytest

from edgeplane.wrangler.config import (
    INHERITABLE_KEYS,
    NON_INHERITABLE_KEYS,
    TOP_LEVEL_ONLY_KEYS,
    KeyReport,
    all_environments,
    decode_text,
    dev_var_names,
    dev_vars_files,
    environment,
    inherited,
    key_report,
    parse_config,
    python_worker,
    refuse_python_worker,
    strip_jsonc,
    worker_name,
)
from edgeplane.wrangler.errors import WranglerImportError


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"a": 1,}', '{"a": 1}'),
        ("[1, 2 , ]", "[1, 2  ]"),
        ("[1, // c\n]", "[1 \n]"),  # a comment between comma and bracket is whitespace
        ("[1, /* c */ ]", "[1   ]"),
        ('{"a": ",]"}', '{"a": ",]"}'),  # inside a string: kept
        ('{"a": "\\",}"}', '{"a": "\\",}"}'),  # an escaped quote does not end the string
        ("[1,", "[1,"),  # a comma at the end is not trailing anything
        ("[1, 2]", "[1, 2]"),
    ],
)
def test_strip_jsonc(text: str, expected: str) -> None:
    assert strip_jsonc(text) == expected


@pytest.mark.parametrize(
    ("text", "file", "expected"),
    [
        ('name = "w"\n', "wrangler.toml", {"name": "w"}),
        ('{"name": "w", // c\n}', "wrangler.jsonc", {"name": "w"}),
        ('{"name": "w"}', "wrangler.json", {"name": "w"}),  # JSON is JSONC without comments
    ],
)
def test_parse_config(text: str, file: str, expected: dict[str, Any]) -> None:
    assert parse_config(text, PurePath(file)) == expected


BOM = b"\xef\xbb\xbf"


@pytest.mark.parametrize(
    ("content", "file"),
    [
        (BOM + b'name = "w"\n', "wrangler.toml"),
        (BOM + b'{"name": "w"}', "wrangler.json"),
        (BOM + b'{"name": "w", // c\n}', "wrangler.jsonc"),
    ],
)
def test_a_byte_order_mark_is_accepted(content: bytes, file: str) -> None:
    assert parse_config(decode_text(content, file), PurePath(file)) == {"name": "w"}
    # parse_config also takes text whose mark is still there.
    assert parse_config(content.decode("utf-8"), PurePath(file)) == {"name": "w"}


@pytest.mark.parametrize(
    ("text", "file", "message"),
    [
        ("name = \n", "wrangler.toml", "wrangler.toml: Invalid value"),
        ("[1]", "wrangler.json", "wrangler.json: the configuration must be a table/object"),
        ('{"a": 1 /* x', "wrangler.jsonc", "unterminated /\\* comment in the JSONC file"),
    ],
)
def test_parse_config_refuses(text: str, file: str, message: str) -> None:
    with pytest.raises(WranglerImportError, match=message):
        parse_config(text, PurePath(file))


TOP = {"name": "w", "main": "a.js", "env": {"dev": {"main": "b.js"}, "eu": {"name": "w-eu"}}}


@pytest.mark.parametrize(
    ("env", "expected"),
    [(None, TOP), ("dev", {"main": "b.js"}), ("eu", {"name": "w-eu"})],
)
def test_environment(env: str | None, expected: dict[str, Any]) -> None:
    assert environment(TOP, env, "wrangler.toml") == expected


@pytest.mark.parametrize(
    ("top", "message"),
    [
        (TOP, "environment 'prod' is not defined in wrangler.toml \\(defined: dev, eu\\)"),
        ({"name": "w"}, "\\(defined: none\\)"),
    ],
)
def test_environment_refuses_an_undefined_one(top: dict[str, Any], message: str) -> None:
    with pytest.raises(WranglerImportError, match=message):
        environment(top, "prod", "wrangler.toml")


@pytest.mark.parametrize(
    ("top", "expected"),
    [
        (TOP, [None, "dev", "eu"]),
        ({"env": {"z": {}, "a": {}}}, [None, "a", "z"]),
        ({}, [None]),
    ],
)
def test_all_environments(top: dict[str, Any], expected: list[str | None]) -> None:
    assert all_environments(top) == expected


@pytest.mark.parametrize(
    ("cfg", "key", "expected"),
    [
        ({"main": "b.js"}, "main", "b.js"),  # the environment's own
        ({}, "main", "a.js"),  # else the top level's
        ({"main": None}, "main", None),  # present counts, even as null
        ({}, "base_dir", None),
    ],
)
def test_inherited(cfg: dict[str, Any], key: str, expected: Any) -> None:
    assert inherited(cfg, TOP, key) == expected


@pytest.mark.parametrize(
    ("cfg", "top", "env", "expected"),
    [
        ({"name": "w"}, {"name": "w"}, None, "w"),
        ({}, {"name": "w"}, "dev", "w-dev"),
        ({"name": "own"}, {"name": "w"}, "dev", "own"),
    ],
)
def test_worker_name(
    cfg: dict[str, Any], top: dict[str, Any], env: str | None, expected: str
) -> None:
    assert worker_name(cfg, top, env) == expected


@pytest.mark.parametrize(
    ("cfg", "top", "env", "message"),
    [
        ({}, {}, "dev", "no `name`"),
        ({}, {}, None, "no `name`"),
        ({"name": ""}, {"name": ""}, None, "no `name`"),
        ({"name": 3}, {"name": 3}, None, "no `name`"),
        ({"name": "Bad"}, {"name": "Bad"}, None, "name 'Bad': a Worker name is at most 63"),
        ({}, {"name": "w" * 60}, "prod", "at most 63 lowercase"),  # top name + env too long
    ],
)
def test_worker_name_refuses(
    cfg: dict[str, Any], top: dict[str, Any], env: str | None, message: str
) -> None:
    with pytest.raises(WranglerImportError, match=message):
        worker_name(cfg, top, env)


@pytest.mark.parametrize(
    ("cfg", "unsupported", "ignored"),
    [
        ({"name": "w", "vars": {}}, [], []),
        ({"r2_buckets": [{}], "account_id": "a", "triggers": {"crons": ["* * * * *"]}},
         ["r2_buckets"], ["account_id"]),
        # Empty or off configures nothing, so it is not reported.
        ({"r2_buckets": [], "workers_dev": False, "queues": {}, "logpush": None}, [], []),
        ({"triggers": {"crons": []}, "observability": {"enabled": False}}, [], []),
        ({"observability": {"enabled": False, "head_sampling_rate": 0.5}},
         ["observability"], []),
        ({"workers_dev": True, "minify": True, "$schema": "x"}, ["workers_dev"], ["$schema"]),
    ],
)
def test_key_report(cfg: dict[str, Any], unsupported: list[str], ignored: list[str]) -> None:
    assert key_report(cfg) == KeyReport(unsupported, ignored, [])
    assert key_report(cfg, cfg) == KeyReport(unsupported, ignored, [])  # the top level


INH = " (inherited from the top level)"
ENV_TOP = {
    "name": "w", "main": "a.js", "$schema": "x", "minify": True,
    "triggers": {"crons": ["* * * * *"]}, "assets": {"directory": "public"},
    "vars": {"A": "x"}, "kv_namespaces": [{"binding": "K", "id": "k"}], "define": {"X": "1"},
    "r2_buckets": [{"binding": "B"}], "d1_databases": [], "site": {"bucket": "p"},
    "env": {"staging": {}},
}


@pytest.mark.parametrize(
    ("cfg", "expected"),
    [
        # Inherited unsupported keys are this Worker's too; non-inheritable ones it lacks.
        ({}, KeyReport(
            ["site" + INH], [],
            ["define", "kv_namespaces", "r2_buckets", "vars"])),
        # Its own value overrides (and is reported as its own, or not when it is off).
        ({"triggers": {"crons": []}, "assets": {"directory": "x"}, "minify": False},
         KeyReport(["site" + INH], [],
                   ["define", "kv_namespaces", "r2_buckets", "vars"])),
        # Its own bindings: nothing missing.
        ({"vars": {}, "kv_namespaces": [], "define": {}, "r2_buckets": [{"binding": "B"}]},
         KeyReport(["r2_buckets", "site" + INH],
                   [], [])),
    ],
)
def test_key_report_of_an_environment_sees_what_it_inherits(
    cfg: dict[str, Any], expected: KeyReport
) -> None:
    assert key_report(cfg, ENV_TOP) == expected


@pytest.mark.parametrize(
    "key",
    ["main", "compatibility_date", "compatibility_flags", "route", "routes", "rules",
     "base_dir", "find_additional_modules", "no_bundle", "minify", "keep_names", "tsconfig",
     "jsx_factory", "jsx_fragment", "triggers", "usage_model", "limits", "placement",
     "assets", "observability", "logpush", "migrations", "workers_dev", "build",
     "upload_source_maps", "preserve_file_names", "node_compat"],
)
def test_inheritable_keys(key: str) -> None:
    assert key in INHERITABLE_KEYS and key not in NON_INHERITABLE_KEYS


@pytest.mark.parametrize(
    "key",
    ["vars", "define", "secrets", "durable_objects", "kv_namespaces", "r2_buckets",
     "d1_databases", "services", "queues", "hyperdrive", "ai", "browser", "tail_consumers",
     "analytics_engine_datasets", "vectorize", "send_email", "workflows", "unsafe"],
)
def test_non_inheritable_keys(key: str) -> None:
    assert key in NON_INHERITABLE_KEYS and key not in INHERITABLE_KEYS


def test_the_key_sets_do_not_overlap() -> None:
    assert not INHERITABLE_KEYS & NON_INHERITABLE_KEYS
    assert not INHERITABLE_KEYS & TOP_LEVEL_ONLY_KEYS
    assert not NON_INHERITABLE_KEYS & TOP_LEVEL_ONLY_KEYS


@pytest.mark.parametrize(
    ("env", "expected"),
    [(None, [".dev.vars"]), ("prod", [".dev.vars.prod", ".dev.vars"])],
)
def test_dev_vars_files(env: str | None, expected: list[str]) -> None:
    assert dev_vars_files(env) == expected


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"A=1\nB = two\n", ["A", "B"]),
        (b"# comment\n\nexport TOKEN=x\n", ["TOKEN"]),
        (b"A=1\r\nA=2\r\n", ["A"]),  # each name once
        (b"bad-name=1\nNO_EQUALS\n1X=2\n", []),
        (b'QUOTED="a=b"\n', ["QUOTED"]),
        (b"\xef\xbb\xbfFIRST=1\nSECOND=2\n", ["FIRST", "SECOND"]),  # a byte order mark
    ],
)
def test_dev_var_names(content: bytes, expected: list[str]) -> None:
    assert dev_var_names(content) == expected


@pytest.mark.parametrize(
    ("cfg", "top", "main", "expected"),
    [
        ({}, {}, "src/entry.py", "main is a .py file"),
        ({}, {"python_modules": {"exclude": []}}, "src/a.js", "python_modules is set"),
        ({}, {"compatibility_flags": ["python_workers"]}, "a.js",
         "compatibility_flags has python_workers"),
        # The environment's own flags replace the top level's.
        ({"compatibility_flags": []}, {"compatibility_flags": ["python_workers"]}, "a.js",
         None),
        ({}, {"compatibility_flags": ["nodejs_compat"]}, "src/a.js", None),
        ({}, {}, "src/py.js", None),
    ],
)
def test_python_worker(
    cfg: dict[str, Any], top: dict[str, Any], main: str, expected: str | None
) -> None:
    assert python_worker(cfg, top, main) == expected


def test_a_python_worker_is_refused_in_one_line_naming_main() -> None:
    with pytest.raises(WranglerImportError) as e:
        refuse_python_worker({}, {}, "w", "src/entry.py")
    assert str(e.value) == (
        "w: main src/entry.py: a Python Worker (main is a .py file); edgeplane does not run "
        "Python Workers yet, only JavaScript and WebAssembly modules"
    )
