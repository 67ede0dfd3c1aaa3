"""The module graph: every module reachable from `main`, with its type and content. The
walk reads through a SourceTree, so it runs on a dict as well as on a project directory."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePath, PurePosixPath
from typing import Any, Protocol, TypeVar

from edgeplane.wrangler.comments import strip_comments
from edgeplane.wrangler.errors import WranglerImportError

# wrangler's default module rules when it does not bundle (its `rules` setting), plus the
# module kinds workerd loads natively.
WRANGLER_RULE_TYPES = {
    "ESModule": "esModule",
    "CommonJS": "commonJsModule",
    "Text": "text",
    "Data": "data",
    "CompiledWasm": "wasm",
}
DEFAULT_RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("esModule", ("**/*.js", "**/*.mjs")),
    ("commonJsModule", ("**/*.cjs",)),
    ("text", ("**/*.txt", "**/*.html", "**/*.sql")),
    ("data", ("**/*.bin",)),
    ("wasm", ("**/*.wasm",)),
    ("json", ("**/*.json",)),
)
TYPESCRIPT_SUFFIXES = (".ts", ".tsx", ".mts", ".cts", ".jsx")
# Extensions tried for an extensionless relative import, as bundlers resolve them.
RESOLVE_SUFFIXES = (".js", ".mjs", ".cjs", ".json")
BUILTIN_PREFIXES = ("node:", "cloudflare:", "workerd:")

# Comments are removed before specifiers are read, so commented-out imports do not count.
_IMPORT_RES = (
    re.compile(r"""\bimport\s*(?:[\w$*{}\s,]+?\s*from\s*)?["']([^"'\n]+)["']"""),
    re.compile(r"""\bexport\s*(?:\*(?:\s*as\s+[\w$]+)?|\{[^}]*\})\s*from\s*["']([^"'\n]+)["']"""),
    re.compile(r"""\bimport\s*\(\s*["']([^"'\n]+)["']\s*\)"""),
    re.compile(r"""\brequire\s*\(\s*["']([^"'\n]+)["']\s*\)"""),
)


def specifiers(src: str) -> list[str]:
    """Module specifiers a JavaScript module imports, re-exports or requires, in order."""
    code, _ = strip_comments(src, quotes="\"'`", multiline="`")
    found: list[tuple[int, str]] = []
    for rx in _IMPORT_RES:
        found += [(m.start(), m.group(1)) for m in rx.finditer(code)]
    seen: list[str] = []
    for _, spec in sorted(found):
        if spec not in seen:
            seen.append(spec)
    return seen


def _glob_re(glob: str) -> re.Pattern[str]:
    out = ""
    i = 0
    while i < len(glob):
        if glob.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
        elif glob.startswith("**", i):
            out += ".*"
            i += 2
        elif glob[i] == "*":
            out += "[^/]*"
            i += 1
        elif glob[i] == "?":
            out += "[^/]"
            i += 1
        else:
            out += re.escape(glob[i])
            i += 1
    return re.compile(out + r"\Z")


@dataclass(frozen=True)
class Rules:
    """Module type by file name: the project's `rules` first, then wrangler's defaults."""

    rules: tuple[tuple[str, tuple[re.Pattern[str], ...]], ...]

    @classmethod
    def from_config(cls, raw: Any, warn: list[str]) -> Rules:
        rules: list[tuple[str, tuple[re.Pattern[str], ...]]] = []
        for r in raw or []:
            kind = WRANGLER_RULE_TYPES.get(str(r.get("type")))
            if kind is None:
                warn.append(f"rules: module type {r.get('type')!r} is not supported; ignored")
                continue
            rules.append((kind, tuple(_glob_re(g) for g in r.get("globs", []))))
        rules += [(k, tuple(_glob_re(g) for g in gs)) for k, gs in DEFAULT_RULES]
        return cls(tuple(rules))

    def type_of(self, name: str) -> str | None:
        for kind, globs in self.rules:
            if any(g.match(name) for g in globs):
                return kind
        return None


@dataclass(frozen=True)
class Module:
    name: str  # as workerd resolves it: the path relative to base_dir
    type: str
    content: bytes


P = TypeVar("P", bound=PurePath)


def candidates(path: P) -> tuple[P, ...]:
    """The files an import of `path` may mean, in the order bundlers try them: the path
    itself, the path with an extension added, then the directory's index.js."""
    return (path, *(path.with_name(path.name + s) for s in RESOLVE_SUFFIXES), path / "index.js")


def import_parts(importer: str, spec: str) -> list[str] | None:
    """The path (as segments from base_dir) a relative specifier in module `importer`
    names; None when it climbs above base_dir."""
    parts: list[str] = []
    for seg in (PurePosixPath(importer).parent / spec).parts:
        if seg == "..":
            if not parts:
                return None
            parts.pop()
        elif seg not in (".", ""):
            parts.append(seg)
    return parts


