"""`edgeplane import` on real public wrangler projects (tests/corpus/: create-cloudflare's
templates from two releases, with the npm packages they import), each started in a
throw-away workerd; and `--check` on the command line."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.corpus.run import Outcome, default_roots, run, share, summary

pytestmark = pytest.mark.integration

HERE = Path(__file__).resolve().parent
NODE_MODULES = HERE.parent / "corpus" / "current" / "node_modules"
# A refusal names the file (with its line, when esbuild gives one) or the config key.
NAMES_WHAT = re.compile(
    r"[\w./@-]+\.(?:ts|tsx|js|mjs|cjs|jsx|py|json|jsonc|toml|wasm|html|txt)\b"
    r"|\b(?:main|name|compatibility_date|compatibility_flags|rules|base_dir|no_bundle|vars"
    r"|secrets|kv_namespaces|durable_objects|services|routes?|env|assets)\b"
)


@pytest.fixture(scope="module")
async def outcomes() -> list[Outcome]:
    found = await run(default_roots())
    print("\n".join([*(o.line() for o in found), *summary(found)]))
    return found


async def test_nine_in_ten_supported_projects_import_and_start(outcomes: list[Outcome]) -> None:
    supported = [o for o in outcomes if o.kind == "supported"]
    assert len(supported) >= 10
    failed = [o.line() for o in supported if o.status != "started"]
    assert len(failed) <= len(supported) // 10, (share(outcomes), failed)
    # The ones that need npm packages and a 1 MB bundle among them.
    started = {o.project: o.detail for o in supported if o.status == "started"}
    for project in ("current/openapi/ts", "c3-2.25/openapi/ts", "current/common/ts",
                    "current/hello-world/ts", "c3-2.25/hello-world/js"):
        assert started.get(project, "").startswith("GET / -> 200"), (project, started)


async def test_no_project_crashes_and_each_refusal_is_one_line_naming_what(
    outcomes: list[Outcome],
) -> None:
    assert len(outcomes) >= 70
    assert [o.line() for o in outcomes if o.status == "crashed"] == []
    for o in outcomes:
        if o.status == "refused":
            assert "\n" not in o.detail and "Traceback" not in o.detail, o.line()
            assert NAMES_WHAT.search(o.detail), o.line()


def _project(tmp_path: Path, index: str) -> Path:
    project = tmp_path / "p"
    (project / "src").mkdir(parents=True)
    (project / "src" / "index.ts").write_text(index)
    (project / "package.json").write_text('{"name": "p", "dependencies": {"hono": "*"}}')
    (project / "wrangler.jsonc").write_text(
        '{ "name": "typed-hono", "main": "src/index.ts", "compatibility_date": "2025-06-01" }'
    )
    (tmp_path / "node_modules").symlink_to(NODE_MODULES)
    return project


def _import(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edgeplane.cli", "import", *args],
                          capture_output=True, text=True, timeout=120, check=False)


def test_check_starts_the_worker_before_writing_it(tmp_path: Path) -> None:
    index = ('import { Hono } from "hono";\nconst app = new Hono();\n'
             'app.get("/", (c) => c.json({ typed: true as boolean }));\nexport default app;\n')
    project = _project(tmp_path, index)
    res = _import(str(project), "--check")
    assert res.returncode == 0, res.stderr
    assert "check: typed-hono starts in workerd: GET / -> 200" in res.stderr
    head = res.stdout.splitlines()[1]
    assert re.fullmatch(
        r"# typed-hono: bundled src/index.ts with esbuild 0\.28\.2 \(pinned by edgeplane's "
        r"package-lock.json\): \d+ input files; npm packages hono@4\.13\.19 \(from "
        r"/\S+/tests/corpus/current/package-lock.json\)", head), head
    assert [d["kind"] for d in yaml.safe_load_all(res.stdout)] == ["ConfigMap", "Worker"]


def test_check_refuses_a_worker_that_does_not_start_and_writes_nothing(tmp_path: Path) -> None:
    project = _project(tmp_path, 'export default { fetch() { return new Response("x"); } };\n'
                                 'throw new Error("top-level boom");\n')
    out = tmp_path / "out.yaml"
    res = _import(str(project), "--check", "-o", str(out))
    assert res.returncode == 1
    assert res.stdout == "" and not out.exists()
    assert ("edgeplane import: check: typed-hono does NOT start in workerd: service main: "
            "Uncaught Error: top-level boom") in res.stderr, res.stderr
    assert "Traceback" not in res.stderr


def test_check_says_when_a_started_worker_fails_its_first_request(tmp_path: Path) -> None:
    project = _project(tmp_path, 'export default { fetch() { throw new Error("per-request"); } };')
    res = _import(str(project), "--check")
    assert res.returncode == 0  # it starts; what it answers is the code's business
    assert re.search(r"starts in workerd: GET / -> 500 in \d+ ms \(.*per-request", res.stderr)


def test_the_corpus_is_installed_where_the_tests_look() -> None:
    assert shutil.which("node")
    for root, node_modules in default_roots():
        assert root.is_dir() and (node_modules / ".package-lock.json").is_file(), root


def test_a_commonjs_package_requiring_node_builtins_runs(tmp_path: Path) -> None:
    """pg, mysql2 and many more are CommonJS and require("events"): bundled to ES modules,
    that require() must become an import of workerd's node:events, or the Worker throws
    "Dynamic require ... is not supported" on its first request."""
    project = tmp_path / "p"
    package = project / "node_modules" / "emits"
    package.mkdir(parents=True)
    (package / "package.json").write_text('{"name": "emits", "version": "1.0.0"}')
    (package / "index.js").write_text(
        'const { EventEmitter } = require("events");\nconst { Buffer } = require("buffer");\n'
        "module.exports = () => { const e = new EventEmitter(); let got;\n"
        '  e.on("x", (v) => { got = Buffer.from(v).toString("hex"); }); e.emit("x", "ok");\n'
        "  return got; };\n"
    )
    (project / "index.ts").write_text(
        'import emits from "emits";\n'
        "export default { fetch(): Response { return new Response(emits()); } };\n"
    )
    (project / "wrangler.toml").write_text(
        'name = "cjs"\nmain = "index.ts"\ncompatibility_date = "2025-06-01"\n'
        'compatibility_flags = ["nodejs_compat"]\n'
    )
    res = _import(str(project), "--check")
    assert res.returncode == 0, res.stderr
    assert re.search(r"check: cjs starts in workerd: GET / -> 200 in", res.stderr), res.stderr
