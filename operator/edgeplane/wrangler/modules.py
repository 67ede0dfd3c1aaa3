"""The module graph: every module reachable from `main`, with its type and content."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

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


def _resolve_file(path: Path) -> Path | None:
    if path.is_file():
        return path
    for suffix in RESOLVE_SUFFIXES:
        p = path.with_name(path.name + suffix)
        if p.is_file():
            return p
    index = path / "index.js"
    return index if index.is_file() else None


def module_graph(
    main: Path, base_dir: Path, rules: Rules, warn: list[str], extra_bare: set[str]
) -> list[Module]:
    """Every module reachable from `main` through relative specifiers, main first."""
    base_dir = base_dir.resolve()
    main = main.resolve()
    try:
        main_name = main.relative_to(base_dir).as_posix()
    except ValueError:
        raise WranglerImportError(f"main {main} is outside base_dir {base_dir}") from None
    modules: dict[str, Module] = {}
    queue: list[tuple[str, Path]] = [(main_name, main)]
    while queue:
        name, path = queue.pop(0)
        if name in modules:
            continue
        if path.suffix in TYPESCRIPT_SUFFIXES:
            raise WranglerImportError(
                f"{name} is TypeScript/JSX, which needs a bundler: build the Worker first "
                "(e.g. `npx wrangler deploy --dry-run --outdir dist`) and import the "
                "JavaScript output with `--main dist/<file>.js`"
            )
        # The type comes from the file found (wrangler's rules match file paths); the
        # module keeps the name workerd will look up: the specifier as written, resolved.
        kind = rules.type_of(path.relative_to(base_dir).as_posix())
        if kind is None:
            raise WranglerImportError(
                f"{name}: no module rule matches this file; add a `rules` entry for it "
                "(Text, Data, CompiledWasm, ESModule or CommonJS)"
            )
        content = path.read_bytes()
        modules[name] = Module(name, kind, content)
        if kind not in ("esModule", "commonJsModule"):
            continue
        try:
            src = content.decode("utf-8")
        except UnicodeDecodeError:
            raise WranglerImportError(f"{name}: JavaScript must be UTF-8") from None
        for spec in specifiers(src):
            if spec.startswith(BUILTIN_PREFIXES):
                continue
            if not spec.startswith(("./", "../")):
                extra_bare.add(spec)
                continue
            parts: list[str] = []
            for seg in (PurePosixPath(name).parent / spec).parts:
                if seg == "..":
                    if not parts:
                        raise WranglerImportError(
                            f"{name} imports {spec!r}, outside base_dir {base_dir}; set "
                            "base_dir in the wrangler config to a directory holding both"
                        )
                    parts.pop()
                elif seg not in (".", ""):
                    parts.append(seg)
            resolved = _resolve_file(base_dir.joinpath(*parts))
            if resolved is None:
                raise WranglerImportError(
                    f"{name} imports {spec!r}, but {'/'.join(parts)} does not exist"
                )
            queue.append(("/".join(parts), resolved.resolve()))
    return list(modules.values())

