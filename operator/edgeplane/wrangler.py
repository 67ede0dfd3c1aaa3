"""`edgeplane import`: turn a wrangler project (wrangler.toml / wrangler.json[c]) into
Worker, WorkerRoute and ConfigMap manifests.

What maps, and how:

- `name`, `main` and the module graph: starting at `main`, every relative `import`,
  `export ... from`, `import("...")` and `require("...")` is followed to a file inside the
  project; each file becomes a module named by its path relative to `base_dir` (default:
  the directory of `main`, as wrangler does without a bundler). The sources go into
  ConfigMaps (`configMapKeyRef`), never inline, so a Worker is not limited by the 1 MiB
  inline limit, and the Worker object stays small.
- `compatibility_date`, `compatibility_flags`.
- `vars`: strings become `plainText`, objects `json`; other JSON values (numbers, booleans,
  arrays) become `plainText` holding their JSON text, with a warning (edgeplane's json
  binding takes objects only).
- `secrets.required` (or, without it, the names in `.dev.vars`: names only, values are never
  read into the output) become `secretKeyRef` placeholders into one Secret per Worker,
  listed at the top of the output with the command that creates it.
- `kv_namespaces`, `durable_objects.bindings` (classes of this Worker), `services`.
- `route` / `routes`: strings, `{pattern, zone_name | zone_id}`, or
  `{pattern, custom_domain = true}` (the whole host: `host/*`).
- `[env.<name>]`: a separate Worker named `<name>-<env>` (or the environment's `name`).
  Like wrangler, `main`, compatibility date and flags and routes are inherited from the top
  level; vars, secrets and bindings are not.

Anything else that changes what the Worker does (R2, D1, queues, crons, migrations, ...)
is listed by name in a warning on stderr; keys that only steer wrangler's tooling are
listed as ignored. Nothing is dropped silently.
"""

from __future__ import annotations

import argparse
import base64
import json
import re
import sys
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import yaml
from pydantic import ValidationError

from edgeplane.api.common import API_VERSION, DATA_KEY_RE, DNS_LABEL_RE, LABEL_KEY_RE
from edgeplane.api.route import WorkerRoute
from edgeplane.api.worker import MAX_PLAIN_TEXT, Worker
from edgeplane.routing import pattern_error
from edgeplane.wire import JS_IDENTIFIER_RE

CONFIG_NAMES = ("wrangler.jsonc", "wrangler.json", "wrangler.toml")

# Keys this importer maps (top level or inside [env.x]).
MAPPED_KEYS = frozenset({
    "name", "main", "compatibility_date", "compatibility_flags", "vars", "secrets",
    "kv_namespaces", "durable_objects", "services", "route", "routes", "env", "rules",
    "base_dir", "find_additional_modules",
})
# Keys that only steer wrangler itself (building, uploading, local dev, the account) and
# change nothing about what the Worker does once deployed.
TOOLING_KEYS = frozenset({
    "$schema", "account_id", "build", "dev", "minify", "keep_names", "no_bundle",
    "send_metrics", "upload_source_maps", "tsconfig", "zone_id", "legacy_env",
    "keep_vars", "preserve_file_names", "site_bucket", "jsx_factory", "jsx_fragment",
    "ignored_warnings",
})

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

# A ConfigMap (like any object) must stay under etcd's request limit; keep a margin for
# metadata and base64.
CONFIG_MAP_BUDGET = 900 * 1024

# Comments are removed before specifiers are read, so commented-out imports do not count.
_IMPORT_RES = (
    re.compile(r"""\bimport\s*(?:[\w$*{}\s,]+?\s*from\s*)?["']([^"'\n]+)["']"""),
    re.compile(r"""\bexport\s*(?:\*(?:\s*as\s+[\w$]+)?|\{[^}]*\})\s*from\s*["']([^"'\n]+)["']"""),
    re.compile(r"""\bimport\s*\(\s*["']([^"'\n]+)["']\s*\)"""),
    re.compile(r"""\brequire\s*\(\s*["']([^"'\n]+)["']\s*\)"""),
)


class WranglerImportError(Exception):
    """The project cannot be imported; the message says what to change."""


