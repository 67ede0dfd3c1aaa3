"""The module graph (pure): specifiers, module rules, import resolution, and the walk over
a dict of files instead of a directory."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import PurePath, PurePosixPath

import pytest

from edgeplane.wrangler.errors import WranglerImportError
from edgeplane.wrangler.modules import (
    Rules,
    candidates,
    import_parts,
    module_graph,
    specifiers,
    typescript_candidates,
)

BASE = PurePosixPath("/p")


@dataclass(frozen=True)
class DictTree:
    """A SourceTree over {path below /p: content}."""

    files: dict[str, bytes]
    base_dir: PurePosixPath = BASE
    reads: list[str] = field(default_factory=list)

    def find(self, parts: Sequence[str]) -> PurePosixPath | None:
        paths = {BASE / name for name in self.files}
        return next((c for c in candidates(BASE.joinpath(*parts)) if c in paths), None)

    def read(self, path: PurePath) -> bytes:
        self.reads.append(str(path))
        return self.files[path.relative_to(BASE).as_posix()]


@pytest.mark.parametrize(
    ("src", "expected"),
    [
        ('import a from "./a.js";', ["./a.js"]),
        ("import { b, c as d } from './b.mjs';", ["./b.mjs"]),
        ('import "./side.js"; export * from "./re.js";', ["./side.js", "./re.js"]),
        ('export { x } from "./x.js"; export * as ns from "./ns.js";', ["./x.js", "./ns.js"]),
        ('await import("./lazy.js"); require("./old.cjs");', ["./lazy.js", "./old.cjs"]),
        ('import "./a.js"; import "./a.js";', ["./a.js"]),  # each once, first place
        ('// import "./gone.js"\n/* import "./gone2.js" */', []),
        # Text inside a string is not code.
        ("const s = \"import x from './in-string.js'\";", []),
        ('import { connect } from "cloudflare:sockets";', ["cloudflare:sockets"]),
        ("import a from './it\"s.js';", ['./it"s.js']),
        ('x.import("./method.js"); $require("./other.js");', []),
    ],
)
def test_specifiers(src: str, expected: list[str]) -> None:
    assert specifiers(src) == expected


@pytest.mark.parametrize(
    ("src", "expected"),
    [
        # Template literal text is text, whatever it holds.
        ('const s = `import x from "./nope"`;', []),
        ('const s = `\nimport x from "./nope"\nrequire("./nope2")\n`;', []),
        ('const s = `a \\` import "./escaped-tick" \\``;', []),
        # ... but the code in ${...} is code, at any depth.
        ('const s = `${await import("./lazy.js")}`;', ["./lazy.js"]),
        ('const t = `a ${ `b ${"c"}` } import y from "./nope2"`; import "./after.js";',
         ["./after.js"]),
        ('const t = `${ {a: `${ require("./deep.js") }`}.a } import "./nope"`;',
         ["./deep.js"]),
        ('const t = `${ "}" } import "./nope"`; import "./after.js";', ["./after.js"]),
        ("const t = `${ /* } */ 1 } import './nope'`; import './after.js';", ["./after.js"]),
        # A template literal without ${ is a specifier where a string is.
        ("await import(`./tpl.js`);", ["./tpl.js"]),
        ('import(`./a-${name}.js`); import "./b.js";', ["./b.js"]),
        # A quote or backtick in a regular expression opens nothing.
        ('const re = /[`"\']/g; import "./after-regex.js";', ["./after-regex.js"]),
        ('if (x) return /`/.test(s); import "./after.js";', ["./after.js"]),
        ('const half = a / 2; const q = b / 4; import "./after-division.js";',
         ["./after-division.js"]),
        # Unclosed: the rest is text, and nothing breaks.
        ('const s = `import "./nope"', []),
        ('const s = `${ import("./open.js")', ["./open.js"]),
    ],
)
def test_specifiers_read_code_not_template_text(src: str, expected: list[str]) -> None:
    assert specifiers(src) == expected


@pytest.mark.parametrize(
    ("raw", "file", "expected", "warnings"),
    [
        (None, "index.js", "esModule", []),
        (None, "a/b.mjs", "esModule", []),
        (None, "legacy.cjs", "commonJsModule", []),
        (None, "page.html", "text", []),
        (None, "add.wasm", "wasm", []),
        (None, "data/users.json", "json", []),
        (None, "x.yaml", None, []),
        ([{"type": "Text", "globs": ["**/*.md"]}], "t/page.md", "text", []),
        ([{"type": "Data", "globs": ["*.js"]}], "index.js", "data", []),  # project rules first
        ([{"type": "Data", "globs": ["*.js"]}], "a/index.js", "esModule", []),  # * stops at /
        ([{"type": "Text", "globs": ["a?.txt"]}], "ab.txt", "text", []),
        ([{"type": "Text", "globs": ["src/**"]}], "src/x/y.md", "text", []),
        ([{"type": "PythonModule", "globs": ["**/*.py"]}], "m.py", None,
         ["rules: module type 'PythonModule' is not supported; ignored"]),
    ],
)
def test_rules(raw: object, file: str, expected: str | None, warnings: list[str]) -> None:
    warn: list[str] = []
    assert Rules.from_config(raw, warn).type_of(file) == expected
    assert warn == warnings


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/p/lib", ["/p/lib", "/p/lib.js", "/p/lib.mjs", "/p/lib.cjs", "/p/lib.json",
                    "/p/lib/index.js"]),
        ("/p/a.js", ["/p/a.js", "/p/a.js.js", "/p/a.js.mjs", "/p/a.js.cjs", "/p/a.js.json",
                     "/p/a.js/index.js"]),
    ],
)
def test_candidates(path: str, expected: list[str]) -> None:
    assert [str(c) for c in candidates(PurePosixPath(path))] == expected


@pytest.mark.parametrize(
    ("importer", "spec", "expected"),
    [
        ("index.js", "./a.js", ["a.js"]),
        ("lib/x.js", "./y.js", ["lib", "y.js"]),
        ("lib/x.js", "../y.js", ["y.js"]),
        ("lib/x.js", "./../lib/./z.js", ["lib", "z.js"]),
        ("a/b/c.js", "../../d.js", ["d.js"]),
        ("index.js", "./dir/", ["dir"]),
        ("index.js", "../up.js", None),  # above base_dir
        ("lib/x.js", "../../up.js", None),
    ],
)
def test_import_parts(importer: str, spec: str, expected: list[str] | None) -> None:
    assert import_parts(importer, spec) == expected


ESM = "esModule"


@pytest.mark.parametrize(
    ("files", "modules", "bare"),
    [
        ({"index.js": b""}, [("index.js", ESM)], set()),
        (
            {"index.js": b'import "./lib/a.js"; import "./t.txt";',
             "lib/a.js": b'import "../t.txt"; import "./b";', "lib/b.js": b"",
             "t.txt": b"hi"},
            [("index.js", ESM), ("lib/a.js", ESM), ("t.txt", "text"), ("lib/b", ESM)],
            set(),
        ),
        # A module reached twice is read once; a cycle ends.
        ({"index.js": b'import "./a.js"; import "./a.js";', "a.js": b'import "./index.js";'},
         [("index.js", ESM), ("a.js", ESM)], set()),
        # The directory's index.js keeps the name written: workerd looks that name up.
        ({"index.js": b'import "./util";', "util/index.js": b""},
         [("index.js", ESM), ("util", ESM)], set()),
        ({"index.js": b'import "hono"; import "node:buffer"; require("x/y");'},
         [("index.js", ESM)], {"hono", "x/y"}),
        # Text modules are not scanned for imports.
        ({"index.js": b'import "./t.txt";', "t.txt": b'import "./missing.js";'},
         [("index.js", ESM), ("t.txt", "text")], set()),
        ({"index.js": b'require("./c.cjs");', "c.cjs": b'require("./d.cjs");', "d.cjs": b""},
         [("index.js", ESM), ("c.cjs", "commonJsModule"), ("d.cjs", "commonJsModule")], set()),
    ],
)
def test_module_graph(
    files: dict[str, bytes], modules: list[tuple[str, str]], bare: set[str]
) -> None:
    tree = DictTree(files)
    found, found_bare = module_graph(BASE / "index.js", tree, Rules.from_config(None, []))
    assert [(m.name, m.type) for m in found] == modules
    assert found_bare == bare
    assert len(tree.reads) == len(modules)
    assert found[0].content == files["index.js"]


@pytest.mark.parametrize(
    ("files", "main", "message"),
    [
        ({"index.js": b'import "./missing.js";'}, "/p/index.js",
         r"index.js imports './missing.js', but missing.js does not exist"),
        ({"index.js": b'import "../up.js";'}, "/p/index.js",
         r"index.js imports '../up.js', outside base_dir /p; set base_dir"),
        ({"index.js": b'import "./t.ts";', "t.ts": b""}, "/p/index.js",
         r"t.ts is TypeScript/JSX, and no_bundle uploads it as it is"),
        ({"index.js": b'import "./x.yaml";', "x.yaml": b""}, "/p/index.js",
         r"x.yaml: no module rule matches this file"),
        ({"index.js": b"\xff"}, "/p/index.js", r"index.js: JavaScript must be UTF-8"),
        ({}, "/elsewhere/index.js", r"main /elsewhere/index.js is outside base_dir /p"),
    ],
)
def test_module_graph_refuses(files: dict[str, bytes], main: str, message: str) -> None:
    with pytest.raises(WranglerImportError, match=message):
        module_graph(PurePosixPath(main), DictTree(files), Rules.from_config(None, []))


@pytest.mark.parametrize(
    ("parts", "expected"),
    [
        (["log"], ["log.ts", "log.tsx", "log.mts", "log.cts", "log.jsx", "log/index.ts",
                   "log/index.tsx", "log/index.jsx"]),
        (["lib", "log.js"], ["lib/log.ts", "lib/log.tsx"]),  # TypeScript's own spelling
        (["log.mjs"], ["log.mts"]),
        (["log.cjs"], ["log.cts"]),
        (["view.jsx"], ["view.tsx"]),
    ],
)
def test_typescript_candidates(parts: list[str], expected: list[str]) -> None:
    assert ["/".join(c) for c in typescript_candidates(parts)] == expected


TS_HINT = "is TypeScript/JSX, which workerd does not run: bundle the Worker first"


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"index.js": b'import { log } from "./log";', "log.ts": b""},
         f"index.js imports './log', but log does not exist; log.ts does, and {TS_HINT}"),
        ({"index.js": b'import "./lib/log.js";', "lib/log.ts": b""},
         f"but lib/log.js does not exist; lib/log.ts does, and {TS_HINT}"),
        ({"index.js": b'import "./ui";', "ui/index.tsx": b""},
         f"but ui does not exist; ui/index.tsx does, and {TS_HINT}"),
        ({"index.js": b'import "./view";', "view.jsx": b""}, f"view.jsx does, and {TS_HINT}"),
        ({"index.js": b'import "./gone";', "other.ts": b""},
         r"index.js imports './gone', but gone does not exist\Z"),
    ],
)
def test_an_import_of_a_typescript_file_says_which_file_is_there(
    files: dict[str, bytes], message: str
) -> None:
    with pytest.raises(WranglerImportError, match=message) as e:
        module_graph(BASE / "index.js", DictTree(files), Rules.from_config(None, []))
    assert "\n" not in str(e.value)
