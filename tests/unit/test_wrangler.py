"""`edgeplane import` on realistic wrangler projects (tests/data/wrangler/): what maps, what
is reported, and what is refused."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from edgeplane.api import Worker, WorkerRoute
from edgeplane.wrangler import Options, Result, WranglerImportError, convert, main, render
from edgeplane.wrangler.config import CONFIG_NAMES, strip_jsonc
from edgeplane.wrangler.manifests import CONFIG_MAP_BUDGET, cron_triggers
from edgeplane.wrangler.modules import specifiers
from edgeplane.wrangler.project import find_config, shadowed_configs

DATA = Path(__file__).resolve().parents[1] / "data" / "wrangler"


def docs_of(result: Result, kind: str) -> list[dict[str, Any]]:
    return [d for d in result.docs if d["kind"] == kind]


def one(result: Result, kind: str, name: str) -> dict[str, Any]:
    found = [d for d in docs_of(result, kind) if d["metadata"]["name"] == name]
    assert len(found) == 1, [d["metadata"]["name"] for d in docs_of(result, kind)]
    return found[0]


def bindings(worker: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {b.pop("name"): b for b in json.loads(json.dumps(worker["spec"].get("bindings", [])))}


def module_sources(result: Result, worker: dict[str, Any]) -> dict[str, str | bytes]:
    """Module name -> content, read back through the ConfigMaps the Worker references."""
    maps = {d["metadata"]["name"]: d for d in docs_of(result, "ConfigMap")}
    out: dict[str, str | bytes] = {}
    import base64

    for m in worker["spec"]["modules"]:
        ref = m["configMapKeyRef"]
        cm = maps[ref["name"]]
        if ref["key"] in cm.get("binaryData", {}):
            out[m["name"]] = base64.b64decode(cm["binaryData"][ref["key"]])
        else:
            out[m["name"]] = cm["data"][ref["key"]]
    return out


def unbundled(project: Path, into: Path) -> Path:
    """A copy of `project` with no_bundle set: its modules go out as they are, so the
    module graph edgeplane follows itself is what the output shows."""
    shutil.copytree(project, into, symlinks=True)
    config = next(p for p in into.iterdir() if p.name.startswith("wrangler."))
    text = config.read_text()
    if config.suffix == ".toml":
        config.write_text("no_bundle = true\n" + text)
    else:
        config.write_text(text.replace("{", '{ "no_bundle": true,', 1))
    return into


# --- JSONC and specifiers ------------------------------------------------------------------


def test_jsonc_comments_and_trailing_commas_outside_strings_only() -> None:
    text = """{
      // line comment
      "url": "https://a.example/x//y", /* block */ "glob": "/*not a comment*/",
      "quote": "say \\"hi\\", // still a string,]",
      "list": [1, 2, /* c */ 3,  // trailing
      ],
      "obj": {"a": 1,},
    }"""
    assert json.loads(strip_jsonc(text)) == {
        "url": "https://a.example/x//y",
        "glob": "/*not a comment*/",
        "quote": 'say "hi", // still a string,]',
        "list": [1, 2, 3],
        "obj": {"a": 1},
    }


def test_jsonc_unterminated_block_comment_is_an_error() -> None:
    with pytest.raises(WranglerImportError, match="unterminated"):
        strip_jsonc('{"a": 1 /* oops }')


def test_specifiers_follow_static_dynamic_reexport_and_require_but_not_comments() -> None:
    src = """
    import a from "./a.js";
    import { b, c as d } from './b.mjs';
    import * as ns from "./ns.js";
    import "./side-effect.js";
    export * from "./re.js";
    export { x } from "./rex.js";
    const lazy = await import("./lazy.js");
    const cjs = require("./old.cjs");
    import { connect } from "cloudflare:sockets";
    // import gone from "./commented.js";
    /* import gone2 from "./block.js"; */
    const s = "import fake from './in-a-string.js'"; // a string is not an import
    """
    found = specifiers(src)
    assert found[:8] == [
        "./a.js", "./b.mjs", "./ns.js", "./side-effect.js", "./re.js", "./rex.js",
        "./lazy.js", "./old.cjs",
    ]
    assert "cloudflare:sockets" in found
    assert "./commented.js" not in found and "./block.js" not in found


# --- hello-toml: TOML, vars of every type, secrets, KV, routes, unsupported keys -----------


def test_toml_project_maps_name_modules_vars_secrets_kv_and_routes() -> None:
    result = convert(DATA / "hello-toml")
    w = one(result, "Worker", "hello-wrangler")
    Worker.model_validate(w)
    spec = w["spec"]
    assert spec["compatibilityDate"] == "2024-09-23"
    assert spec["compatibilityFlags"] == ["nodejs_compat"]
    assert spec["mainModule"] == "index.js"
    assert all("inline" not in m for m in spec["modules"])
    # Bundled as wrangler bundles it: the JavaScript in one module, the text module beside.
    assert {m["name"]: m.get("type", "esModule") for m in spec["modules"]} == {
        "index.js": "esModule", "banner.txt": "text",
    }
    sources = module_sources(result, w)
    root = DATA / "hello-toml" / "src"
    assert sources["banner.txt"] == (root / "banner.txt").read_text()
    bundle = sources["index.js"]
    assert isinstance(bundle, str)
    assert "// src/lib/greet.js" in bundle and 'from "./banner.txt"' in bundle
    assert result.built["hello-wrangler"].startswith("bundled src/index.js with esbuild ")
    assert bindings(w) == {
        "GREETING": {"plainText": "Hello"},
        "SETTINGS": {"json": {"shout": True, "suffix": "!"}},
        "MAX_ITEMS": {"plainText": "20"},
        "API_TOKEN": {"secretKeyRef": {"name": "hello-wrangler-secrets", "key": "API_TOKEN"}},
        "CACHE": {"kvNamespace": {"namespace": "0f2ac74b498b48028cb68387c421e279"}},
    }
    routes = docs_of(result, "WorkerRoute")
    for r in routes:
        WorkerRoute.model_validate(r)
    assert [r["spec"] for r in routes] == [
        {"pattern": "hello.wrangler-import.test/*", "worker": "hello-wrangler"},
        {"pattern": "www.hello.wrangler-import.test/*", "worker": "hello-wrangler"},
        # A custom domain takes the whole host.
        {"pattern": "apex.wrangler-import.test/*", "worker": "hello-wrangler"},
    ]
    assert result.secrets == {"hello-wrangler-secrets": ["API_TOKEN"]}
    assert result.unsupported == {"hello-wrangler": ["observability", "r2_buckets"]}
    assert w["spec"]["triggers"] == {"crons": ["*/5 * * * *"]}
    assert result.ignored == {"hello-wrangler": ["account_id"]}
    assert any("MAX_ITEMS" in w and "string '20'" in w for w in result.warnings)


def test_no_bundle_uploads_the_modules_as_they_are(tmp_path: Path) -> None:
    result = convert(unbundled(DATA / "hello-toml", tmp_path / "p"))
    w = one(result, "Worker", "hello-wrangler")
    root = DATA / "hello-toml" / "src"
    assert module_sources(result, w) == {
        "index.js": (root / "index.js").read_text(),
        "lib/greet.js": (root / "lib" / "greet.js").read_text(),
        "banner.txt": (root / "banner.txt").read_text(),
    }
    assert result.built["hello-wrangler"] == (
        "not bundled (no_bundle): 3 modules from src as they are"
    )


def test_environment_inherits_main_date_flags_but_not_vars_or_bindings() -> None:
    result = convert(DATA / "hello-toml", [None, "staging"])
    top = one(result, "Worker", "hello-wrangler")
    staging = one(result, "Worker", "hello-wrangler-staging")
    assert staging["spec"]["mainModule"] == top["spec"]["mainModule"]
    assert staging["spec"]["compatibilityDate"] == "2024-09-23"
    assert staging["spec"]["compatibilityFlags"] == ["nodejs_compat"]
    # Only its own vars: no SETTINGS, MAX_ITEMS, KV or secret from the top level.
    assert bindings(staging) == {"GREETING": {"plainText": "Hi from staging"}}
    # Its own ConfigMap, so deleting one environment never breaks another.
    staging_refs = {m["configMapKeyRef"]["name"] for m in staging["spec"]["modules"]}
    assert staging_refs == {"hello-wrangler-staging-modules"}
    staging_routes = [r for r in docs_of(result, "WorkerRoute")
                      if r["spec"]["worker"] == "hello-wrangler-staging"]
    assert [r["spec"]["pattern"] for r in staging_routes] == [
        "staging.hello.wrangler-import.test/*"
    ]
    # It inherits the crons, and the observability it cannot run; none of the top level's
    # bindings: both are said, not dropped.
    assert staging["spec"]["triggers"] == {"crons": ["*/5 * * * *"]}
    inherited = "(inherited from the top level)"
    assert result.unsupported["hello-wrangler-staging"] == [f"observability {inherited}"]
    assert result.ignored["hello-wrangler-staging"] == [f"account_id {inherited}"]
    assert result.not_inherited == {
        "hello-wrangler-staging": ["kv_namespaces", "r2_buckets", "secrets"]
    }


# --- api-jsonc: JSONC, deep module graph, wasm + json modules, services, DOs ----------------


def test_jsonc_project_bundles_with_wasm_beside_and_json_inlined() -> None:
    result = convert(DATA / "api-jsonc")
    w = one(result, "Worker", "api-wrangler")
    assert {m["name"]: m.get("type", "esModule") for m in w["spec"]["modules"]} == {
        "worker.js": "esModule", "assets/add.wasm": "wasm",
    }
    bundle = module_sources(result, w)["worker.js"]
    assert isinstance(bundle, str)
    # The Wasm import is renamed to the module's name beside the bundle (base_dir: ./).
    assert 'from "./assets/add.wasm"' in bundle
    assert "// src/data/users.json" in bundle and "// src/util/json.mjs" in bundle


def test_jsonc_project_follows_the_whole_module_graph_from_base_dir(tmp_path: Path) -> None:
    result = convert(unbundled(DATA / "api-jsonc", tmp_path / "p"))
    w = one(result, "Worker", "api-wrangler")
    Worker.model_validate(w)
    types = {m["name"]: m.get("type", "esModule") for m in w["spec"]["modules"]}
    assert types == {
        "src/worker.mjs": "esModule",
        "src/routes/users.mjs": "esModule",
        "src/util/index.mjs": "esModule",
        "src/util/json.mjs": "esModule",  # reached only through `export * from`
        "src/counter.mjs": "esModule",
        "src/data/users.json": "json",
        "assets/add.wasm": "wasm",
    }
    assert w["spec"]["mainModule"] == "src/worker.mjs"
    sources = module_sources(result, w)
    assert sources["assets/add.wasm"] == (DATA / "api-jsonc" / "assets" / "add.wasm").read_bytes()
    cm = one(result, "ConfigMap", "api-wrangler-modules")
    assert list(cm["binaryData"]) == ["assets__add.wasm"]
    b = bindings(w)
    assert b["UPSTREAM"] == {"plainText": "https://upstream.example.com/v1/*/items"}
    assert b["MOTTO"] == {"plainText": "commas, everywhere,]"}
    assert b["LIMITS"] == {"json": {"page": 10, "tags": ["a", "b"]}}
    assert b["HELLO"] == {"service": {"worker": "hello-wrangler"}}
    assert b["COUNTER"] == {"durableObjectNamespace": {"className": "Counter"}}
    assert "SESSIONS" not in b  # another script's class: reported, not half-imported
    assert result.unsupported["api-wrangler"] == [
        "d1_databases", "limits", "migrations", "placement", "queues",
        "durable_objects.bindings[SESSIONS].script_name=sessions-worker",
    ]
    assert result.ignored == {"api-wrangler": ["$schema"]}


def test_jsonc_environment_with_its_own_name_and_service_environment() -> None:
    result = convert(DATA / "api-jsonc", ["production"])
    w = one(result, "Worker", "api-wrangler-prod")
    assert bindings(w) == {
        "UPSTREAM": {"plainText": "https://prod.example.com/v1"},
        "HELLO": {"service": {"worker": "hello-wrangler-production"}},
    }
    assert [r["spec"]["pattern"] for r in docs_of(result, "WorkerRoute")] == [
        "api.prod.wrangler-import.test/*"
    ]


# --- shop-envs: rules, extensionless and CommonJS imports, .dev.vars, inherited routes ------


def test_rules_extensionless_and_commonjs_modules(tmp_path: Path) -> None:
    result = convert(unbundled(DATA / "shop-envs", tmp_path / "p"))
    w = one(result, "Worker", "shop-wrangler")
    types = {m["name"]: m.get("type", "esModule") for m in w["spec"]["modules"]}
    # "./pricing" keeps the name workerd looks up; its content is pricing.js.
    assert types == {
        "main.mjs": "esModule", "pricing": "esModule", "templates/page.md": "text",
        "legacy.cjs": "commonJsModule",
        # no_bundle uploads every file a rule matches, as wrangler does.
        "pricing.js": "esModule",
    }
    sources = module_sources(result, w)
    assert sources["pricing"] == (DATA / "shop-envs" / "src" / "pricing.js").read_text()
    assert result.unsupported == {
        "shop-wrangler": ["services[PAYMENTS].entrypoint=PaymentsEntrypoint"]
    }


def test_dev_vars_give_secret_names_and_never_values() -> None:
    result = convert(DATA / "shop-envs", [None, "dev", "eu"])
    assert result.secrets == {
        "shop-wrangler-secrets": ["STRIPE_KEY", "SESSION_SECRET"],
        "shop-wrangler-dev-secrets": ["STRIPE_KEY", "SESSION_SECRET"],
        "shop-eu-secrets": ["STRIPE_KEY", "SESSION_SECRET"],
    }
    text = render(result, "wrangler.toml")
    assert "sk_test_never_in_output" not in text
    assert "also-not-in-output" not in text
    assert "kubectl create secret generic shop-eu-secrets" in text
    assert "--from-literal=STRIPE_KEY=..." in text


def test_inherited_routes_of_two_environments_are_reported_as_a_conflict() -> None:
    result = convert(DATA / "shop-envs", [None, "dev", "eu"])
    by_worker = {r["spec"]["worker"]: r["spec"]["pattern"] for r in docs_of(result, "WorkerRoute")}
    assert by_worker == {
        "shop-wrangler": "shop.wrangler-import.test/*",
        "shop-wrangler-dev": "shop.wrangler-import.test/*",  # inherited, as wrangler does
        "shop-eu": "eu.shop.wrangler-import.test/*",
    }
    assert any("claimed by both shop-wrangler and shop-wrangler-dev" in w
               for w in result.warnings)
    assert result.unsupported["shop-wrangler-dev"] == ["workers_dev"]
    eu = one(result, "Worker", "shop-eu")
    assert "compatibilityFlags" not in eu["spec"]  # overridden by an empty list


# --- refusals -----------------------------------------------------------------------------


def test_typescript_is_bundled() -> None:
    result = convert(DATA / "ts-project")
    w = next(d for d in result.docs if d["kind"] == "Worker")
    assert w["spec"]["mainModule"] == "index.js"
    bundle = module_sources(result, w)["index.js"]
    assert isinstance(bundle, str) and ": string" not in bundle  # types are gone


def test_typescript_with_no_bundle_is_refused_naming_no_bundle(tmp_path: Path) -> None:
    with pytest.raises(WranglerImportError, match=r"TypeScript.*no_bundle"):
        convert(unbundled(DATA / "ts-project", tmp_path / "p"))


def test_main_override_imports_a_bundlers_javascript_output(tmp_path: Path) -> None:
    (tmp_path / "dist").mkdir()
    (tmp_path / "dist" / "index.js").write_text("export default { fetch() {} };\n")
    (tmp_path / "wrangler.toml").write_text(
        'name = "typed"\nmain = "src/index.ts"\ncompatibility_date = "2025-01-01"\n'
    )
    result = convert(tmp_path, opts=Options(main=tmp_path / "dist" / "index.js"))
    assert one(result, "Worker", "typed")["spec"]["mainModule"] == "index.js"


def _project(tmp_path: Path, files: dict[str, str | bytes], config: str) -> Path:
    for name, content in files.items():
        p = tmp_path / name
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            p.write_bytes(content)
        else:
            p.write_text(content)
    (tmp_path / "wrangler.toml").write_text(config)
    return tmp_path


BASIC = 'name = "w"\nmain = "src/index.js"\ncompatibility_date = "2025-01-01"\n'


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"src/index.js": 'import x from "./missing.js";'},
         r'src/index.js:1: cannot import "./missing.js": no such file'),
        ({"src/index.js": 'import x from "./x.yaml";', "src/x.yaml": "a: 1"},
         r'src/index.js:1: imports src/x.yaml: no module rule matches .yaml files; add a '
         r'`rules` entry'),
        ({"src/index.js": 'import { Hono } from "hono";'},
         r'src/index.js:1: cannot import "hono": package hono is not installed; add it to '
         r'package.json and run `npm install hono`'),
        ({"src/index.js": 'import { Buffer } from "node:buffer";'},
         r'"node:buffer" is a Node.js built-in module; add "nodejs_compat" to '
         r"compatibility_flags"),
        ({"src/index.js": 'import fs from "fs";'},
         r'cannot import "fs", a Node.js built-in module; add "nodejs_compat"'),
    ],
)
def test_broken_projects_are_refused_with_the_file_line_and_fix(
    tmp_path: Path, files: dict[str, str | bytes], message: str
) -> None:
    with pytest.raises(WranglerImportError, match=message):
        convert(_project(tmp_path, files, BASIC))


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"src/index.js": 'import x from "./missing.js";'}, r"missing\.js does not exist"),
        ({"src/index.js": 'import x from "../outside.js";', "outside.js": ""},
         "outside base_dir"),
        ({"src/index.js": 'import x from "./types.ts";', "src/types.ts": ""}, "TypeScript"),
        ({"src/index.js": 'import x from "./x.yaml";', "src/x.yaml": "a: 1"},
         "no module rule"),
        ({"src/index.js": 'import { Hono } from "hono";'},
         r'these imports will not load: "hono" \(a package, and no_bundle is set\)'),
    ],
)
def test_broken_module_graphs_without_bundling_are_refused_with_the_reason(
    tmp_path: Path, files: dict[str, str | bytes], message: str
) -> None:
    with pytest.raises(WranglerImportError, match=message):
        convert(_project(tmp_path, files, "no_bundle = true\n" + BASIC))


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ('name = "Bad_Name"\n', "lowercase"),
        ('compatibility_date = "2025-13-01"\n', "compatibility_date '2025-13-01' is not a date"),
        ('routes = ["example.com/*.jpg"]\n', r"'\*' is allowed only"),
        ('[vars]\n"not-an-identifier" = "x"\n', "JavaScript identifier"),
    ],
)
def test_values_the_apiserver_would_reject_are_refused_here(
    tmp_path: Path, extra: str, message: str
) -> None:
    lines = [ln for ln in BASIC.splitlines() if ln.split(" ")[0] not in extra.split(" ")[0]]
    config = "\n".join(lines) + "\n" + extra
    with pytest.raises(WranglerImportError, match=message):
        convert(_project(tmp_path, {"src/index.js": "export default {};"}, config))


def test_allow_incomplete_writes_the_worker_and_lists_what_will_not_load(
    tmp_path: Path
) -> None:
    src = ('import { Hono } from "hono";\nimport { Buffer } from "node:buffer";\n'
           "export default { fetch() { return new Response(Hono + Buffer); } };\n")
    config = BASIC + 'compatibility_flags = ["nodejs_compat"]\n'
    result = convert(_project(tmp_path, {"src/index.js": src}, config),
                     opts=Options(allow_incomplete=True))
    assert result.incomplete == {"w": ['"hono" (imported by src/index.js)']}
    text = render(result, "wrangler.toml")
    assert '# INCOMPLETE w: these imports will not load: "hono" (imported by src/index.js)' in text
    bundle = module_sources(result, one(result, "Worker", "w"))["index.js"]
    assert isinstance(bundle, str)
    assert 'from "hono"' in bundle and 'from "node:buffer"' in bundle


def test_allow_incomplete_also_lists_a_file_no_rule_takes(tmp_path: Path) -> None:
    src = ('import cfg from "./cfg.yaml";\n'
           "export default { fetch() { return new Response(cfg); } };\n")
    files = {"src/index.js": src, "src/cfg.yaml": "a: 1\n"}
    with pytest.raises(WranglerImportError, match=r"no module rule matches \.yaml files"):
        convert(_project(tmp_path, files, BASIC))
    result = convert(_project(tmp_path / "2", files, BASIC), opts=Options(allow_incomplete=True))
    assert result.incomplete == {"w": ['"./cfg.yaml" (imported by src/index.js)']}


def test_route_without_a_path_keeps_its_meaning(tmp_path: Path) -> None:
    """Cloudflare's `example.com` is the zone's `/` only: imported as written, not widened."""
    result = convert(_project(tmp_path, {"src/index.js": ""}, BASIC + 'route = "example.com"\n'))
    assert [r["spec"]["pattern"] for r in docs_of(result, "WorkerRoute")] == ["example.com"]
    assert not any("example.com" in w for w in result.warnings)


def test_large_modules_are_spread_over_several_config_maps(tmp_path: Path) -> None:
    big = "// " + "x" * (CONFIG_MAP_BUDGET // 2 - 100) + "\n"
    files = {
        "src/index.js": 'import "./a.js";\nimport "./b.js";\nimport "./c.js";\n',
        "src/a.js": big, "src/b.js": big, "src/c.js": big,
    }
    result = convert(_project(tmp_path, files, "no_bundle = true\n" + BASIC))
    maps = docs_of(result, "ConfigMap")
    assert [m["metadata"]["name"] for m in maps] == ["w-modules-1", "w-modules-2"]
    for m in maps:
        size = sum(len(v) for v in m.get("data", {}).values())
        assert size <= CONFIG_MAP_BUDGET
    w = one(result, "Worker", "w")
    assert module_sources(result, w)["c.js"] == big


def test_a_module_too_large_for_any_config_map_is_refused(tmp_path: Path) -> None:
    files = {"src/index.js": 'export const big = "' + "x" * CONFIG_MAP_BUDGET + '";'}
    with pytest.raises(WranglerImportError, match=r"url \+ sha256"):
        convert(_project(tmp_path, files, BASIC))


# --- the command ----------------------------------------------------------------------------


def test_command_writes_yaml_and_lists_every_unsupported_key_on_stderr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out.yaml"
    assert main([str(DATA / "api-jsonc" / "wrangler.jsonc"), "-n", "apps", "-o", str(out)]) == 0
    err = capsys.readouterr().err
    for key in ("d1_databases", "limits", "migrations", "placement", "queues",
                "script_name=sessions-worker"):
        assert key in err
    docs = list(yaml.safe_load_all(out.read_text()))
    assert [d["kind"] for d in docs] == ["ConfigMap", "Worker", "WorkerRoute"]
    assert all(d["metadata"]["namespace"] == "apps" for d in docs)
    # The header says what was bundled and with what.
    assert "# api-wrangler: bundled src/worker.mjs with esbuild" in out.read_text()
    assert "export {" in docs[0]["data"]["worker.js"]


def test_command_all_envs_and_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(DATA / "shop-envs"), "--all-envs"]) == 0
    docs = list(yaml.safe_load_all(capsys.readouterr().out))
    assert sorted(d["metadata"]["name"] for d in docs if d["kind"] == "Worker") == [
        "shop-eu", "shop-wrangler", "shop-wrangler-dev",
    ]
    assert main([str(DATA / "shop-envs"), "--env", "nope"]) == 1
    assert "'nope' is not defined" in capsys.readouterr().err
    assert main([str(DATA / "ts-project")]) == 0


def test_cli_dispatches_import(capsys: pytest.CaptureFixture[str]) -> None:
    from edgeplane.cli import main as cli_main

    assert cli_main(["import", str(DATA / "hello-toml"), "-e", "staging"]) == 0
    docs = list(yaml.safe_load_all(capsys.readouterr().out))
    assert {d["metadata"]["name"] for d in docs if d["kind"] == "Worker"} == {
        "hello-wrangler-staging"
    }


def test_target_labels_select_edge_locations(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(DATA / "hello-toml"), "--target", "edgeplane.io/region=eu-central",
                 "--target", "tier=edge"]) == 0
    docs = list(yaml.safe_load_all(capsys.readouterr().out))
    w = next(d for d in docs if d["kind"] == "Worker")
    assert w["spec"]["targets"] == {
        "matchLabels": {"edgeplane.io/region": "eu-central", "tier": "edge"}
    }
    Worker.model_validate(w)
    for bad in ("no-equals-sign", "bad key=x"):
        with pytest.raises(SystemExit):
            main([str(DATA / "hello-toml"), "--target", bad])
    capsys.readouterr()
    # A label value the apiserver would refuse is refused here already.
    assert main([str(DATA / "hello-toml"), "--target", "region=not a value"]) == 1
    assert "would be rejected" in capsys.readouterr().err


def test_a_packages_wasm_ships_beside_the_bundle_named_by_its_content(tmp_path: Path) -> None:
    wasm = (DATA / "api-jsonc" / "assets" / "add.wasm").read_bytes()
    files: dict[str, str | bytes] = {
        "src/index.js": 'import add from "adder/add.wasm";\nimport page from "#page";\n'
                        "export default { fetch() { return new Response(page + add); } };\n",
        "src/page.html": "<p>hi</p>",
        "package.json": '{"name": "w", "imports": {"#page": "./src/page.html"}}',
        "node_modules/adder/package.json": '{"name": "adder", "version": "1.2.3"}',
        "node_modules/adder/add.wasm": wasm,
    }
    result = convert(_project(tmp_path, files, BASIC))
    w = one(result, "Worker", "w")
    sources = module_sources(result, w)
    digest = hashlib.sha1(wasm).hexdigest()
    assert {m["name"]: m.get("type", "esModule") for m in w["spec"]["modules"]} == {
        "index.js": "esModule", "page.html": "text", f"{digest}-add.wasm": "wasm",
    }
    assert sources[f"{digest}-add.wasm"] == wasm
    bundle = sources["index.js"]
    assert isinstance(bundle, str)
    assert f'from "./{digest}-add.wasm"' in bundle and 'from "./page.html"' in bundle


def test_a_bundle_too_big_for_a_config_map_is_minified_and_says_so(tmp_path: Path) -> None:
    # Code whose whitespace alone takes it over the budget: ~1.02 MB, ~0.84 MB without.
    rows = "".join(f'    key_{i}: {{ value: {i}, label: "label {i}" }},\n' for i in range(20_000))
    files = {"src/index.js": 'export * from "./many.js";\nexport default { fetch() {} };\n',
             "src/many.js": "export const table = {\n" + rows + "};\n"}
    result = convert(_project(tmp_path, files, BASIC))
    built = result.built["w"]
    assert "minified (whitespace and syntax) to fit one ConfigMap" in built
    assert any("set minify = true to choose this yourself" in w for w in result.warnings)
    bundle = module_sources(result, one(result, "Worker", "w"))["index.js"]
    assert isinstance(bundle, str) and "key_19999:" in bundle  # names as written
    # The project chose minify itself: nothing is done behind its back.
    with pytest.raises(WranglerImportError, match="more than one ConfigMap holds"):
        big = 'export const big = "' + "x" * CONFIG_MAP_BUDGET + '";'
        convert(_project(tmp_path / "p2", {"src/index.js": big}, BASIC + "minify = true\n"))


@pytest.mark.parametrize(
    ("present", "read"),
    [
        # wrangler looks for wrangler.json, then wrangler.jsonc, then wrangler.toml.
        (["wrangler.json", "wrangler.jsonc", "wrangler.toml"], "wrangler.json"),
        (["wrangler.jsonc", "wrangler.json"], "wrangler.json"),
        (["wrangler.jsonc", "wrangler.toml"], "wrangler.jsonc"),
        (["wrangler.toml", "wrangler.json"], "wrangler.json"),
        (["wrangler.toml"], "wrangler.toml"),
    ],
)
def test_find_config_reads_the_file_wrangler_reads(
    tmp_path: Path, present: list[str], read: str
) -> None:
    assert CONFIG_NAMES == ("wrangler.json", "wrangler.jsonc", "wrangler.toml")
    for name in present:
        (tmp_path / name).write_text("{}")
    assert find_config(tmp_path) == tmp_path / read
    assert shadowed_configs(tmp_path / read) == [
        f"{n} is ignored: {read} is read instead, as wrangler does"
        for n in CONFIG_NAMES if n in present and n != read
    ]


def test_a_packages_require_of_a_node_builtin_becomes_an_import(tmp_path: Path) -> None:
    """ES module output cannot require(): a CommonJS package's require("events") would
    throw "Dynamic require ... is not supported" at the edge."""
    files: dict[str, str | bytes] = {
        "src/index.js": 'import Emitter from "emitter";\n'
                        "export default { fetch() { return new Response(typeof Emitter); } };\n",
        "node_modules/emitter/package.json": '{"name": "emitter", "main": "index.js"}',
        "node_modules/emitter/index.js": 'module.exports = require("events");\n',
    }
    config = BASIC + 'compatibility_flags = ["nodejs_compat"]\n'
    result = convert(_project(tmp_path, files, config))
    bundle = module_sources(result, one(result, "Worker", "w"))["index.js"]
    assert isinstance(bundle, str)
    assert 'from "node:events"' in bundle and 'require("events")' not in bundle


@pytest.mark.parametrize(
    ("date", "fs_is_workerds"),
    [("2024-09-23", False), ("2025-09-15", True)],  # workerd has node:fs from 2025-09-01
)
def test_nodejs_compat_polyfills_what_workerd_lacks_at_the_date(
    tmp_path: Path, date: str, fs_is_workerds: bool
) -> None:
    """wrangler's nodejs_compat "v2": workerd's module where it has one, else unenv's
    polyfill bundled; the preset's process and console globals injected."""
    src = ('import { existsSync } from "node:fs";\nimport { EventEmitter } from "events";\n'
           "export default { fetch() { return new Response(String(existsSync(\"/x\")) + "
           "typeof EventEmitter + process.env.X); } };\n")
    config = (f'name = "w"\nmain = "src/index.js"\ncompatibility_date = "{date}"\n'
              'compatibility_flags = ["nodejs_compat"]\n')
    result = convert(_project(tmp_path, {"src/index.js": src}, config))
    bundle = module_sources(result, one(result, "Worker", "w"))["index.js"]
    assert isinstance(bundle, str)
    assert ('from "node:fs"' in bundle) == fs_is_workerds
    assert ("// node_modules/unenv/dist/runtime/node/internal/fs/" in bundle) != fs_is_workerds
    assert "// ../" not in bundle  # no path of this machine in the manifests
    assert 'from "node:events"' in bundle
    assert "globalThis.process = " in bundle and "globalThis.console = " in bundle