# --- reading the configuration ------------------------------------------------------------


def strip_jsonc(text: str) -> str:
    """JSON with comments and trailing commas -> JSON. Strings are copied untouched, so a
    `//` or `,]` inside a string (a URL, say) stays as it is."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append(text[i : j + 1])
            i = j + 1
        elif text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            if j < 0:
                raise WranglerImportError("unterminated /* comment in the JSONC file")
            out.append(" ")
            i = j + 2
        elif c == ",":
            # A trailing comma: only whitespace and comments until the closing bracket.
            j = i + 1
            while j < n:
                if text[j].isspace():
                    j += 1
                elif text.startswith("//", j):
                    k = text.find("\n", j)
                    j = n if k < 0 else k
                elif text.startswith("/*", j):
                    k = text.find("*/", j + 2)
                    j = n if k < 0 else k + 2
                else:
                    break
            if j >= n or text[j] not in "]}":
                out.append(c)
            i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def find_config(path: Path) -> Path:
    if path.is_file():
        return path
    if path.is_dir():
        found = [path / n for n in CONFIG_NAMES if (path / n).is_file()]
        if found:
            # wrangler prefers its JSON formats over TOML when both are present.
            return found[0]
        raise WranglerImportError(f"{path}: no {', '.join(CONFIG_NAMES)} in this directory")
    raise WranglerImportError(f"{path}: no such file or directory")


def load_config(path: Path) -> dict[str, Any]:
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix == ".toml":
            data: Any = tomllib.loads(text)
        else:
            data = json.loads(strip_jsonc(text))
    except (tomllib.TOMLDecodeError, ValueError) as e:
        raise WranglerImportError(f"{path}: {e}") from None
    if not isinstance(data, dict):
        raise WranglerImportError(f"{path}: the configuration must be a table/object")
    return data


def dev_var_names(path: Path) -> list[str]:
    """The names in a .dev.vars file. Only names: the values are never kept."""
    names: list[str] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").strip()
        key, sep, _ = line.partition("=")
        key = key.strip()
        if sep and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key) and key not in names:
            names.append(key)
    return names


# --- the module graph ---------------------------------------------------------------------


def strip_js_comments(src: str) -> str:
    """Source without // and /* */ comments; string and template literals are kept."""
    out: list[str] = []
    i, n = 0, len(src)
    while i < n:
        c = src[i]
        if c in "\"'`":
            j = i + 1
            while j < n and src[j] != c:
                if src[j] == "\\":
                    j += 1
                elif c != "`" and src[j] == "\n":
                    break
                j += 1
            out.append(src[i : j + 1])
            i = j + 1
        elif src.startswith("//", i):
            j = src.find("\n", i)
            i = n if j < 0 else j
        elif src.startswith("/*", i):
            j = src.find("*/", i + 2)
            i = n if j < 0 else j + 2
            out.append(" ")
        else:
            out.append(c)
            i += 1
    return "".join(out)


def specifiers(src: str) -> list[str]:
    """Module specifiers a JavaScript module imports, re-exports or requires, in order."""
    code = strip_js_comments(src)
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


# --- the manifests ------------------------------------------------------------------------


@dataclass
class Result:
    docs: list[dict[str, Any]] = field(default_factory=list)
    secrets: dict[str, list[str]] = field(default_factory=dict)  # Secret name -> keys
    warnings: list[str] = field(default_factory=list)
    unsupported: dict[str, list[str]] = field(default_factory=dict)  # Worker -> keys
    ignored: dict[str, list[str]] = field(default_factory=dict)  # Worker -> tooling keys


def _config_map_key(name: str, taken: set[str]) -> str:
    key = name.replace("/", "__").replace("@", "_at_").replace("+", "_plus_")
    key = re.sub(r"[^-._a-zA-Z0-9]", "_", key)
    base, i = key, 1
    while key in taken:
        i += 1
        key = f"{base}-{i}"
    taken.add(key)
    assert re.fullmatch(DATA_KEY_RE, key)
    return key


