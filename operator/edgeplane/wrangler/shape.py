"""The types the keys this importer maps must have, checked before anything reads them, so
a wrong one is refused with its key (`durable_objects.bindings[0].class_name: required`)
rather than failing somewhere inside. Pure: a config dict in, an error or nothing out."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Mapping
from typing import Any

from edgeplane.wrangler.errors import WranglerImportError

Check = Callable[[Any, str], None]


def kind_of(value: Any) -> str:
    """What a config value is, in the words of a TOML or JSON user."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, dt.datetime):
        return "a TOML date-time"
    if isinstance(value, dt.date):
        return "a TOML date"
    if isinstance(value, dt.time):
        return "a TOML time"
    names = {int: "an integer", float: "a number", str: "a string", list: "an array",
             dict: "a table"}
    return names.get(type(value), type(value).__name__)


def _wrong(key: str, expected: str, value: Any, hint: str = "") -> WranglerImportError:
    fix = f"; {hint}" if hint else ""
    return WranglerImportError(f"{key}: expected {expected}, got {kind_of(value)}{fix}")


def string(value: Any, key: str) -> None:
    if isinstance(value, dt.date | dt.time):
        # The commonest slip: compatibility_date = 2024-09-23 is a TOML date, not a string.
        quoted = f'"{value.isoformat()}"'
        name = key.rsplit(".", 1)[-1]
        # An array item has no key of its own to write.
        fix = quoted if name.endswith("]") else f"{name} = {quoted}"
        raise _wrong(key, "a string", value, f"quote it: {fix}")
    if not isinstance(value, str):
        raise _wrong(key, "a string", value)


def boolean(value: Any, key: str) -> None:
    if not isinstance(value, bool):
        raise _wrong(key, "true or false", value)


def strings(value: Any, key: str) -> None:
    if not isinstance(value, list):
        raise _wrong(key, "an array of strings", value, f'e.g. {key.rsplit(".", 1)[-1]} = ["..."]')
    for i, item in enumerate(value):
        string(item, f"{key}[{i}]")


def no_dates(value: Any, key: str) -> None:
    """A var may be any JSON value; a TOML date or time is none (quote it), nor is TOML's
    nan or inf."""
    if isinstance(value, dt.date | dt.time):
        raise WranglerImportError(
            f"{key}: {kind_of(value)} is not a JSON value; quote it "
            f'("{value.isoformat()}") for a string'
        )
    if isinstance(value, float) and not math.isfinite(value):
        raise WranglerImportError(
            f'{key}: {value} is not a JSON value; quote it ("{value}") for a string'
        )
    if isinstance(value, list):
        for i, item in enumerate(value):
            no_dates(item, f"{key}[{i}]")
    elif isinstance(value, dict):
        for k, item in value.items():
            no_dates(item, f"{key}.{k}")


def table(
    fields: Mapping[str, Check], required: tuple[str, ...] = (), example: str = ""
) -> Check:
    """A table whose listed keys have their types; `required` keys must be there."""

    hint = f"; e.g. {example}" if example else ""

    def check(value: Any, key: str) -> None:
        if not isinstance(value, dict):
            raise _wrong(key, "a table", value, example and f"e.g. {example}")
        for name in required:
            if value.get(name) is None:
                raise WranglerImportError(f"{key}.{name}: required{hint}")
        for name, field_check in fields.items():
            if value.get(name) is not None:
                field_check(value[name], f"{key}.{name}")

    return check


def array(item: Check, example: str = "") -> Check:
    def check(value: Any, key: str) -> None:
        if not isinstance(value, list):
            name = key.rsplit(".", 1)[-1]
            raise _wrong(key, "an array", value, example or f"[[{name}]] tables in TOML")
        for i, v in enumerate(value):
            item(v, f"{key}[{i}]")

    return check


