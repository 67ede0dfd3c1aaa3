"""How wrangler would bundle a Worker, as values: esbuild's options from the config, the
files that ship as modules of their own, and esbuild's messages turned into one line each
that a wrangler user can act on. Pure: bundle.py runs the build."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import PurePath, PurePosixPath
from typing import Any

from edgeplane.wrangler.config import inherited
from edgeplane.wrangler.errors import WranglerImportError
from edgeplane.wrangler.modules import Rules

# What wrangler gives esbuild (its bundle step): the syntax workerd's V8 runs, JSX in
# .js files, the runtime's export conditions, and ES module output.
TARGET = "es2024"
CONDITIONS = ("workerd", "worker", "browser")
JS_LOADERS = {".js": "jsx", ".mjs": "jsx", ".cjs": "jsx"}
# The module types a bundle imports rather than inlines (wrangler's Text, Data and
# CompiledWasm rules); JavaScript and JSON are inlined unless find_additional_modules.
SEPARATE_TYPES = frozenset({"text", "data", "wasm"})
JS_TYPES = frozenset({"esModule", "commonJsModule"})
# Directories never searched for additional modules: dependencies and tool state.
SKIPPED_DIRS = frozenset({"node_modules", ".git", ".wrangler", ".turbo"})
# The date from which workerd defines `navigator` (global_navigator), and wrangler with it
# defines navigator.userAgent for the bundle.
NAVIGATOR_DATE = "2022-03-21"


@dataclass(frozen=True)
class Plan:
    """One Worker's build: what bundle.py hands to esbuild."""

    entry: PurePath
    out_name: str  # the bundle's module name, beside base_dir's modules
    options: dict[str, Any]
    date: str  # the compatibility date and flags (the Node.js mode, unenv's preset)
    flags: tuple[str, ...]
    # absolute file -> (module name relative to base_dir, module type)
    additional: dict[str, tuple[str, str]]
    find_all: bool  # ship every additional module, imported or not
    # file extension -> module type, for separate modules from outside base_dir
    separate: dict[str, str]

    @property
    def node_mode(self) -> str | None:
        """wrangler's Node.js compatibility mode for the Worker (see node_compat)."""
        return node_compat(self.flags, self.date)


# From this date nodejs_compat means wrangler's "v2" mode: unenv's polyfills where workerd
# has no module, and its globals.
NODEJS_COMPAT_V2_DATE = "2024-09-23"


def node_compat(flags: Iterable[str], date: str) -> str | None:
    """wrangler's Node.js compatibility mode for the Worker's flags and date: "v2" (workerd's
    modules and unenv's polyfills), "v1" (workerd's `node:` modules only), "als"
    (node:async_hooks only) or None."""
    flags = set(flags)
    if "nodejs_compat_v2" in flags or (
        "nodejs_compat" in flags and date >= NODEJS_COMPAT_V2_DATE
        and "no_nodejs_compat_v2" not in flags
    ):
        return "v2"
    if "nodejs_compat" in flags:
        return "v1"
    return "als" if "nodejs_als" in flags else None


def esbuild_options(
    cfg: Mapping[str, Any], top: Mapping[str, Any], root: PurePath, date: str, flags: list[str]
) -> dict[str, Any]:
    """esbuild's options for the config's build keys, with wrangler's defaults."""
    define = {"process.env.NODE_ENV": '"production"',
              "global.process.env.NODE_ENV": '"production"',
              "globalThis.process.env.NODE_ENV": '"production"'}
    if date >= NAVIGATOR_DATE and "no_global_navigator" not in flags:
        define["navigator.userAgent"] = '"Cloudflare-Workers"'
    # `define` is not inherited by environments (wrangler's rule); the others are.
    define.update({str(k): str(v) for k, v in (cfg.get("define") or {}).items()})
    options: dict[str, Any] = {
        "format": "esm",
        "platform": "browser",
        "target": TARGET,
        "conditions": list(CONDITIONS),
        "loader": dict(JS_LOADERS),
        "define": define,
        "minify": bool(inherited(cfg, top, "minify")),
        "keepNames": inherited(cfg, top, "keep_names") is not False,
    }
    if alias := top.get("alias"):  # top-level only, in wrangler
        options["alias"] = {str(k): _alias_target(str(v), root) for k, v in alias.items()}
    if tsconfig := inherited(cfg, top, "tsconfig"):
        options["tsconfig"] = str(root / str(tsconfig))
    for key, option in (("jsx_factory", "jsxFactory"), ("jsx_fragment", "jsxFragment")):
        if value := inherited(cfg, top, key):
            options[option] = str(value)
    return options


def _alias_target(target: str, root: PurePath) -> str:
    """A relative alias target is a file in the project (wrangler resolves it from the
    config's directory); a bare one is a package."""
    return str(root / target) if target.startswith(("./", "../")) else target


def additional_modules(
    files: Iterable[PurePath], base_dir: PurePath, entry: PurePath, rules: Rules,
    find_all: bool,
) -> dict[str, tuple[str, str]]:
    """The files under base_dir that ship as modules of their own, absolute path -> (module
    name, type): those of a Text, Data or CompiledWasm rule, and with find_all
    (find_additional_modules) every JavaScript file a rule matches too."""
    out: dict[str, tuple[str, str]] = {}
    for file in files:
        if file == entry:
            continue
        name = file.relative_to(base_dir).as_posix()
        kind = rules.type_of(name)
        if kind in SEPARATE_TYPES or (find_all and kind in JS_TYPES):
            out[str(file)] = (name, kind)
    return out