def _routes(raw: Any, worker: str, warn: list[str]) -> list[str]:
    items = raw if isinstance(raw, list) else [raw]
    patterns: list[str] = []
    for item in items:
        custom = False
        if isinstance(item, str):
            pattern = item
        elif isinstance(item, Mapping) and isinstance(item.get("pattern"), str):
            pattern = item["pattern"]
            custom = bool(item.get("custom_domain"))
        else:
            raise WranglerImportError(f"{worker}: route {item!r} has no pattern")
        if custom:
            host = pattern.split("://", 1)[-1].rstrip("/")
            if "/" in host or "*" in host:
                raise WranglerImportError(
                    f"{worker}: custom domain {pattern!r} must be a plain hostname"
                )
            pattern = f"{host}/*"
        elif "/" not in pattern.split("://", 1)[-1]:
            warn.append(
                f"{worker}: route {pattern!r} has no path; imported as {pattern + '/*'!r}"
            )
            pattern += "/*"
        err = pattern_error(pattern)
        if err is not None:
            raise WranglerImportError(f"{worker}: route {pattern!r}: {err}")
        if pattern not in patterns:
            patterns.append(pattern)
    return patterns


def _binding_name(name: Any, where: str) -> str:
    if not isinstance(name, str) or not re.fullmatch(JS_IDENTIFIER_RE, name):
        raise WranglerImportError(f"{where}: binding name {name!r} is not a JavaScript identifier")
    return name


@dataclass(frozen=True)
class Options:
    namespace: str | None = None
    main: Path | None = None  # overrides `main` (e.g. a bundler's output)
    # EdgeTarget labels the Workers select (spec.targets.matchLabels); empty: every target.
    target_labels: tuple[tuple[str, str], ...] = ()


