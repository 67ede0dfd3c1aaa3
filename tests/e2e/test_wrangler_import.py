"""`edgeplane import` end to end: the YAML it writes for each wrangler project under
tests/data/wrangler/ is applied with kubectl to the local stack, and every edge location
answers the routes from the wrangler config the way the project's own code says it should."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from edgeplane.localstack.stack import Stack
from tests.e2e.conftest import Kube, eventually, fetch

pytestmark = pytest.mark.integration

DATA = Path(__file__).resolve().parents[1] / "data" / "wrangler"


def import_and_apply(kube: Kube, project: str, *args: str) -> str:
    res = subprocess.run(
        [sys.executable, "-m", "edgeplane.cli", "import", str(DATA / project),
         "-n", kube.namespace, *args],
        capture_output=True, text=True, check=True, timeout=60,
    )
    kube.cluster.kubectl("apply", "-f", "-", input=res.stdout)
    return res.stderr


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


def test_imported_projects_serve_like_the_original_workers(stack: Stack, kube: Kube) -> None:
    # The placeholders the import listed, filled in as a user would.
    kube.apply(
        secret("hello-wrangler-secrets", API_TOKEN="t0ken"),
        secret("shop-eu-secrets", STRIPE_KEY="sk", SESSION_SECRET="ss"),
    )
    err = import_and_apply(kube, "hello-toml")
    assert "r2_buckets" in err and "triggers" in err
    import_and_apply(kube, "api-jsonc")
    import_and_apply(kube, "shop-envs", "--env", "eu")

    for name in ("hello-wrangler", "api-wrangler", "shop-eu"):
        obj = kube.wait_ready(name, timeout=90)
        assert obj["status"]["readyTargets"] == f"{len(stack.agents)}/{len(stack.agents)}"

    # hello-toml: vars of three JSON types, a text module, a secret, three kinds of route.
    eventually(lambda: answers(stack, "hello.wrangler-import.test", "/?name=edge",
                               (200, "HELLO, EDGE!")))
    eventually(lambda: answers(stack, "www.hello.wrangler-import.test", "/banner",
                               (200, "edgeplane imported me from wrangler.toml")))
    eventually(lambda: answers_json(
        stack, "apex.wrangler-import.test", "/config",
        {"max": "20", "settings": {"shout": True, "suffix": "!"}, "hasToken": True},
    ))
    # api-jsonc: a module graph through re-exports, JSON and Wasm modules, a service
    # binding to the hello Worker.
    eventually(lambda: answers_json(stack, "api.wrangler-import.test", "/users",
                                    ["ada", "grace"]))
    eventually(lambda: answers_json(stack, "api.wrangler-import.test", "/users/2",
                                    {"id": 2, "name": "grace"}))
    eventually(lambda: answers(stack, "api.wrangler-import.test", "/users/9",
                               (404, '{"error":"no such user"}')))
    eventually(lambda: answers(stack, "api.wrangler-import.test", "/add?a=2&b=40", (200, "42")))
    eventually(lambda: answers_json(
        stack, "api.wrangler-import.test", "/vars",
        {"upstream": "https://upstream.example.com/v1/*/items",
         "motto": "commas, everywhere,]", "limits": {"page": 10, "tags": ["a", "b"]}},
    ))
    eventually(lambda: answers(stack, "api.wrangler-import.test", "/hello", (200, "HELLO, API!")))
    # shop-envs, environment eu: its own name, vars and route; rules, an extensionless and
    # a CommonJS import; secrets named in .dev.vars.
    eventually(lambda: answers(stack, "eu.shop.wrangler-import.test", "/",
                               (200, "# Shop (eu)\nsecrets: STRIPE_KEY,SESSION_SECRET\n")))
    eventually(lambda: answers(stack, "eu.shop.wrangler-import.test", "/price?cents=1999",
                               (200, "19.99 EUR")))
    eventually(lambda: answers(stack, "eu.shop.wrangler-import.test", "/legacy",
                               (200, "legacy module in eu")))
    # The top-level shop route was not imported, so nothing answers it.
    assert all(fetch(a, "shop.wrangler-import.test")[0] == 404 for a in stack.agents)