# What a bundle too big for one ConfigMap is built again with, in turn: whitespace and
# syntax first (names and code as written), then identifiers too; names stay (keepNames).
COMPACTIONS: tuple[tuple[str, dict[str, bool]], ...] = (
    ("whitespace and syntax", {"minifyWhitespace": True, "minifySyntax": True}),
    ("whitespace, syntax and identifiers", {"minify": True}),
)


def compactions(options: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The builds to try, in order, for a bundle that does not fit: none if the config
    already minifies (the user chose the output)."""
    if options.get("minify"):
        return []
    return [(what, {**options, **extra}) for what, extra in COMPACTIONS]


def separate_extensions(rules: Rules) -> dict[str, str]:
    """The extensions whose files ship as separate modules wherever they are (a package's
    .wasm, say), from the rules of the form `**/*.ext`; the first rule wins."""
    out: dict[str, str] = {}
    for kind, globs in rules.globs:
        for glob in globs:
            hit = re.fullmatch(r"\*\*/\*(\.[A-Za-z0-9_]+)", glob)
            if hit and kind in SEPARATE_TYPES:
                out.setdefault(hit.group(1), kind)
    return out


def out_name(entry: PurePath) -> str:
    """The bundle's module name: the entry's, as JavaScript (wrangler names it so)."""
    return f"{entry.stem}.js"


# --- esbuild's messages ---------------------------------------------------------------

_NOT_RESOLVED = re.compile(r'Could not resolve "([^"]+)"')
_NO_LOADER = re.compile(r'No loader is configured for "([^"]+)" files: (\S+)')


@dataclass(frozen=True)
class Message:
    """One esbuild error or warning, as the node script reports it."""

    text: str
    file: str | None = None
    line: int | None = None

    @classmethod
    def of(cls, raw: Mapping[str, Any]) -> Message:
        return cls(str(raw.get("text", "")), raw.get("file"), raw.get("line"))

    def where(self) -> str:
        if not self.file:
            return ""
        # A package's file from its node_modules/, not from wherever the tree is.
        cut = self.file.rfind("node_modules/")
        return f"{self.file[cut:] if cut >= 0 else self.file}:{self.line}: "


@dataclass(frozen=True)
class Fixes:
    """Facts about the project that turn an esbuild message into advice."""

    has_package_json: bool
    builtins: frozenset[str] = field(default_factory=frozenset)
    not_utf8: frozenset[str] = field(default_factory=frozenset)  # files, as esbuild names them


def explain(m: Message, fixes: Fixes) -> str:
    """One line: where, what, and what to do."""
    if "tsconfig" in m.text:
        return f"tsconfig: {m.text}; fix the tsconfig path in the wrangler config"
    if m.file in fixes.not_utf8:
        # esbuild reads source as UTF-8; its "Unexpected" byte says nothing about why.
        return f"{m.file}: not UTF-8; save it as UTF-8"
    if hit := _NOT_RESOLVED.search(m.text):
        return m.where() + unresolved_advice(hit.group(1), fixes)
    if hit := _NO_LOADER.search(m.text):
        ext, file = hit.groups()
        if "?" in file:
            return m.where() + unresolved_advice(file, fixes)
        return (
            f"{m.where()}imports {file}: no module rule matches {ext} files; add a `rules` "
            f'entry for it (e.g. {{ type = "Data", globs = ["**/*{ext}"] }})'
        )
    return m.where() + m.text.replace("\n", " ")


def unresolved_advice(spec: str, fixes: Fixes) -> str:
    if spec.removeprefix("node:").split("/")[0] in fixes.builtins:
        return (
            f'cannot import "{spec}", a Node.js built-in module; add "nodejs_compat" to '
            "compatibility_flags"
        )
    if "?" in spec and not spec.endswith("?module"):
        return (
            f'cannot import "{spec}": an import query ({spec[spec.index("?"):]}) is Vite\'s, '
            "not wrangler's; import the file itself (a module rule gives its type), or "
            "build with Vite first"
        )
    if spec.startswith("virtual:"):
        return (
            f'cannot import "{spec}", a module a Vite plugin generates: build the project '
            "with its framework first (e.g. `npm run build`) and import the built Worker "
            "with --main"
        )
    if spec.startswith(("./", "../", "/")):
        return f'cannot import "{spec}": no such file (tried the extensions esbuild tries)'
    package = package_name(spec)
    install = (
        "run `npm install` in the project first" if fixes.has_package_json
        else f"add it to package.json and run `npm install {package}`"
    )
    return f'cannot import "{spec}": package {package} is not installed; {install}'


def package_name(spec: str) -> str:
    parts = PurePosixPath(spec).parts
    return "/".join(parts[:2]) if spec.startswith("@") else parts[0]


def bundle_error(errors: list[Message], fixes: Fixes, worker: str) -> WranglerImportError:
    """The first error, and how many more there are: one line, the first to fix."""
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return WranglerImportError(f"{worker}: bundling failed: {explain(errors[0], fixes)}{more}")
