"""`edgeplane import` end to end: the YAML it writes for each wrangler project under
tests/data/wrangler/ is applied with kubectl to the local stack, and every edge location
answers the routes from the wrangler config the way the project's own code says it should."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgeplane.localstack.stack import Stack
from tests.corpus.run import default_roots, prepare
from tests.e2e.conftest import Kube, eventually, fetch

pytestmark = pytest.mark.integration

DATA = Path(__file__).resolve().parents[1] / "data" / "wrangler"
class Imported:
    """Objects applied from `edgeplane import` output, deleted again at the end so the
    next test's identical route patterns do not conflict with them."""

    def __init__(self, kube: Kube) -> None:
        self.kube = kube
        self.texts: list[str] = []

    def apply(self, project: str | Path, *args: str) -> str:
        res = subprocess.run(
            [sys.executable, "-m", "edgeplane.cli", "import", str(DATA / project),
             "-n", self.kube.namespace, *args],
            capture_output=True, text=True, check=True, timeout=120,
        )
        # Server-side, as the output's header advises: a bundle's ConfigMap can be larger
        # than client-side apply's last-applied annotation may be.
        self.kube.cluster.kubectl("apply", "--server-side", "-f", "-", input=res.stdout)
        self.texts.append(res.stdout)
        return res.stderr

    def delete(self) -> None:
        for text in reversed(self.texts):
            self.kube.cluster.kubectl("delete", "--ignore-not-found", "--wait=true",
                                      "--timeout=90s", "-f", "-", input=text, check=False)


@pytest.fixture
def imported(kube: Kube) -> Iterator[Imported]:
    imp = Imported(kube)
    try:
        yield imp
    finally:
        imp.delete()


def ready(stack: Stack, kube: Kube, name: str) -> None:
    try:
        obj = kube.wait_ready(name, timeout=90)
    except AssertionError:
        status = (kube.get("worker", name) or {}).get("status")
        raise AssertionError(f"{name} not Ready: {json.dumps(status)}") from None
    n = len(stack.agents)
    assert obj["status"]["readyTargets"] == f"{n}/{n}"


def answers(stack: Stack, host: str, path: str, expected: tuple[int, str]) -> bool:
    got = [fetch(a, host, path) for a in stack.agents]
    assert got == [expected] * len(stack.agents), (host, path, got)
    return True


def answers_json(stack: Stack, host: str, path: str, expected: object) -> bool:
    for a in stack.agents:
        status, body = fetch(a, host, path)
        assert status == 200, (host, path, status, body)
        assert json.loads(body) == expected, (host, path, body)
    return True


def secret(name: str, **values: str) -> dict[str, object]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name},
            "stringData": values}


def test_toml_project(stack: Stack, kube: Kube, imported: Imported) -> None:
    """Vars of three JSON types, a text module, a secret, KV, three kinds of route."""
    kube.apply(secret("hello-wrangler-secrets", API_TOKEN="t0ken"))
    err = imported.apply("hello-toml")
    assert "r2_buckets" in err and "triggers" not in err  # crons are imported
    ready(stack, kube, "hello-wrangler")
    eventually(lambda: answers(stack, "hello.wrangler-import.test", "/?name=edge",
                               (200, "HELLO, EDGE!")))
    eventually(lambda: answers(stack, "www.hello.wrangler-import.test", "/banner",
                               (200, "edgeplane imported me from wrangler.toml")))
    eventually(lambda: answers_json(
        stack, "apex.wrangler-import.test", "/config",
        {"max": "20", "settings": {"shout": True, "suffix": "!"}, "hasToken": True},
    ))


def test_jsonc_project_with_a_service_binding(
    stack: Stack, kube: Kube, imported: Imported
) -> None:
    """A module graph through re-exports, JSON and Wasm modules, a Durable Object class and
    a service binding to the Worker of the TOML project."""
    kube.apply(secret("hello-wrangler-secrets", API_TOKEN="t0ken"))
    imported.apply("hello-toml")
    imported.apply("api-jsonc")
    ready(stack, kube, "hello-wrangler")
    ready(stack, kube, "api-wrangler")
    host = "api.wrangler-import.test"
    eventually(lambda: answers_json(stack, host, "/users", ["ada", "grace"]))
    eventually(lambda: answers_json(stack, host, "/users/2", {"id": 2, "name": "grace"}))
    eventually(lambda: answers(stack, host, "/users/9", (404, '{"error":"no such user"}')))
    eventually(lambda: answers(stack, host, "/add?a=2&b=40", (200, "42")))
    eventually(lambda: answers_json(
        stack, host, "/vars",
        {"upstream": "https://upstream.example.com/v1/*/items",
         "motto": "commas, everywhere,]", "limits": {"page": 10, "tags": ["a", "b"]}},
    ))
    eventually(lambda: answers(stack, host, "/hello", (200, "HELLO, API!")))


def test_environment_of_a_project(stack: Stack, kube: Kube, imported: Imported) -> None:
    """[env.eu]: its own name, vars and route; module rules, an extensionless and a
    CommonJS import; secrets named in .dev.vars."""
    kube.apply(secret("shop-eu-secrets", STRIPE_KEY="sk", SESSION_SECRET="ss"))
    imported.apply("shop-envs", "--env", "eu")
    ready(stack, kube, "shop-eu")
    host = "eu.shop.wrangler-import.test"
    eventually(lambda: answers(stack, host, "/",
                               (200, "# Shop (eu)\nsecrets: STRIPE_KEY,SESSION_SECRET\n")))
    eventually(lambda: answers(stack, host, "/price?cents=1999", (200, "19.99 EUR")))
    eventually(lambda: answers(stack, host, "/legacy", (200, "legacy module in eu")))
    # The top level's route was not imported, so nothing answers it.
    assert all(fetch(a, "shop.wrangler-import.test")[0] == 404 for a in stack.agents)


def test_a_public_typescript_project_with_npm_packages(
    stack: Stack, kube: Kube, imported: Imported, tmp_path: Path
) -> None:
    """create-cloudflare's OpenAPI template as it is published: TypeScript, Hono, chanfana
    and zod, bundled by the import (a 1 MB bundle, minified to fit its ConfigMap), served
    by every location, validating its input as the project's code says."""
    root, node_modules = default_roots()[0]
    shutil.copytree(root / "openapi" / "ts", tmp_path / "openapi" / "ts")
    (tmp_path / "node_modules").symlink_to(node_modules)
    config = prepare(tmp_path / "openapi" / "ts" / "wrangler.jsonc", tmp_path)
    err = imported.apply(config.parent)
    assert "minified (whitespace and syntax) to fit one ConfigMap" in err
    kube.apply({"apiVersion": "edgeplane.io/v1alpha1", "kind": "WorkerRoute",
                "metadata": {"name": "openapi"},
                "spec": {"pattern": "openapi.wrangler-import.test/*", "worker": "openapi-ts"}})
    ready(stack, kube, "openapi-ts")
    host = "openapi.wrangler-import.test"

    def lists_tasks() -> bool:
        for a in stack.agents:
            status, body = fetch(a, host, "/api/tasks?page=0")
            assert status == 200, (status, body)
            assert json.loads(body)["success"] is True
        return True

    eventually(lists_tasks)
    status, body = fetch(stack.agents[0], host, "/api/tasks?page=not-a-number")
    assert status == 400 and "page" in body  # zod's validation, bundled from npm
    status, body = fetch(stack.agents[0], host, "/openapi.json")
    assert status == 200 and "/api/tasks/{taskSlug}" in json.loads(body)["paths"]
