"""Reading the wrangler configuration: finding and parsing it, and .dev.vars."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

from edgeplane.wrangler.comments import string_end, strip_comments
from edgeplane.wrangler.errors import WranglerImportError

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