def test_the_build_keys_reach_esbuild(tmp_path: Path) -> None:
    """define, alias, tsconfig (its paths), jsx_factory and find_additional_modules, each
    seen in the bundle it changes."""
    files: dict[str, str | bytes] = {
        "src/index.tsx": (
            'import { shout } from "@lib/shout";\nimport fetchShim from "node-fetch";\n'
            "declare const __VERSION__: string;\n"
            "const el = <p>{shout(__VERSION__)}</p>;\n"
            "export default { async fetch(): Promise<Response> {\n"
            '  const lazy = await import(`./lazy/${"a"}.js`);\n'
            "  return new Response(String(el) + fetchShim + lazy.x); } };\n"
        ),
        "src/lib/shout.ts": "export const shout = (s: string): string => s.toUpperCase();\n",
        "src/shim.js": "export default function shimmedFetch() {}\n",
        "src/lazy/a.js": "export const x = 1;\n",
        "tsconfig.build.json": '{"compilerOptions": {"baseUrl": ".", '
                               '"paths": {"@lib/*": ["src/lib/*"]}}}',
    }
    config = (
        'name = "w"\nmain = "src/index.tsx"\ncompatibility_date = "2025-01-01"\n'
        'tsconfig = "tsconfig.build.json"\njsx_factory = "h"\nfind_additional_modules = true\n'
        'define = { __VERSION__ = \'"1.2.3"\' }\nalias = { "node-fetch" = "./src/shim.js" }\n'
    )
    result = convert(_project(tmp_path, files, config))
    w = one(result, "Worker", "w")
    bundle = module_sources(result, w)["index.js"]
    assert isinstance(bundle, str)
    assert 'shout("1.2.3")' in bundle  # define
    assert "function shimmedFetch" in bundle  # alias
    assert "// src/lib/shout.ts" in bundle  # tsconfig's paths
    assert 'h("p", null' in bundle  # jsx_factory
    # find_additional_modules: every JavaScript file under base_dir ships as its own module
    # too, as wrangler uploads them (code may import them by a name computed at run time).
    assert {m["name"] for m in w["spec"]["modules"]} == {"index.js", "lazy/a.js", "shim.js"}