class SourceTree(Protocol):
    """The files module_graph reads: a project directory (project.DiskTree), or a dict."""

    @property
    def base_dir(self) -> PurePath: ...

    def find(self, parts: Sequence[str]) -> PurePath | None:
        """The file (see candidates) an import of base_dir/parts means, or None."""
        ...

    def read(self, path: PurePath) -> bytes: ...


def module_graph(main: PurePath, tree: SourceTree, rules: Rules) -> tuple[list[Module], set[str]]:
    """Every module reachable from `main` through relative specifiers, main first, and the
    bare specifiers met on the way (a bundler's job)."""
    try:
        main_name = main.relative_to(tree.base_dir).as_posix()
    except ValueError:
        raise WranglerImportError(f"main {main} is outside base_dir {tree.base_dir}") from None
    modules: dict[str, Module] = {}
    bare: set[str] = set()
    queue: list[tuple[str, PurePath]] = [(main_name, main)]
    while queue:
        name, path = queue.pop(0)
        if name in modules:
            continue
        module = modules[name] = _load(name, path, tree, rules)
        if module.type in ("esModule", "commonJsModule"):
            found, bare_specs = _imports(module, tree)
            queue += found
            bare.update(bare_specs)
    return list(modules.values()), bare


def _load(name: str, path: PurePath, tree: SourceTree, rules: Rules) -> Module:
    if path.suffix in TYPESCRIPT_SUFFIXES:
        raise WranglerImportError(
            f"{name} is TypeScript/JSX, which needs a bundler: build the Worker first "
            "(e.g. `npx wrangler deploy --dry-run --outdir dist`) and import the "
            "JavaScript output with `--main dist/<file>.js`"
        )
    # The type comes from the file found (wrangler's rules match file paths); the
    # module keeps the name workerd will look up: the specifier as written, resolved.
    kind = rules.type_of(path.relative_to(tree.base_dir).as_posix())
    if kind is None:
        raise WranglerImportError(
            f"{name}: no module rule matches this file; add a `rules` entry for it "
            "(Text, Data, CompiledWasm, ESModule or CommonJS)"
        )
    return Module(name, kind, tree.read(path))


def _imports(module: Module, tree: SourceTree) -> tuple[list[tuple[str, PurePath]], list[str]]:
    """The modules a JavaScript module imports by relative specifier (name, file), and the
    bare specifiers it imports."""
    try:
        src = module.content.decode("utf-8")
    except UnicodeDecodeError:
        raise WranglerImportError(f"{module.name}: JavaScript must be UTF-8") from None
    found: list[tuple[str, PurePath]] = []
    bare: list[str] = []
    for spec in specifiers(src):
        if spec.startswith(BUILTIN_PREFIXES):
            continue
        if not spec.startswith(("./", "../")):
            bare.append(spec)
            continue
        parts = import_parts(module.name, spec)
        if parts is None:
            raise WranglerImportError(
                f"{module.name} imports {spec!r}, outside base_dir {tree.base_dir}; set "
                "base_dir in the wrangler config to a directory holding both"
            )
        path = tree.find(parts)
        if path is None:
            raise _not_found(module.name, spec, parts, tree)
        if not path.is_relative_to(tree.base_dir):
            # A symbolic link out of the project: its target would be copied into the
            # manifests from wherever it points.
            raise WranglerImportError(
                f"{module.name} imports {spec!r}: {'/'.join(parts)} is a link to {path}, "
                f"outside base_dir {tree.base_dir}; copy the file into the project instead"
            )
        found.append(("/".join(parts), path))
    return found, bare


def typescript_candidates(parts: Sequence[str]) -> list[list[str]]:
    """The TypeScript/JSX files an import of base_dir/parts may mean to a bundler, though
    not to workerd: `./log` -> log.ts, ..., log/index.ts; `./log.js` -> log.ts (TypeScript
    writes its imports with the extension of the output)."""
    *head, name = parts
    for js, ts in ((".js", (".ts", ".tsx")), (".mjs", (".mts",)), (".cjs", (".cts",))):
        if name.endswith(js):
            return [[*head, name.removesuffix(js) + s] for s in ts]
    if name.endswith(".jsx"):
        return [[*head, name.removesuffix(".jsx") + ".tsx"]]
    return [
        *([*head, name + s] for s in TYPESCRIPT_SUFFIXES),
        *([*head, name, "index" + s] for s in (".ts", ".tsx", ".jsx")),
    ]


def _not_found(importer: str, spec: str, parts: list[str], tree: SourceTree) -> Exception:
    """The error for a relative import of nothing: which TypeScript file is there instead,
    if one is."""
    missing = f"{importer} imports {spec!r}, but {'/'.join(parts)} does not exist"
    found = next((c for c in typescript_candidates(parts) if tree.find(c) is not None), None)
    if found is None:
        return WranglerImportError(missing)
    return WranglerImportError(
        f"{missing}; {'/'.join(found)} does, and is TypeScript/JSX, which workerd does not "
        "run: bundle the Worker first (e.g. `npx wrangler deploy --dry-run --outdir dist`) "
        "and import the JavaScript output with `--main dist/<file>.js`"
    )
