"""`edgeplane import` on bad projects: every one ends with one line naming the file or the
config key and the fix, exit 1 (or 0 and a warning where wrangler would accept the
project), and never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from edgeplane.wrangler import cli as import_cli
from edgeplane.wrangler import main

REPO = Path(__file__).resolve().parents[2]
JS = "export default { fetch() { return new Response('ok'); } };\n"
BASIC = 'name = "w"\nmain = "src/index.js"\ncompatibility_date = "2024-09-23"\n'
JSON_BASIC = '"name": "w", "main": "src/index.js", "compatibility_date": "2024-09-23"'
BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class Link:
    """A symbolic link to `target` (relative to the link's directory)."""

    target: str


Files = dict[str, str | bytes | Link]


@dataclass(frozen=True)
class Case:
    id: str
    files: Files  # the project; src/index.js is added unless given
    expected: str  # in the one error line (exit 1), or in the output or a warning (exit 0)
    code: int = 1
    args: tuple[str, ...] = ()  # "{p}": the project directory
    config: str = ""  # the config argument, relative to the project


def toml(extra: str, base: str = BASIC) -> Files:
    return {"wrangler.toml": base + extra}


def jsonc(body: str, name: str = "wrangler.jsonc") -> Files:
    return {name: "{" + body + "}"}


def _without(key: str) -> Files:
    return toml("", "".join(ln + "\n" for ln in BASIC.splitlines() if not ln.startswith(key)))


# The configuration files themselves.
FILES = [
    Case("no-config", {"README.md": "x"}, "no wrangler.json, wrangler.jsonc, wrangler.toml in"),
    Case("no-such-path", {}, "nope: no such file or directory", config="nope"),
    Case("toml-syntax", toml("vars = \n"), "wrangler.toml: Invalid value (at line 4"),
    Case("toml-unclosed-table", toml("[vars\n"), "wrangler.toml: Expected ']' at the end"),
    Case("toml-duplicate-key", toml('name = "x"\n'), "wrangler.toml: Cannot overwrite a value"),
    Case("toml-not-utf8", {"wrangler.toml": BASIC.encode() + b'[vars]\nA = "\xff"\n'},
         "wrangler.toml: not UTF-8 (byte 0xff at offset 79); save it as UTF-8"),
    Case("jsonc-syntax", jsonc('"name": "w" "main": "a.js"'),
         "wrangler.jsonc: Expecting ',' delimiter: line 1 column 14"),
    Case("jsonc-unterminated-comment", jsonc(JSON_BASIC + " /* to do"),
         "wrangler.jsonc: unterminated /* comment in the JSONC file"),
    Case("jsonc-line-after-block-comment", {"wrangler.jsonc": '{\n/* a\nb */\n"name": }'},
         "wrangler.jsonc: Expecting value: line 4 column 9"),
    Case("json-not-an-object", {"wrangler.json": "[1]"},
         "wrangler.json: the configuration must be a table/object"),
    Case("json-empty", {"wrangler.json": ""}, "wrangler.json: Expecting value: line 1 column 1"),
    Case("json-not-utf8", {"wrangler.json": '{"name": "caf\xe9"}'.encode("latin-1")},
         "wrangler.json: not UTF-8 (byte 0xe9"),
    Case("dev-vars-not-utf8", {**toml(""), ".dev.vars": b"API_KEY=\xff\xfe\n"},
         ".dev.vars: not UTF-8 (byte 0xff at offset 8); save it as UTF-8"),
    # Accepted as wrangler accepts them.
    Case("toml-bom", {"wrangler.toml": BOM + BASIC.encode()}, "kind: Worker", code=0),
    Case("json-bom", {"wrangler.json": BOM + ("{" + JSON_BASIC + "}").encode()},
         "kind: Worker", code=0),
    Case("jsonc-bom", {"wrangler.jsonc": BOM + ("{" + JSON_BASIC + "}").encode()},
         "kind: Worker", code=0),
    Case("dev-vars-bom", {**toml(""), ".dev.vars": BOM + b"API_KEY=x\n"},
         "key: API_KEY", code=0),
    Case("json-and-jsonc", {**jsonc(JSON_BASIC, "wrangler.json"), **jsonc("broken")},
         "wrangler.jsonc is ignored: wrangler.json is read instead, as wrangler does", code=0),
    Case("jsonc-and-toml", {**jsonc(JSON_BASIC), "wrangler.toml": "broken ="},
         "wrangler.toml is ignored: wrangler.jsonc is read instead", code=0),
]

# Keys that are missing, or name what is not there.
MISSING = [
    Case("no-name", _without("name"), "the wrangler config has no `name`; add one"),
    Case("no-main", _without("main"), "w: no `main`; edgeplane runs ES module Workers: set main"),
    Case("no-compatibility-date", _without("compatibility_date"),
         "w: no compatibility_date; add one (YYYY-MM-DD)"),
    Case("main-not-found", toml("", BASIC.replace("src/index.js", "src/nope.js")),
         "w: main src/nope.js not found"),
    # --main is read from the current directory (the test's), not the project's.
    Case("main-flag-not-found", toml(""), f"w: --main {Path.cwd() / 'dist/nope.js'} not found",
         args=("--main", "dist/nope.js")),
    Case("env-undefined", toml(""), "environment 'prod' is not defined in wrangler.toml",
         args=("-e", "prod")),
    Case("import-missing", {**toml(""), "src/index.js": 'import x from "./gone.js";'},
         'src/index.js:1: cannot import "./gone.js": no such file'),
    Case("import-missing-unbundled",
         {**toml("", "no_bundle = true\n" + BASIC), "src/index.js": 'import x from "./gone.js";'},
         "index.js imports './gone.js', but gone.js does not exist"),
    Case("symlink-out-of-base-dir",
         {**toml("", "no_bundle = true\n" + BASIC), "src/index.js": 'import x from "./lib.js";',
          "src/lib.js": Link("../../x")},
         "index.js imports './lib.js': lib.js is a link to"),
    Case("output-dir-missing", toml(""), "nodir/out.yaml: No such file or directory",
         args=("-o", "{p}/nodir/out.yaml")),
]

# Values of the wrong type or form, each named by its key.
WRONG = [
    Case("name-integer", toml("", 'name = 5\nmain = "src/index.js"\n'),
         "name: expected a string, got an integer"),
    Case("name-uppercase", toml("", BASIC.replace('"w"', '"Shop"')),
         "name 'Shop': a Worker name is at most 63 lowercase letters"),
    Case("main-integer", toml("", BASIC.replace('"src/index.js"', "1")),
         "main: expected a string, got an integer"),
    Case("main-array", jsonc(JSON_BASIC.replace('"src/index.js"', '["a.js"]')),
         "main: expected a string, got an array"),
    Case("main-typescript-unbundled",
         {**toml("", "no_bundle = true\n" + BASIC.replace(".js", ".ts")), "src/index.ts": JS},
         "index.ts is TypeScript/JSX, and no_bundle uploads it as it is"),
    Case("assets-directory-missing", toml('[assets]\ndirectory = "public"\n', BASIC.replace(
        'main = "src/index.js"\n', "")), "w: assets.directory public not found"),
    Case("pages-only", toml('pages_build_output_dir = "dist"\n', BASIC.replace(
        'main = "src/index.js"\n', "")), "w: no `main`: only static assets (assets / "
        "pages_build_output_dir), which edgeplane does not serve yet"),
    Case("main-outside-base-dir", toml('base_dir = "lib"\n'),
         "w: base_dir lib: main src/index.js is not inside it"),
    Case("tsconfig-missing", toml('tsconfig = "tsconfig.build.json"\n'),
         "bundling failed: tsconfig: Cannot find tsconfig file"),
    Case("main-python", {**toml('[[rules]]\ntype = "PythonModule"\nglobs = ["**/*.py"]\n',
                                BASIC.replace("index.js", "entry.py")),
                           "src/entry.py": "from js import Response\n"},
         "w: main src/entry.py: a Python Worker (main is a .py file); edgeplane does not run "
         "Python Workers yet"),
    Case("python-workers-flag", toml('compatibility_flags = ["python_workers"]\n'),
         "w: main src/index.js: a Python Worker (compatibility_flags has python_workers)"),
    Case("main-not-utf8", {**toml(""), "src/index.js": b"\xff"},
         "w: bundling failed: src/index.js: not UTF-8; save it as UTF-8"),
    Case("main-not-utf8-unbundled",
         {**toml("", "no_bundle = true\n" + BASIC), "src/index.js": b"\xff"},
         "index.js: JavaScript must be UTF-8"),
    Case("date-unquoted", toml("", BASIC.replace('"2024-09-23"', "2024-09-23")),
         'compatibility_date: expected a string, got a TOML date; quote it: '
         'compatibility_date = "2024-09-23"'),
    Case("date-integer", jsonc(JSON_BASIC.replace('"2024-09-23"', "20240923")),
         "compatibility_date: expected a string, got an integer"),
    Case("date-bad-month", toml("", BASIC.replace("09-23", "13-01")),
         "w: compatibility_date '2024-13-01' is not a date; write YYYY-MM-DD"),
    Case("flags-string", toml('compatibility_flags = "nodejs_compat"\n'),
         "compatibility_flags: expected an array of strings, got a string"),
    Case("flags-integer-item", toml("compatibility_flags = [1]\n"),
         "compatibility_flags[0]: expected a string, got an integer"),
    Case("flag-uppercase", toml('compatibility_flags = ["Node"]\n'),
         "spec.compatibilityFlags[0]: String should match"),
    Case("base-dir-integer", toml("base_dir = 1\n"), "base_dir: expected a string, got an integer"),
    Case("vars-array", jsonc(JSON_BASIC + ', "vars": ["A"]'),
         "vars: expected a table, got an array"),
    Case("vars-date", toml("[vars]\nWHEN = 2024-01-01\n"),
         'vars.WHEN: a TOML date is not a JSON value; quote it ("2024-01-01")'),
    Case("vars-nested-datetime", toml("[vars.CFG]\nat = 2024-01-01T10:00:00Z\n"),
         "vars.CFG.at: a TOML date-time is not a JSON value; quote it "
         '("2024-01-01T10:00:00+00:00")'),
    Case("vars-time-in-array", toml("[vars]\nT = [07:30:00]\n"),
         "vars.T[0]: a TOML time is not a JSON value"),
    Case("vars-local-datetime", toml("[vars]\nAT = 2024-01-01T10:00:00\n"),
         'vars.AT: a TOML date-time is not a JSON value; quote it ("2024-01-01T10:00:00")'),
    Case("env-vars-date", toml("[env.prod.vars]\nWHEN = 2024-01-01\n"),
         'env.prod.vars.WHEN: a TOML date is not a JSON value; quote it ("2024-01-01")'),
    Case("env-vars-nested-time", toml("[env.prod.vars.CFG]\nopen = [{at = 08:00:00}]\n"),
         "env.prod.vars.CFG.open[0].at: a TOML time is not a JSON value"),
    Case("vars-nan", toml("[vars]\nN = nan\n"), 'vars.N: nan is not a JSON value; quote it'),
    Case("env-null", jsonc(JSON_BASIC + ', "env": {"prod": null}'),
         "env.prod: expected a table, got null"),
    Case("vars-bad-name", toml('[vars]\n"my-var" = "x"\n'),
         "w: vars: binding name 'my-var' is not a JavaScript identifier"),
    Case("vars-too-long", toml(f'[vars]\nBIG = "{"x" * 6000}"\n'),
         "w: vars.BIG is longer than 5 KiB"),
    Case("secrets-required-string", toml('[secrets]\nrequired = "API_KEY"\n'),
         "secrets.required: expected an array of strings, got a string"),
    Case("secrets-integer", toml("secrets = 1\n"), "secrets: expected a table, got an integer"),
    Case("secret-bad-name", toml('[secrets]\nrequired = ["api-key"]\n'),
         "w: secrets.required: binding name 'api-key' is not a JavaScript identifier"),
    Case("dev-vars-name-is-kv", {**toml('[[kv_namespaces]]\nbinding = "KV"\nid = "k"\n'),
                                  ".dev.vars": "KV=x\n"},
         "w: kv_namespaces: KV is also bound by .dev.vars; a name binds once: rename one"),
    Case("dev-vars-env-name-is-service",
         {**toml('[[env.prod.services]]\nbinding = "AUTH"\nservice = "auth"\n'),
          ".dev.vars.prod": "AUTH=x\n"},
         "w-prod: services: AUTH is also bound by .dev.vars.prod; a name binds once",
         args=("-e", "prod")),
    Case("secret-name-is-do",
         toml('[secrets]\nrequired = ["C"]\n[[durable_objects.bindings]]\nname = "C"\n'
              'class_name = "C"\n'),
         "w: durable_objects.bindings: C is also bound by secrets.required"),
    Case("kv-bound-twice",
         toml('[[kv_namespaces]]\nbinding = "K"\nid = "a"\n[[kv_namespaces]]\n'
              'binding = "K"\nid = "b"\n'),
         "w: kv_namespaces: K is bound twice; a name binds once"),
    Case("kv-not-array", toml('[kv_namespaces]\nbinding = "KV"\n'),
         "kv_namespaces: expected an array, got a table; [[kv_namespaces]] tables in TOML"),
    Case("kv-entry-string", toml('kv_namespaces = ["KV"]\n'),
         "kv_namespaces[0]: expected a table, got a string"),
    Case("kv-no-binding", toml('[[kv_namespaces]]\nid = "abc"\n'),
         "kv_namespaces[0].binding: required"),
    Case("kv-id-integer", toml('[[kv_namespaces]]\nbinding = "KV"\nid = 5\n'),
         "kv_namespaces[0].id: expected a string, got an integer"),
    Case("do-array", toml('durable_objects = ["Counter"]\n'),
         "durable_objects: expected a table, got an array"),
    Case("do-binding-string", toml('[durable_objects]\nbindings = ["Counter"]\n'),
         "durable_objects.bindings[0]: expected a table, got a string"),
    Case("do-no-class-name", toml('[[durable_objects.bindings]]\nname = "COUNTER"\n'),
         "durable_objects.bindings[0].class_name: required"),
    Case("do-class-name-integer",
         toml('[[durable_objects.bindings]]\nname = "C"\nclass_name = 1\n'),
         "durable_objects.bindings[0].class_name: expected a string, got an integer"),
    Case("services-table", toml('[services]\nbinding = "AUTH"\n'),
         "services: expected an array, got a table"),
    Case("service-entry-string", toml('services = ["auth"]\n'),
         "services[0]: expected a table, got a string"),
    Case("service-no-service", toml('[[services]]\nbinding = "AUTH"\n'),
         "services[0].service: required"),
    Case("service-name-not-a-worker-name",
         toml('[[services]]\nbinding = "AUTH"\nservice = "Auth_Service"\n'),
         "w: services[0].service: 'Auth_Service' cannot be the name of a Worker here"),
    Case("rules-entry-string", toml('rules = ["Text"]\n'),
         "rules[0]: expected a table, got a string"),
    Case("rule-no-globs", toml('[[rules]]\ntype = "Text"\n'), "rules[0].globs: required"),
    Case("rule-globs-string", toml('[[rules]]\ntype = "Text"\nglobs = "**/*.txt"\n'),
         "rules[0].globs: expected an array of strings, got a string"),
    Case("env-string", toml('env = "prod"\n'), "env: expected a table, got a string"),
    Case("env-entry-integer", toml("[env]\nprod = 1\n"),
         "env.prod: expected a table, got an integer"),
    Case("env-kv-string", toml('[env.prod]\nkv_namespaces = "KV"\n'),
         "env.prod.kv_namespaces: expected an array, got a string"),
    Case("env-do-no-class-name",
         toml('[[env.prod.durable_objects.bindings]]\nname = "C"\n'),
         "env.prod.durable_objects.bindings[0].class_name: required"),
    Case("routes-string", toml('routes = "example.com/*"\n'),
         'routes: expected an array, got a string; e.g. routes = ["example.com/*"]'),
    Case("route-integer", toml("route = 5\n"), "route: expected a string, got an integer"),
    Case("route-no-pattern", toml('routes = [{zone_name = "example.com"}]\n'),
         "routes[0].pattern: required"),
    Case("route-query", toml('routes = ["example.com/a?b=1"]\n'),
         "w: route 'example.com/a?b=1': pattern: a route pattern cannot contain a query string"),
    Case("custom-domain-with-path",
         toml('routes = [{pattern = "a.com/x", custom_domain = true}]\n'),
         "w: custom domain 'a.com/x' must be a plain hostname"),
    Case("custom-domain-string", toml('routes = [{pattern = "a.com", custom_domain = "yes"}]\n'),
         "routes[0].custom_domain: expected true or false, got a string"),
    Case("target-bad-value", toml(""), "w: the Worker would be rejected: spec.targets.matchLabels",
         args=("--target", "region=not a value")),
]

# Shapes edgeplane does not map: imported without them, each named in a warning.
UNSUPPORTED = [
    Case("r2-bucket", toml('[[r2_buckets]]\nbinding = "B"\nbucket_name = "b"\n'),
         "w: not imported, edgeplane does not support these yet: r2_buckets", code=0),
    Case("do-of-another-script",
         toml('[[durable_objects.bindings]]\nname = "C"\nclass_name = "C"\nscript_name = "o"\n'),
         "durable_objects.bindings[C].script_name=o", code=0),
    Case("service-entrypoint",
         toml('[[services]]\nbinding = "A"\nservice = "auth"\nentrypoint = "Admin"\n'),
         "services[A].entrypoint=Admin", code=0),
    Case("dev-vars-name-is-var", {**toml('[vars]\nAPI_HOST = "example.com"\n'),
                                   ".dev.vars": "API_HOST=localhost\n"},
         "w: .dev.vars: API_HOST is also in vars; imported as the var, not as a secret "
         "(in wrangler dev, .dev.vars only overrides it locally)", code=0),
    Case("kv-no-id", toml('[[kv_namespaces]]\nbinding = "KV"\n'),
         "w: kv_namespaces binding KV has no id (wrangler would provision one); imported as "
         "KV namespace 'w-kv'", code=0),
    Case("var-number", toml("[vars]\nN = 5\n"),
         "w: vars.N is a JSON int; edgeplane's json binding takes objects", code=0),
    Case("rule-unknown-type", toml('[[rules]]\ntype = "PythonModule"\nglobs = ["**/*.py"]\n'),
         "rules: module type 'PythonModule' is not supported; ignored", code=0),
    Case("bare-import", {**toml(""), "src/index.js": 'import { Hono } from "hono";\n' + JS},
         'cannot import "hono": package hono is not installed'),
    Case("bare-import-allowed",
         {**toml(""), "src/index.js": 'import { Hono } from "hono";\n' + JS},
         '# INCOMPLETE w: these imports will not load: "hono"', code=0,
         args=("--allow-incomplete",)),
    Case("main-typescript", {**toml("", BASIC.replace(".js", ".ts")), "src/index.ts": JS},
         "mainModule: index.js", code=0),
]

CASES: list[Case] = [*FILES, *MISSING, *WRONG, *UNSUPPORTED]


def write_project(root: Path, files: Files) -> None:
    for name, content in files.items():
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, Link):
            p.symlink_to(content.target)
        elif isinstance(content, bytes):
            p.write_bytes(content)
        else:
            p.write_text(content, encoding="utf-8")


