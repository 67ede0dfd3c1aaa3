"""The wrangler configuration as text and as a dict: JSONC/TOML parsing, the table an
environment reads, the Worker's name, which keys map, and the names in .dev.vars. Pure: the
files are read in project.py."""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

from edgeplane.api.common import DNS_LABEL_RE
from edgeplane.wrangler.comments import string_end, strip_comments
from edgeplane.wrangler.errors import WranglerImportError

# In the order wrangler looks for them: the first one present is the configuration.
CONFIG_NAMES = ("wrangler.json", "wrangler.jsonc", "wrangler.toml")

# Keys this importer maps (top level or inside [env.x]).
MAPPED_KEYS = frozenset({
    "name", "main", "compatibility_date", "compatibility_flags", "vars", "secrets",
    "kv_namespaces", "durable_objects", "services", "route", "routes", "env", "rules",
    "base_dir", "find_additional_modules", "triggers", "assets",
    # The build: bundle.py gives these to esbuild as wrangler does.
    "no_bundle", "minify", "keep_names", "tsconfig", "jsx_factory", "jsx_fragment", "define",
    "alias",
})
# Keys that only steer wrangler itself (building, uploading, local dev, the account) and
# change nothing about what the Worker does once deployed.
TOOLING_KEYS = frozenset({
    "$schema", "account_id", "build", "dev", "send_metrics", "upload_source_maps", "zone_id",
    "legacy_env", "keep_vars", "preserve_file_names", "site_bucket", "ignored_warnings",
})

# How a key at the top level reaches an [env.<name>] Worker, as wrangler reads its
# configuration: the one home of these facts. An environment takes an inheritable key from
# the top level unless it sets its own; it never takes a non-inheritable one (bindings,
# vars, define); a top-level-only key applies to every environment.
INHERITABLE_KEYS = frozenset({
    "name", "account_id", "main", "compatibility_date", "compatibility_flags",
    "find_additional_modules", "preserve_file_names", "base_dir", "workers_dev",
    "preview_urls", "route", "routes", "tsconfig", "jsx_factory", "jsx_fragment",
    "migrations", "exports", "triggers", "limits", "rules", "build", "no_bundle", "minify",
    "keep_names", "first_party_worker", "logfwdr", "logpush", "upload_source_maps",
    "placement", "assets", "observability", "access", "cache", "compliance_region",
    "python_modules", "previews", "usage_model", "node_compat", "zone_id",
})
NON_INHERITABLE_KEYS = frozenset({
    "define", "vars", "secrets", "durable_objects", "workflows", "cloudchamber",
    "containers", "kv_namespaces", "send_email", "queues", "connect", "r2_buckets",
    "d1_databases", "vectorize", "ai_search_namespaces", "ai_search", "agent_memory",
    "websearch", "hyperdrive", "services", "analytics_engine_datasets",
    "dispatch_namespaces", "mtls_certificates", "tail_consumers",
    "streaming_tail_consumers", "unsafe", "browser", "ai", "images", "stream", "media",
    "pipelines", "secrets_store_secrets", "artifacts", "unsafe_hello_world", "flagship",
    "worker_loaders", "ratelimits", "vpc_services", "vpc_networks", "version_metadata",
    "constellation",
})
TOP_LEVEL_ONLY_KEYS = frozenset({
    "keep_vars", "send_metrics", "site", "alias", "dev", "wasm_modules",
    "text_blobs", "data_blobs", "legacy_env", "pages_build_output_dir", "addresses",
    "dependencies_instrumentation",
})
INHERITED = "(inherited from the top level)"


def strip_jsonc(text: str) -> str:
    """JSON with comments and trailing commas -> JSON. Strings are copied untouched, so a
    `//` or `,]` inside a string (a URL, say) stays as it is."""
    code, unclosed = strip_comments(text, quotes='"', multiline='"')
    if unclosed:
        raise WranglerImportError("unterminated /* comment in the JSONC file")
    return _drop_trailing_commas(code)


def _drop_trailing_commas(code: str) -> str:
    """Commas with only whitespace before the closing bracket go (JSON allows none). Run on
    code without comments, so a comment between comma and bracket counts as whitespace."""
    out: list[str] = []
    i, n = 0, len(code)
    while i < n:
        if code[i] == '"':
            j = string_end(code, i, multiline=True)
            out.append(code[i:j])
            i = j
            continue
        if code[i] == ",":
            j = i + 1
            while j < n and code[j].isspace():
                j += 1
            if j < n and code[j] in "]}":
                i += 1
                continue
        out.append(code[i])
        i += 1
    return "".join(out)


def decode_text(content: bytes, file: str) -> str:
    """A config or .dev.vars file as text: UTF-8, a byte order mark allowed (wrangler
    accepts one; editors on Windows write it)."""
    try:
        return content.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise WranglerImportError(
            f"{file}: not UTF-8 (byte {content[e.start]:#04x} at offset {e.start}); save it "
            "as UTF-8"
        ) from None


def parse_config(text: str, path: PurePath) -> dict[str, Any]:
    """The configuration in `text`, read as TOML or JSONC by the name of the file it is from."""
    text = text.removeprefix("\ufeff")  # a byte order mark, as wrangler allows
    try:
        if path.suffix == ".toml":
            data: Any = tomllib.loads(text)
        else:
            data = json.loads(strip_jsonc(text))
    except (tomllib.TOMLDecodeError, ValueError, WranglerImportError) as e:
        # The parsers' messages give the line and column; the file name is added.
        raise WranglerImportError(f"{path.name}: {e}") from None
    if not isinstance(data, dict):
        raise WranglerImportError(f"{path.name}: the configuration must be a table/object")
    return data