def tables_of(item: Check) -> Check:
    """A table of tables ([env.<name>]), each checked by `item`."""

    def check(value: Any, key: str) -> None:
        if not isinstance(value, dict):
            raise _wrong(key, "a table", value)
        for name, v in value.items():
            item(v, f"{key}.{name}")

    return check


def _vars(value: Any, key: str) -> None:
    if not isinstance(value, dict):
        raise _wrong(key, "a table", value, 'e.g. [vars] API_HOST = "example.com"')
    for name, v in value.items():
        no_dates(v, f"{key}.{name}")


def _secrets(value: Any, key: str) -> None:
    if isinstance(value, list):
        strings(value, key)
    else:
        table({"required": strings}, example='{required = ["API_KEY"]}')(value, key)


def _route(value: Any, key: str) -> None:
    """Strings or {pattern, ...}; routes.py says what is wrong with a pattern itself."""
    if isinstance(value, dict):
        table({"pattern": string, "zone_name": string, "zone_id": string,
               "custom_domain": boolean}, ("pattern",), '{pattern = "example.com/*"}')(value, key)
    else:
        string(value, key)


def _string_table(example: str) -> Check:
    """A table of strings (define's expressions, alias's module paths)."""

    def check(value: Any, key: str) -> None:
        if not isinstance(value, dict):
            raise _wrong(key, "a table", value, f"e.g. {example}")
        for name, v in value.items():
            string(v, f"{key}.{name}")

    return check


KV = table({"binding": string, "id": string, "preview_id": string}, ("binding",),
           '{binding = "KV", id = "..."}')
DURABLE_OBJECT = table(
    {"name": string, "class_name": string, "script_name": string, "environment": string},
    ("name", "class_name"),
    '{name = "COUNTER", class_name = "Counter"}',
)
SERVICE = table(
    {"binding": string, "service": string, "environment": string, "entrypoint": string},
    ("binding", "service"),
    '{binding = "AUTH", service = "auth-worker"}',
)
RULE = table({"type": string, "globs": strings, "fallthrough": boolean}, ("type", "globs"),
             '{type = "Text", globs = ["**/*.txt"]}')

# A Worker's table: the top level, or one [env.<name>].
WORKER_KEYS: dict[str, Check] = {
    "name": string,
    "main": string,
    "compatibility_date": string,
    "compatibility_flags": strings,
    "base_dir": string,
    "find_additional_modules": boolean,
    "no_bundle": boolean,
    "minify": boolean,
    "keep_names": boolean,
    "tsconfig": string,
    "jsx_factory": string,
    "jsx_fragment": string,
    "define": _string_table('define = { DEBUG = "false" }: values are JavaScript expressions'),
    "alias": _string_table('alias = { "node-fetch" = "./src/fetch-shim.js" }'),
    "vars": _vars,
    "secrets": _secrets,
    "kv_namespaces": array(KV),
    "durable_objects": table({"bindings": array(DURABLE_OBJECT)}),
    "services": array(SERVICE),
    "rules": array(RULE),
    "route": _route,
    "routes": array(_route, 'e.g. routes = ["example.com/*"]'),
    "assets": table(
        {"directory": string, "binding": string, "html_handling": string,
         "not_found_handling": string},
        (),
        '{directory = "./public", binding = "ASSETS"}',
    ),
}


def check_worker(cfg: Mapping[str, Any], where: str = "") -> None:
    """Refuse a mapped key of the wrong type in one Worker's table; `where` is its path
    (`env.staging.`), so the message names the key as written in the file."""
    for key, check in WORKER_KEYS.items():
        if cfg.get(key) is not None:
            check(cfg[key], f"{where}{key}")


def check_config(top: Mapping[str, Any]) -> None:
    """The top level and every [env.<name>] table."""
    check_worker(top)
    envs = top.get("env")
    if envs is None:
        return
    tables_of(table({}))(envs, "env")
    for name, cfg in envs.items():
        check_worker(cfg, f"env.{name}.")