def run_import(
    tmp_path: Path, case: Case, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str, str]:
    project = tmp_path / "project"
    project.mkdir()
    (tmp_path / "x").write_text(JS)  # what a link out of the project points at
    files = dict(case.files)
    if any(n.startswith("wrangler.") for n in files):
        files.setdefault("src/index.js", JS)
    write_project(project, files)
    args = [str(project / case.config), *(a.replace("{p}", str(project)) for a in case.args)]
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_bad_project_is_answered_in_one_line_naming_the_key(
    tmp_path: Path, case: Case, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_import(tmp_path, case, capsys)
    assert "Traceback" not in err
    assert code == case.code, err
    if code:
        assert out == ""
        # One line says what stops the import, last; any others are the warnings found
        # before it.
        *warnings, error = err.splitlines()
        assert error.startswith("edgeplane import: error: ") and err.endswith("\n"), err
        assert all(w.startswith("edgeplane import: warning: ") for w in warnings), err
        assert case.expected in error, err
    else:
        assert case.expected in out + err, err
        assert [d["kind"] for d in yaml.safe_load_all(out) if d].count("Worker") == 1


def test_the_table_is_large_and_its_ids_distinct() -> None:
    assert len(CASES) >= 60
    assert len({c.id for c in CASES}) == len(CASES)


def test_wrangler_json_is_read_before_wrangler_jsonc(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = {**jsonc(JSON_BASIC, "wrangler.json"),
             **jsonc(JSON_BASIC.replace('"w"', '"other"'))}
    code, out, _ = run_import(tmp_path, Case("x", files, "", code=0), capsys)
    assert code == 0
    names = {d["metadata"]["name"] for d in yaml.safe_load_all(out) if d["kind"] == "Worker"}
    assert names == {"w"}


def test_an_internal_error_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_: object, **__: object) -> None:
        raise KeyError("s3cr3t-value")

    monkeypatch.setattr(import_cli, "convert", broken)
    code, out, err = run_import(tmp_path, Case("x", toml(""), "", code=2), capsys)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("edgeplane import: internal error: KeyError at ")
    assert "s3cr3t-value" not in err  # an exception's text may hold config values


def test_output_is_utf8_whatever_the_locale(tmp_path: Path) -> None:
    """In a process with an ASCII locale: -o and stdout both get UTF-8, and an error
    still ends in one line."""
    project = tmp_path / "p"
    write_project(project, {**toml('[vars]\nGREETING = "grüß dich ✓"\n'), "src/index.js": JS})
    env = {**os.environ, "LC_ALL": "C", "LANG": "C", "PYTHONIOENCODING": "ascii",
           "PYTHONUTF8": "0", "PYTHONPATH": str(REPO / "operator")}
    cmd = [sys.executable, "-m", "edgeplane.cli", "import", str(project)]
    out = subprocess.run([*cmd, "-o", str(tmp_path / "o.yaml")], env=env, capture_output=True)
    assert out.returncode == 0, out.stderr
    assert "grüß dich ✓" in (tmp_path / "o.yaml").read_bytes().decode("utf-8")
    res = subprocess.run(cmd, env=env, capture_output=True)
    assert res.returncode == 0 and "grüß dich ✓" in res.stdout.decode("utf-8")
    (project / "wrangler.toml").write_bytes(b"name = \xff")
    res = subprocess.run(cmd, env=env, capture_output=True)
    assert res.returncode == 1 and b"Traceback" not in res.stderr
    assert res.stderr.decode().splitlines() == [
        "edgeplane import: error: wrangler.toml: not UTF-8 (byte 0xff at offset 7); save it "
        "as UTF-8"
    ]