def environment(top: Mapping[str, Any], env: str | None, config_name: str) -> Mapping[str, Any]:
    """The table a Worker is read from: the top level (env None) or [env.<env>]."""
    if env is None:
        return top
    defined = top.get("env") or {}
    if env not in defined:
        raise WranglerImportError(
            f"environment {env!r} is not defined in {config_name} (defined: "
            f"{', '.join(sorted(defined)) or 'none'})"
        )
    return defined[env]


def all_environments(top: Mapping[str, Any]) -> list[str | None]:
    """The top level, then every environment by name."""
    return [None, *sorted(top.get("env") or {})]


def inherited(cfg: Mapping[str, Any], top: Mapping[str, Any], key: str) -> Any:
    """An environment's own value for key, else the top level's. Only for the keys wrangler
    inherits (main, compatibility date and flags, routes, rules, base_dir, ...): vars,
    secrets and bindings are read from cfg alone."""
    return cfg[key] if key in cfg else top.get(key)


def python_worker(cfg: Mapping[str, Any], top: Mapping[str, Any], main: Any) -> str | None:
    """What makes this Worker a Python Worker (main a .py file, `python_modules`, or the
    python_workers flag), or None for a JavaScript one."""
    if PurePath(str(main)).suffix == ".py":
        return "main is a .py file"
    if inherited(cfg, top, "python_modules"):
        return "python_modules is set"
    flags = inherited(cfg, top, "compatibility_flags")
    if isinstance(flags, list) and "python_workers" in flags:
        return "compatibility_flags has python_workers"
    return None


def refuse_python_worker(
    cfg: Mapping[str, Any], top: Mapping[str, Any], name: str, main: Any
) -> None:
    """Refuse a Python Worker in one line naming main, before anything looks for module
    rules that cannot help it."""
    why = python_worker(cfg, top, main)
    if why is not None:
        raise WranglerImportError(
            f"{name}: main {main}: a Python Worker ({why}); edgeplane does not run Python "
            "Workers yet, only JavaScript and WebAssembly modules"
        )


def worker_name(cfg: Mapping[str, Any], top: Mapping[str, Any], env: str | None) -> str:
    """The environment's own name, else `<top name>-<env>`."""
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
    return name


@dataclass(frozen=True)
class KeyReport:
    """What one Worker's table holds that this importer does not map."""

    unsupported: list[str]  # keys that change what the Worker does
    ignored: list[str]  # keys that only steer wrangler's tooling
    # Non-inheritable keys set at the top level only: wrangler gives the environment none.
    not_inherited: list[str]


def _configures(value: Any) -> bool:
    """Null, false, an empty list, and a table of those configure nothing: an environment
    turns off the crons it inherits with `triggers = { crons = [] }`."""
    if isinstance(value, dict):
        return any(_configures(v) for v in value.values())
    return not (value is None or value is False or value == [])


def _mapped(key: str, value: Any) -> bool:
    """[assets] maps with its `directory`; without one (a framework's build plugin fills
    it in), it is listed as not imported."""
    if key == "assets":
        return isinstance(value, dict) and bool(value.get("directory"))
    return key in MAPPED_KEYS


def taken_from_top(cfg: Mapping[str, Any], top: Mapping[str, Any]) -> list[str]:
    """The keys an environment takes from the top level without setting them: inheritable
    and top-level-only keys (`name` aside: worker_name derives it). Nothing for the top
    level itself, whose keys are all its own."""
    return [
        k for k in top
        if k not in cfg and k != "name" and (k in INHERITABLE_KEYS or k in TOP_LEVEL_ONLY_KEYS)
    ]


def key_report(cfg: Mapping[str, Any], top: Mapping[str, Any] | None = None) -> KeyReport:
    """The keys of a Worker's effective table (its own, and for an [env.x] table those it
    inherits, marked so) this importer does not map, and the top-level bindings an
    environment does not inherit. Mapped keys it inherits are read where they are used."""
    top = cfg if top is None else top
    own = [(k, k) for k in cfg]
    inherited_keys = [(k, f"{k} {INHERITED}") for k in taken_from_top(cfg, top)]
    values = {**top, **cfg}
    unsupported: list[str] = []
    ignored: list[str] = []
    for key, label in own + inherited_keys:
        if key in TOOLING_KEYS:
            ignored.append(label)
        elif not _mapped(key, values[key]) and _configures(values[key]):
            unsupported.append(label)
    not_inherited = [
        k for k in top
        if k in NON_INHERITABLE_KEYS and k not in cfg and _configures(top[k])
    ]
    return KeyReport(sorted(unsupported), sorted(ignored), sorted(not_inherited))


@dataclass(frozen=True)
class DevVars:
    """A .dev.vars file as read: its name in the project, and its bytes."""

    file: str
    content: bytes


def dev_vars_files(env: str | None) -> list[str]:
    """The .dev.vars files that may hold an environment's secret names, first found wins."""
    return ([f".dev.vars.{env}"] if env else []) + [".dev.vars"]


def dev_var_names(content: bytes, file: str = ".dev.vars") -> list[str]:
    """The names in a .dev.vars file. Only names: the values are never kept."""
    names: list[str] = []
    for line in decode_text(content, file).splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").strip()
        key, sep, _ = line.partition("=")
        key = key.strip()
        if sep and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key) and key not in names:
            names.append(key)
    return names