def convert_worker(
    cfg: Mapping[str, Any],
    top: Mapping[str, Any],
    env: str | None,
    root: Path,
    opts: Options,
    result: Result,
) -> None:
    """One Worker (the top level when env is None, else [env.<env>]) into result.docs."""
    warn = result.warnings

    def inherited(key: str) -> Any:
        return cfg[key] if key in cfg else top.get(key)

    if env is None:
        name = cfg.get("name")
    else:
        name = cfg.get("name") or (f"{top['name']}-{env}" if top.get("name") else None)
    if not isinstance(name, str) or not name:
        raise WranglerImportError("the wrangler config has no `name`; add one")
    if not re.fullmatch(DNS_LABEL_RE, name):
        raise WranglerImportError(
            f"name {name!r}: a Worker name is at most 63 lowercase letters, digits and '-'"
        )

    unknown = [k for k in cfg if k not in MAPPED_KEYS and k not in TOOLING_KEYS]
    # An empty table or list configures nothing; everything else is reported.
    unsupported = sorted(k for k in unknown if cfg[k] not in ([], {}, None, False))
    if unsupported:
        result.unsupported[name] = unsupported
    ignored = sorted(k for k in cfg if k in TOOLING_KEYS)
    if ignored:
        result.ignored[name] = ignored

    main_raw = opts.main if opts.main is not None else inherited("main")
    if not main_raw:
        raise WranglerImportError(
            f"{name}: no `main`; edgeplane runs ES module Workers: set main to the entry file"
        )
    main = (root / Path(main_raw)).resolve() if not Path(main_raw).is_absolute() else Path(
        main_raw
    )
    if not main.is_file():
        raise WranglerImportError(f"{name}: main {main_raw} not found")
    base_raw = inherited("base_dir")
    base_dir = (root / base_raw).resolve() if base_raw else main.parent
    if opts.main is not None and not base_raw:
        base_dir = main.parent
    rules = Rules.from_config(inherited("rules"), warn)
    bare: set[str] = set()
    modules = module_graph(main, base_dir, rules, warn, bare)
    if bare:
        warn.append(
            f"{name}: imports without a relative path are not bundled: "
            f"{', '.join(sorted(bare))}; bundle the Worker first (e.g. `npx wrangler deploy "
            "--dry-run --outdir dist`) and import with `--main dist/<file>.js`"
        )
    if inherited("find_additional_modules"):
        warn.append(
            f"{name}: find_additional_modules: only modules reachable by import from main "
            "are imported"
        )

    date = inherited("compatibility_date")
    if not isinstance(date, str):
        raise WranglerImportError(f"{name}: no compatibility_date; add one (YYYY-MM-DD)")
    flags = list(inherited("compatibility_flags") or [])

    ns_meta: dict[str, Any] = {"namespace": opts.namespace} if opts.namespace else {}
    labels = {"app.kubernetes.io/name": name, "app.kubernetes.io/managed-by": "edgeplane-import"}

    # Module sources: ConfigMaps of at most CONFIG_MAP_BUDGET each.
    docs: list[dict[str, Any]] = []
    spec_modules: list[dict[str, Any]] = []
    maps: list[dict[str, Any]] = []
    used = CONFIG_MAP_BUDGET + 1
    keys: set[str] = set()
    for m in modules:
        size = len(m.content) * (4 / 3 if m.type in ("data", "wasm") else 1) + len(m.name)
        if size > CONFIG_MAP_BUDGET:
            raise WranglerImportError(
                f"{name}: module {m.name} is {len(m.content)} bytes, more than one "
                "ConfigMap holds; serve it from an https URL (modules[].url + sha256)"
            )
        if used + size > CONFIG_MAP_BUDGET:
            maps.append({
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "", **ns_meta, "labels": labels},
            })
            used = 0
        used += int(size)
        cm = maps[-1]
        key = _config_map_key(m.name, keys)
        if m.type in ("data", "wasm"):
            cm.setdefault("binaryData", {})[key] = base64.b64encode(m.content).decode()
        else:
            try:
                cm.setdefault("data", {})[key] = m.content.decode("utf-8")
            except UnicodeDecodeError:
                raise WranglerImportError(
                    f"{name}: module {m.name} ({m.type}) is not UTF-8; add a rules entry "
                    "with type Data for it"
                ) from None
        spec_modules.append({
            "name": m.name,
            "type": m.type,
            "configMapKeyRef": {"name": "", "key": key},
            "_map": len(maps) - 1,
        })
    for i, cm in enumerate(maps):
        cm["metadata"]["name"] = f"{name}-modules" if len(maps) == 1 else f"{name}-modules-{i+1}"
    for sm in spec_modules:
        sm["configMapKeyRef"]["name"] = maps[sm.pop("_map")]["metadata"]["name"]
        if sm["type"] == "esModule":
            del sm["type"]  # the default
    docs += maps

    bindings = _bindings(cfg, name, root, env, result)
    spec: dict[str, Any] = {
        "compatibilityDate": date,
        **({"compatibilityFlags": flags} if flags else {}),
        "mainModule": modules[0].name,
        "modules": spec_modules,
        **({"bindings": bindings} if bindings else {}),
        **({"targets": {"matchLabels": dict(opts.target_labels)}} if opts.target_labels else {}),
    }
    worker_doc = {
        "apiVersion": API_VERSION,
        "kind": "Worker",
        "metadata": {"name": name, **ns_meta, "labels": labels},
        "spec": spec,
    }
    _validate(Worker, worker_doc, name)
    docs.append(worker_doc)

    routes_raw = inherited("routes") if ("routes" in cfg or "route" not in cfg) else None
    if routes_raw is None:
        routes_raw = inherited("route")
    patterns = _routes(routes_raw, name, warn) if routes_raw else []
    for i, pattern in enumerate(patterns):
        route_doc = {
            "apiVersion": API_VERSION,
            "kind": "WorkerRoute",
            "metadata": {
                "name": name if len(patterns) == 1 else f"{name}-{i + 1}",
                **ns_meta,
                "labels": labels,
            },
            "spec": {"pattern": pattern, "worker": name},
        }
        _validate(WorkerRoute, route_doc, name)
        docs.append(route_doc)
    if not patterns:
        warn.append(f"{name}: no routes; add a WorkerRoute for it to receive requests")
    result.docs += docs


