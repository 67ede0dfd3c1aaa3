"""build.py: esbuild's options from a wrangler config, the files that ship as modules of
their own, and esbuild's messages as one line of advice. Pure: tables of cases."""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

import pytest

from edgeplane.wrangler.build import (
    Fixes,
    Message,
    additional_modules,
    compactions,
    esbuild_options,
    explain,
    node_compat,
    out_name,
    package_name,
    separate_extensions,
)
from edgeplane.wrangler.modules import Rules

ROOT = PurePosixPath("/p")


@pytest.mark.parametrize(
    ("flags", "date", "mode"),
    [
        ([], "2025-01-01", None),
        (["nodejs_compat"], "2024-09-22", "v1"),
        (["nodejs_compat"], "2024-09-23", "v2"),
        (["nodejs_compat", "no_nodejs_compat_v2"], "2025-01-01", "v1"),
        (["nodejs_compat_v2"], "2024-01-01", "v2"),
        (["nodejs_als"], "2025-01-01", "als"),
        (["nodejs_als", "nodejs_compat"], "2025-01-01", "v2"),
        (["node_compat"], "2025-01-01", None),  # wrangler 3's config key, never a flag
        (["streams_enable_constructors"], "2025-01-01", None),
    ],
)
def test_node_compat(flags: list[str], date: str, mode: str | None) -> None:
    assert node_compat(flags, date) == mode


BASE = {"format": "esm", "platform": "browser", "target": "es2024",
        "conditions": ["workerd", "worker", "browser"], "minify": False, "keepNames": True}


@pytest.mark.parametrize(
    ("cfg", "top", "date", "flags", "expected"),
    [
        ({}, {}, "2025-01-01", [], {**BASE}),
        # minify, keep_names, tsconfig and jsx_* are inherited by environments (alias is
        # the top level's alone)...
        ({}, {"minify": True, "keep_names": False}, "2025-01-01", [],
         {"minify": True, "keepNames": False}),
        ({"minify": False}, {"minify": True}, "2025-01-01", [], {"minify": False}),
        ({}, {"tsconfig": "tsconfig.build.json"}, "2025-01-01", [],
         {"tsconfig": "/p/tsconfig.build.json"}),
        ({}, {"jsx_factory": "h", "jsx_fragment": "Fragment"}, "2025-01-01", [],
         {"jsxFactory": "h", "jsxFragment": "Fragment"}),
        ({}, {"alias": {"fetch-shim": "./src/shim.js", "lodash": "lodash-es"}}, "2025-01-01", [],
         {"alias": {"fetch-shim": "/p/src/shim.js", "lodash": "lodash-es"}}),
    ],
)
def test_esbuild_options(
    cfg: dict[str, Any], top: dict[str, Any], date: str, flags: list[str],
    expected: dict[str, Any],
) -> None:
    options = esbuild_options(cfg, top, ROOT, date, flags)
    assert {k: options[k] for k in expected} == expected
    assert options["loader"] == {".js": "jsx", ".mjs": "jsx", ".cjs": "jsx"}


@pytest.mark.parametrize(
    ("cfg", "top", "date", "flags", "define"),
    [
        # wrangler's production defines, and navigator.userAgent once workerd has navigator.
        ({}, {}, "2022-03-20", [], {"process.env.NODE_ENV": '"production"'}),
        ({}, {}, "2022-03-21", [], {"navigator.userAgent": '"Cloudflare-Workers"'}),
        ({}, {}, "2025-01-01", ["no_global_navigator"], {"navigator.userAgent": None}),
        # define is the environment's own: not inherited, as wrangler has it.
        ({"define": {"DEBUG": "false"}}, {}, "2025-01-01", [], {"DEBUG": "false"}),
        ({}, {"define": {"DEBUG": "false"}}, "2025-01-01", [], {"DEBUG": None}),
        ({"define": {"process.env.NODE_ENV": '"test"'}}, {}, "2025-01-01", [],
         {"process.env.NODE_ENV": '"test"'}),
    ],
)
def test_define(
    cfg: dict[str, Any], top: dict[str, Any], date: str, flags: list[str],
    define: dict[str, str | None],
) -> None:
    got = esbuild_options(cfg, top, ROOT, date, flags)["define"]
    assert {k: got.get(k) for k in define} == define


RULES = Rules.from_config([{"type": "Text", "globs": ["**/*.md"]}], [])


@pytest.mark.parametrize(
    ("files", "find_all", "expected"),
    [
        # Text, Data and Wasm go beside the bundle; JavaScript and JSON go into it...
        (["src/index.ts", "src/a.js", "src/x.wasm", "src/page.html", "src/d.json", "src/r.md",
          "src/z.bin", "src/p.png"], False,
         {"src/x.wasm": ("x.wasm", "wasm"), "src/page.html": ("page.html", "text"),
          "src/r.md": ("r.md", "text"), "src/z.bin": ("z.bin", "data")}),
        # ...unless find_additional_modules: then JavaScript too (never the entry).
        (["src/index.js", "src/lazy/a.js", "src/b.cjs", "src/d.json"], True,
         {"src/lazy/a.js": ("lazy/a.js", "esModule"), "src/b.cjs": ("b.cjs", "commonJsModule")}),
    ],
)
def test_additional_modules(
    files: list[str], find_all: bool, expected: dict[str, tuple[str, str]]
) -> None:
    base = ROOT / "src"
    got = additional_modules([ROOT / f for f in files], base, ROOT / files[0], RULES, find_all)
    assert got == {str(ROOT / k): v for k, v in expected.items()}