@pytest.mark.parametrize(("triggers", "crons"), [
    (None, []),
    ({}, []),
    ({"crons": []}, []),  # an environment turning off what it inherits
    ({"crons": ["*/5 * * * *", " 0 9 * * MON-FRI ", "*/5 * * * *"]},
     ["*/5 * * * *", "0 9 * * MON-FRI"]),
])
def test_cron_triggers_map_to_the_spec(triggers: Any, crons: list[str]) -> None:
    assert cron_triggers(triggers, "w") == crons


@pytest.mark.parametrize("triggers", [{"crons": "* * * * *"}, {"crons": [5]}])
def test_cron_triggers_of_another_shape_are_refused(triggers: Any) -> None:
    with pytest.raises(WranglerImportError, match=r"w: triggers.crons is a list"):
        cron_triggers(triggers, "w")


def test_a_cron_cloudflare_refuses_is_refused_naming_it(tmp_path: Path) -> None:
    project = tmp_path / "p"
    shutil.copytree(DATA / "hello-toml", project)
    config = project / "wrangler.toml"
    text = config.read_text().replace('crons = ["*/5 * * * *"]', 'crons = ["0 0 * * 0"]')
    config.write_text(text)
    with pytest.raises(WranglerImportError, match=r'cron trigger "0 0 \* \* 0": day of week'):
        convert(project)