def _bindings(
    cfg: Mapping[str, Any], name: str, root: Path, env: str | None, result: Result
) -> list[dict[str, Any]]:
    warn = result.warnings
    out: list[dict[str, Any]] = []
    var_names: set[str] = set()
    for key, value in (cfg.get("vars") or {}).items():
        bname = _binding_name(key, f"{name}: vars")
        var_names.add(bname)
        if isinstance(value, str):
            if len(value.encode()) > MAX_PLAIN_TEXT:
                raise WranglerImportError(f"{name}: vars.{key} is longer than 5 KiB")
            out.append({"name": bname, "plainText": value})
        elif isinstance(value, dict):
            out.append({"name": bname, "json": value})
        else:
            text = json.dumps(value)
            warn.append(
                f"{name}: vars.{key} is a JSON {type(value).__name__}; edgeplane's json "
                f"binding takes objects, so env.{key} is the string {text!r}"
            )
            out.append({"name": bname, "plainText": text})

    secrets_cfg = cfg.get("secrets")
    names: list[str] = []
    if isinstance(secrets_cfg, Mapping) and "required" in secrets_cfg:
        names = [str(s) for s in secrets_cfg.get("required") or []]
    elif isinstance(secrets_cfg, list):
        names = [str(s) for s in secrets_cfg]
    else:
        for candidate in ([f".dev.vars.{env}"] if env else []) + [".dev.vars"]:
            p = root / candidate
            if p.is_file():
                names = [n for n in dev_var_names(p) if n not in var_names]
                if names:
                    warn.append(
                        f"{name}: secret names taken from {candidate} (names only; its "
                        "values are not read into the output)"
                    )
                break
    if names:
        secret = f"{name}-secrets"
        result.secrets[secret] = []
        for s in names:
            bname = _binding_name(s, f"{name}: secrets")
            if bname in var_names:
                continue
            result.secrets[secret].append(bname)
            out.append({"name": bname, "secretKeyRef": {"name": secret, "key": bname}})

    for kv in cfg.get("kv_namespaces") or []:
        bname = _binding_name(kv.get("binding"), f"{name}: kv_namespaces")
        ns = kv.get("id") or kv.get("preview_id")
        if not ns:
            raise WranglerImportError(f"{name}: kv_namespaces binding {bname} has no id")
        out.append({"name": bname, "kvNamespace": {"namespace": str(ns)}})

    do_cfg = cfg.get("durable_objects") or {}
    for do in do_cfg.get("bindings") or []:
        bname = _binding_name(do.get("name"), f"{name}: durable_objects.bindings")
        script = do.get("script_name")
        if script and script != name:
            result.unsupported.setdefault(name, []).append(
                f"durable_objects.bindings[{bname}].script_name={script}"
            )
            continue
        out.append({"name": bname, "durableObjectNamespace": {"className": do["class_name"]}})

    for svc in cfg.get("services") or []:
        bname = _binding_name(svc.get("binding"), f"{name}: services")
        target = str(svc.get("service", ""))
        if svc.get("environment"):
            target = f"{target}-{svc['environment']}"
        if svc.get("entrypoint"):
            result.unsupported.setdefault(name, []).append(
                f"services[{bname}].entrypoint={svc['entrypoint']}"
            )
            continue
        out.append({"name": bname, "service": {"worker": target}})
    return out


def _validate(model: type[Worker] | type[WorkerRoute], doc: dict[str, Any], name: str) -> None:
    try:
        model.model_validate(doc)
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in e.errors()
        )
        raise WranglerImportError(
            f"{name}: the {model.KIND} would be rejected: {problems}"
        ) from None