@pytest.mark.parametrize(("entry", "name"), [("src/index.ts", "index.js"),
                                             ("worker.mjs", "worker.js"), ("app.tsx", "app.js")])
def test_out_name(entry: str, name: str) -> None:
    assert out_name(PurePosixPath(entry)) == name


@pytest.mark.parametrize(("spec", "package"), [
    ("hono", "hono"), ("hono/cors", "hono"), ("@scope/pkg", "@scope/pkg"),
    ("@scope/pkg/sub/path", "@scope/pkg"),
])
def test_package_name(spec: str, package: str) -> None:
    assert package_name(spec) == package


BUILTINS = frozenset({"fs", "buffer", "crypto"})


@pytest.mark.parametrize(
    ("message", "fixes", "line"),
    [
        (Message('Could not resolve "hono"', "src/index.ts", 3), Fixes(True, BUILTINS),
         'src/index.ts:3: cannot import "hono": package hono is not installed; run '
         "`npm install` in the project first"),
        (Message('Could not resolve "@scope/x/y"', "a.js", 1), Fixes(False, BUILTINS),
         'a.js:1: cannot import "@scope/x/y": package @scope/x is not installed; add it to '
         "package.json and run `npm install @scope/x`"),
        (Message('Could not resolve "fs/promises"', "a.js", 1), Fixes(True, BUILTINS),
         'a.js:1: cannot import "fs/promises", a Node.js built-in module; add "nodejs_compat" '
         "to compatibility_flags"),
        (Message('Could not resolve "./log"', "src/a.ts", 2), Fixes(True, BUILTINS),
         'src/a.ts:2: cannot import "./log": no such file (tried the extensions esbuild '
         "tries)"),
        (Message('No loader is configured for ".yaml" files: src/x.yaml', "src/a.js", 1),
         Fixes(True), 'src/a.js:1: imports src/x.yaml: no module rule matches .yaml files; add '
         'a `rules` entry for it (e.g. { type = "Data", globs = ["**/*.yaml"] })'),
        (Message('Unexpected "\\xff"', "src/a.js", 1),
         Fixes(True, not_utf8=frozenset({"src/a.js"})),
         "src/a.js: not UTF-8; save it as UTF-8"),
        (Message("Expected \";\" but found\n\"x\"", "src/a.ts", 9), Fixes(True),
         'src/a.ts:9: Expected ";" but found "x"'),
        (Message("Something without a place"), Fixes(True), "Something without a place"),
        # A package's file is shown from its node_modules/, wherever the tree is.
        (Message('Could not resolve "node:fs"', "../../x/node_modules/a/node_modules/b/i.js",
                 4), Fixes(True, BUILTINS),
         'node_modules/b/i.js:4: cannot import "node:fs", a Node.js built-in module; add '
         '"nodejs_compat" to compatibility_flags'),
        # Vite's import queries and virtual modules: a framework build's, not wrangler's.
        (Message('Could not resolve "vite/package.json?raw"', "src/a.ts", 1), Fixes(True),
         'src/a.ts:1: cannot import "vite/package.json?raw": an import query (?raw) is '
         "Vite's, not wrangler's; import the file itself (a module rule gives its type), or "
         "build with Vite first"),
        (Message('No loader is configured for ".wasm" files: src/m.wasm?init', "src/a.ts", 9),
         Fixes(True), 'src/a.ts:9: cannot import "src/m.wasm?init": an import query (?init) '
         "is Vite's, not wrangler's; import the file itself (a module rule gives its type), "
         "or build with Vite first"),
        (Message('Could not resolve "virtual:react-router/server-build"', "app.ts", 4),
         Fixes(True), 'app.ts:4: cannot import "virtual:react-router/server-build", a module '
         "a Vite plugin generates: build the project with its framework first (e.g. `npm run "
         "build`) and import the built Worker with --main"),
    ],
)
def test_explain(message: Message, fixes: Fixes, line: str) -> None:
    assert explain(message, fixes) == line


@pytest.mark.parametrize(
    ("rules", "expected"),
    [
        ([], {".txt": "text", ".html": "text", ".sql": "text", ".bin": "data",
              ".wasm": "wasm"}),
        # A project's rule comes first; a glob that is not `**/*.ext` names no extension.
        ([{"type": "Data", "globs": ["**/*.png", "src/*.md"]},
          {"type": "Data", "globs": ["**/*.txt"]}],
         {".png": "data", ".txt": "data", ".html": "text", ".sql": "text", ".bin": "data",
          ".wasm": "wasm"}),
        ([{"type": "ESModule", "globs": ["**/*.mjs"]}],
         {".txt": "text", ".html": "text", ".sql": "text", ".bin": "data", ".wasm": "wasm"}),
    ],
)
def test_separate_extensions(rules: list[dict[str, Any]], expected: dict[str, str]) -> None:
    assert separate_extensions(Rules.from_config(rules, [])) == expected


@pytest.mark.parametrize(
    ("options", "tried"),
    [
        ({"minify": False, "keepNames": True},
         [("whitespace and syntax", {"minify": False, "keepNames": True,
                                     "minifyWhitespace": True, "minifySyntax": True}),
          ("whitespace, syntax and identifiers", {"minify": True, "keepNames": True})]),
        # The project chose minify itself: its bundle is what it is.
        ({"minify": True, "keepNames": True}, []),
    ],
)
def test_compactions(options: dict[str, Any], tried: list[tuple[str, dict[str, Any]]]) -> None:
    assert compactions(options) == tried
