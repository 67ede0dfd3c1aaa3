"""The module graph: every module reachable from `main`, with its type and content. The
walk reads through a SourceTree, so it runs on a dict as well as on a project directory."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePath, PurePosixPath
from typing import Any, Protocol, TypeVar

from edgeplane.wrangler.comments import string_end
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

# Read from js_code's output, where every string literal is "N" (N: its index in the
# list of their texts), so only code is matched: never a comment, nor text inside a
# string or a template literal.
_IMPORT_RES = (
    re.compile(r'(?<![.$])\bimport\s*(?:[\w$*{}\s,]+?\s*from\s*)?"(\d+)"'),
    re.compile(r'(?<![.$])\bexport\s*(?:\*(?:\s*as\s+[\w$]+)?|\{[^}]*\})\s*from\s*"(\d+)"'),
    re.compile(r'(?<![.$])\bimport\s*\(\s*"(\d+)"\s*\)'),
    re.compile(r'(?<![.$])\brequire\s*\(\s*"(\d+)"\s*\)'),
)
# A `/` after one of these (or at the start) opens a regular expression literal; after
# anything else it divides.
_REGEX_AFTER_CHARS = frozenset("(,=:[!&|?{};+-*%<>~^")
_REGEX_AFTER_WORD = re.compile(
    r"(?<![\w$.])(?:return|typeof|case|do|else|in|of|new|delete|void|throw|yield|await|"
    r"instanceof)\Z"
)


def specifiers(src: str) -> list[str]:
    """Module specifiers a JavaScript module imports, re-exports or requires, in order."""
    code, strings = js_code(src)
    found: list[tuple[int, str]] = []
    for rx in _IMPORT_RES:
        found += [(m.start(), strings[int(m.group(1))]) for m in rx.finditer(code)]
    seen: list[str] = []
    for _, spec in sorted(found):
        if spec and "\n" not in spec and spec not in seen:
            seen.append(spec)
    return seen


def js_code(src: str) -> tuple[str, list[str]]:
    """JavaScript reduced to its code: comments and regular expression literals become a
    space; each string literal, and each template literal without `${`, becomes "N" with
    its text the returned list's item N; the text of other template literals becomes a
    space, while the code in their `${...}` stays, nested templates included."""
    out: list[str] = []
    strings: list[str] = []
    depths: list[int] = []  # for each `${` we are inside, innermost last: `{`s open in it
    i, n = 0, len(src)
    while i < n:
        c = src[i]
        if c in "'\"":
            j = string_end(src, i, multiline=False)
            out.append(f'"{len(strings)}"')
            strings.append(src[i + 1 : j - 1])
        elif c == "`" or (c == "}" and depths and depths[-1] == 0):
            if c == "}":
                depths.pop()
            j, text, opened = _template_part(src, i + 1)
            if c == "`" and not opened:
                out.append(f'"{len(strings)}"')
                strings.append(text)
            else:
                out.append(" ")
            if opened:
                depths.append(0)
        elif src.startswith("//", i):
            j = src.find("\n", i)
            j = n if j < 0 else j
        elif src.startswith("/*", i):
            j = src.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append(" ")
        elif c == "/" and (j := _regex_end(src, i, out)) > i:
            out.append(" ")
        else:
            if depths and c in "{}":
                depths[-1] += 1 if c == "{" else -1
            out.append(c)
            j = i + 1
        i = j
    return "".join(out), strings


def _template_part(src: str, i: int) -> tuple[int, str, bool]:
    """Template literal text from src[i]: where it ends, the text, and whether a `${` ends
    it (rather than the closing backtick, or the end of src)."""
    j, n = i, len(src)
    while j < n:
        if src[j] == "\\":
            j += 2
        elif src[j] == "`":
            return j + 1, src[i:j], False
        elif src.startswith("${", j):
            return j + 2, src[i:j], True
        else:
            j += 1
    return n, src[i:n], False


def _regex_end(src: str, i: int, out: list[str]) -> int:
    """Just past the regular expression literal whose `/` is src[i], or i when that `/`
    divides: by what comes before it (the code so far, `out`), or when no `/` closes it on
    its line."""
    before = "".join(out[-16:]).rstrip()
    if before and before[-1] not in _REGEX_AFTER_CHARS and not _REGEX_AFTER_WORD.search(before):
        return i
    j, n, in_class = i + 1, len(src), False
    while j < n and src[j] != "\n":
        c = src[j]
        if c == "\\":
            j += 1
        elif c == "[":
            in_class = True
        elif c == "]":
            in_class = False
        elif c == "/" and not in_class:
            j += 1
            while j < n and (src[j].isalnum() or src[j] in "_$"):
                j += 1  # the flags
            return j
        j += 1
    return i


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

    globs: tuple[tuple[str, tuple[str, ...]], ...]  # (module type, globs), first match wins
    rules: tuple[tuple[str, tuple[re.Pattern[str], ...]], ...] = ()  # the same, compiled

    def __post_init__(self) -> None:
        compiled = tuple((k, tuple(_glob_re(g) for g in gs)) for k, gs in self.globs)
        object.__setattr__(self, "rules", compiled)

    @classmethod
    def from_config(cls, raw: Any, warn: list[str]) -> Rules:
        globs: list[tuple[str, tuple[str, ...]]] = []
        for r in raw or []:
            kind = WRANGLER_RULE_TYPES.get(str(r.get("type")))
            if kind is None:
                warn.append(f"rules: module type {r.get('type')!r} is not supported; ignored")
                continue
            globs.append((kind, tuple(str(g) for g in r.get("globs", []))))
        return cls((*globs, *DEFAULT_RULES))

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
            f"{name} is TypeScript/JSX, and no_bundle uploads it as it is, which workerd "
            "cannot load: remove no_bundle so that edgeplane bundles it"
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