def convert(
    config_path: Path, envs: Iterable[str | None] = (None,), opts: Options = Options()
) -> Result:
    """Manifests for the given environments (None: the top level) of one wrangler project."""
    path = find_config(config_path)
    top = load_config(path)
    result = Result()
    defined = top.get("env") or {}
    for env in envs:
        if env is None:
            cfg = top
        elif env in defined:
            cfg = defined[env]
        else:
            raise WranglerImportError(
                f"environment {env!r} is not defined in {path.name} (defined: "
                f"{', '.join(sorted(defined)) or 'none'})"
            )
        convert_worker(cfg, top, env, path.parent, opts, result)
    # Two Workers claiming one pattern would both be refused (RouteConflict).
    seen: dict[str, str] = {}
    for d in result.docs:
        if d["kind"] == "WorkerRoute":
            p = d["spec"]["pattern"]
            if p in seen:
                result.warnings.append(
                    f"route {p!r} is claimed by both {seen[p]} and {d['spec']['worker']} "
                    "(environments inherit routes); edgeplane refuses both until one changes"
                )
            seen.setdefault(p, d["spec"]["worker"])
    return result


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (module sources) as literal blocks, so the YAML reads like code."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def render(result: Result, source: str) -> str:
    head = [f"# Generated by `edgeplane import` from {source}."]
    if result.secrets:
        head.append("# Secrets these Workers read (placeholders: create them before applying):")
        for secret, keys in result.secrets.items():
            literals = " ".join(f"--from-literal={k}=..." for k in keys)
            head.append(f"#   {secret}: {', '.join(keys)}")
            head.append(f"#     kubectl create secret generic {secret} {literals}")
    for worker, keys in result.unsupported.items():
        head.append(f"# NOT IMPORTED for {worker} (unsupported): {', '.join(keys)}")
    body = yaml.dump_all(result.docs, Dumper=_Dumper, sort_keys=False, width=100)
    return "\n".join(head) + "\n" + body


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="edgeplane import",
        description="Write Worker, WorkerRoute and ConfigMap manifests from a wrangler "
        "project (wrangler.toml, wrangler.jsonc or wrangler.json).",
    )
    parser.add_argument(
        "config", nargs="?", default=".",
        help="the wrangler config file, or a directory holding one (default: .)",
    )
    parser.add_argument(
        "-e", "--env", action="append", default=None,
        help="import this [env.NAME] instead of the top level (repeatable)",
    )
    parser.add_argument(
        "--all-envs", action="store_true",
        help="import the top level and every environment",
    )
    parser.add_argument("-n", "--namespace", help="set metadata.namespace on every object")
    parser.add_argument(
        "--main", type=Path,
        help="entry module to use instead of `main` (e.g. a bundler's JavaScript output)",
    )
    parser.add_argument(
        "--target", action="append", default=[], metavar="LABEL=VALUE",
        help="run only on EdgeTargets with this label (repeatable); default: every target",
    )
    parser.add_argument("-o", "--output", type=Path, help="write here instead of stdout")
    args = parser.parse_args(argv)
    labels = []
    for item in args.target:
        key, sep, value = item.partition("=")
        if not sep or not key:
            parser.error(f"--target {item!r}: expected LABEL=VALUE")
        if not re.fullmatch(LABEL_KEY_RE, key):
            parser.error(f"--target {item!r}: {key!r} is not a valid label key")
        labels.append((key, value))

    try:
        path = find_config(Path(args.config))
        envs: list[str | None]
        if args.all_envs:
            envs = [None, *sorted(load_config(path).get("env") or {})]
        else:
            envs = list(args.env) if args.env else [None]
        opts = Options(namespace=args.namespace, main=args.main, target_labels=tuple(labels))
        result = convert(path, envs, opts)
    except WranglerImportError as e:
        print(f"edgeplane import: error: {e}", file=sys.stderr)
        return 1
    text = render(result, path.name)
    if args.output:
        args.output.write_text(text)
    else:
        sys.stdout.write(text)
    for w in result.warnings:
        print(f"edgeplane import: warning: {w}", file=sys.stderr)
    for worker, keys in result.unsupported.items():
        print(
            f"edgeplane import: warning: {worker}: not imported, edgeplane does not support "
            f"these yet: {', '.join(keys)}",
            file=sys.stderr,
        )
    for worker, keys in result.ignored.items():
        print(
            f"edgeplane import: note: {worker}: ignored (wrangler tooling only, no effect on "
            f"the deployed Worker): {', '.join(keys)}",
            file=sys.stderr,
        )
    for secret, keys in result.secrets.items():
        print(
            f"edgeplane import: note: create Secret {secret} with keys {', '.join(keys)} "
            "before applying",
            file=sys.stderr,
        )
    return 0
