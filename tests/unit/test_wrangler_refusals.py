"""Every refusal of `edgeplane import` is one line naming the config key: a table of bad
configurations, generated over every mapped key (a value of each wrong kind, TOML dates and
times included, at the top level and in an environment) and written out for what the
generator cannot say (tables that are not tables, values deep inside), each run through the
command in-process."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from edgeplane.wrangler import main
from edgeplane.wrangler.shape import WORKER_KEYS

JS = "export default { fetch() { return new Response('ok'); } };\n"
BASE = {"name": '"w"', "main": '"src/index.js"', "compatibility_date": '"2024-09-23"'}

# TOML values of every kind, dates and times first.
TOML_VALUES = {
    "date": "2024-09-23",
    "offset-date-time": "1979-05-27T07:32:00Z",
    "local-date-time": "1979-05-27T07:32:00",
    "local-time": "07:30:00",
    "integer": "5",
    "float": "1.5",
    "boolean": "true",
    "string": '"s"',
    "array": "[1]",
    "table": "{ x = 1 }",
}
JSON_VALUES = {"integer": 5, "boolean": True, "string": "s", "array": [1], "table": {"x": 1}}
# The kinds each key takes (a string `main` names a file, and so on: a string there is
# still refused, but for what it names, so it is kept).
ACCEPTED = {
    "name": {"string"},
    "find_additional_modules": {"boolean"},
    "vars": {"table"},
    "secrets": {"table"},
    "durable_objects": {"table"},
    "route": {"string"},
    "no_bundle": {"boolean"},
    "minify": {"boolean"},
    "keep_names": {"boolean"},
    "jsx_factory": {"string"},
    "jsx_fragment": {"string"},
    "assets": {"table"},  # without `directory`, listed as not imported
}


@dataclass(frozen=True)
class Bad:
    id: str
    file: str  # wrangler.toml or wrangler.jsonc
    text: str
    key: str  # what the one error line must name
    args: tuple[str, ...] = ()


def toml_config(top: dict[str, str], tail: str = "") -> str:
    """BASE with `top`'s keys set to TOML literals, then `tail` (tables)."""
    lines = [f"{k} = {v}" for k, v in {**BASE, **top}.items()]
    return "\n".join(lines) + "\n" + tail


def _generated() -> list[Bad]:
    cases: list[Bad] = []
    for key in WORKER_KEYS:
        for kind, literal in TOML_VALUES.items():
            if kind in ACCEPTED.get(key, set()):
                continue
            cases.append(Bad(f"{key}={kind}", "wrangler.toml", toml_config({key: literal}), key))
            if key != "name":  # an environment's name of its own: see below
                # A string of the wrong form is refused once read, by its key (`main`),
                # with the environment's Worker (w-staging) or the path it names.
                read = kind == "string" and key in ("main", "compatibility_date", "base_dir",
                                                     "tsconfig")
                named = key if read else f"env.staging.{key}"
                cases.append(Bad(
                    f"env.{key}={kind}", "wrangler.toml",
                    toml_config({}, f"[env.staging]\n{key} = {literal}\n"),
                    named, ("-e", "staging"),
                ))
        for kind, value in JSON_VALUES.items():
            if kind in ACCEPTED.get(key, set()):
                continue
            cfg = {**{k: json.loads(v) for k, v in BASE.items()}, key: value}
            cases.append(Bad(f"json:{key}={kind}", "wrangler.jsonc", json.dumps(cfg), key))
    return cases


def _env(table: str) -> str:
    return toml_config({}, table)


WRITTEN = [
    # Environments that are not tables.
    *(Bad(f"env={kind}", "wrangler.toml", toml_config({"env": v}), "env")
      for kind, v in TOML_VALUES.items() if kind != "table"),
    *(Bad(f"env.staging={kind}", "wrangler.toml", _env(f"[env]\nstaging = {v}\n"),
          "env.staging") for kind, v in TOML_VALUES.items() if kind != "table"),
    Bad("json:env-null-entry", "wrangler.jsonc",
        '{"name": "w", "main": "src/index.js", "env": {"staging": null}}', "env.staging"),
    Bad("json:env-string", "wrangler.jsonc", '{"name": "w", "env": "staging"}', "env"),
    Bad("env-name-integer", "wrangler.toml", _env("[env.staging]\nname = 5\n"),
        "env.staging.name", ("-e", "staging")),
    Bad("env-name-date", "wrangler.toml", _env("[env.staging]\nname = 2024-09-23\n"),
        "env.staging.name", ("-e", "staging")),
    # Dates deep inside mapped keys.
    Bad("vars-nested-date", "wrangler.toml", _env("[vars.CFG]\nat = [{ d = 2024-09-23 }]\n"),
        "vars.CFG.at[0].d"),
    Bad("env-vars-time", "wrangler.toml", _env("[env.staging.vars]\nT = 07:30:00\n"),
        "env.staging.vars.T", ("-e", "staging")),
    Bad("kv-id-date", "wrangler.toml",
        _env('[[kv_namespaces]]\nbinding = "K"\nid = 2024-09-23\n'), "kv_namespaces[0].id"),
    Bad("env-service-time", "wrangler.toml",
        _env('[[env.staging.services]]\nbinding = "A"\nservice = 07:30:00\n'),
        "env.staging.services[0].service", ("-e", "staging")),
    Bad("rules-glob-date", "wrangler.toml",
        _env('[[rules]]\ntype = "Text"\nglobs = [2024-09-23]\n'), "rules[0].globs[0]"),
    Bad("env-route-pattern-date", "wrangler.toml",
        _env("[env.staging.route]\npattern = 2024-09-23\n"), "env.staging.route.pattern"),
    Bad("do-bindings-date", "wrangler.toml", _env("[durable_objects]\nbindings = 2024-09-23\n"),
        "durable_objects.bindings"),
    Bad("do-class-name-datetime", "wrangler.toml",
        _env('[[durable_objects.bindings]]\nname = "C"\nclass_name = 1979-05-27T07:32:00Z\n'),
        "durable_objects.bindings[0].class_name"),
    Bad("secrets-required-datetime", "wrangler.toml",
        _env("[secrets]\nrequired = [1979-05-27T07:32:00]\n"), "secrets.required[0]"),
    Bad("routes-custom-domain-date", "wrangler.toml",
        _env('routes = [{ pattern = "a.com", custom_domain = 2024-09-23 }]\n'),
        "routes[0].custom_domain"),
    Bad("vars-nan", "wrangler.toml", _env("[vars]\nN = nan\n"), "vars.N"),
    # Values of the right type that still cannot be: named by their key too.
    Bad("kv-binding-not-identifier", "wrangler.toml",
        _env('[[kv_namespaces]]\nbinding = "my-kv"\nid = "k"\n'), "kv_namespaces"),
    Bad("route-query", "wrangler.toml", _env('route = "a.com/x?y"\n'), "route"),
    Bad("compatibility-date-not-a-date", "wrangler.toml",
        toml_config({"compatibility_date": '"soon"'}), "compatibility_date"),
]

CASES = [*_generated(), *WRITTEN]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_every_refusal_is_one_line_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: Bad
) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "index.js").write_text(JS)
    (tmp_path / case.file).write_text(case.text)
    code = main([str(tmp_path), *case.args])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    assert code == 1, err
    assert out == ""
    assert err.endswith("\n") and err.count("\n") == 1, err
    assert err.startswith("edgeplane import: error: "), err
    assert case.key in err, err


def test_the_table_covers_every_mapped_key_at_both_levels() -> None:
    keys = {c.key for c in CASES}
    assert set(WORKER_KEYS) <= keys
    assert {f"env.staging.{k}" for k in WORKER_KEYS if k != "name"} <= keys
    assert "env.staging.name" in keys
    assert len({c.id for c in CASES}) == len(CASES)
