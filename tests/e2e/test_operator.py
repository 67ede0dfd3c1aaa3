"""The operator end to end, driven like a user: kubectl apply, then curl each location."""

from __future__ import annotations

import base64
import http.server
import json
import threading
import time
from typing import ClassVar

import pytest
import yaml

from edgeplane.localstack.stack import Stack
from tests.e2e.conftest import Kube, eventually, fetch, responder, route, worker

pytestmark = pytest.mark.integration


def host(kube: Kube, name: str) -> str:
    return f"{name}.{kube.namespace}.example.com"


def deploy(kube: Kube, name: str, script: str, **spec: object) -> None:
    kube.apply(worker(name, script, **spec), route(name, f"{host(kube, name)}/*", name))


def serves(stack: Stack, kube: Kube, name: str, expected: str) -> bool:
    answers = [fetch(a, host(kube, name)) for a in stack.agents]
    assert answers == [(200, expected)] * len(stack.agents), answers
    return True


def test_apply_update_delete(stack: Stack, kube: Kube) -> None:
    deploy(kube, "hello", responder('"hello v1"'))
    obj = kube.wait_ready("hello", generation=1)
    status = obj["status"]
    assert status["readyTargets"] == "3/3"
    assert status["latestVersion"] == status["readyVersion"]
    assert sorted(t["name"] for t in status["targets"]) == ["edge-1", "edge-2", "edge-3"]
    assert all(t["state"] == "Ready" for t in status["targets"])
    eventually(lambda: serves(stack, kube, "hello", "hello v1"))
    # kubectl wait works on the Ready condition.
    kube.cluster.kubectl("wait", "-n", kube.namespace, "--for=condition=Ready",
                         "--timeout=30s", "worker/hello")

    kube.apply(worker("hello", responder('"hello v2"')))
    obj = kube.wait_ready("hello", generation=2)
    assert obj["status"]["readyVersion"] != status["readyVersion"]
    eventually(lambda: serves(stack, kube, "hello", "hello v2"))
    versions = kube.list("workerversions")
    assert len(versions) == 2
    assert {v["spec"]["versionId"] for v in versions} == {
        status["readyVersion"], obj["status"]["readyVersion"]
    }
    # One Deployed Event, for the update: the first rollout makes none (its status says it).
    def deployed() -> list[str]:
        return [e["message"] for e in kube.list("events")
                if e["reason"] == "Deployed" and e["involvedObject"]["name"] == "hello"]

    eventually(lambda: deployed() or None)
    assert len(deployed()) == 1 and obj["status"]["readyVersion"][:12] in deployed()[0]

    kube.delete("worker", "hello")
    eventually(lambda: all(fetch(a, host(kube, "hello"))[0] == 404 for a in stack.agents))
    eventually(lambda: kube.list("workerversions") == [] or None, timeout=90)


def test_rotating_a_secret_redeploys_with_the_new_value(stack: Stack, kube: Kube) -> None:
    secret = {
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds"},
        "stringData": {"token": "first-token-value"},
    }
    kube.apply(secret)
    deploy(
        kube, "secretive", responder("'token=' + env.TOKEN"),
        bindings=[{"name": "TOKEN", "secretKeyRef": {"name": "creds", "key": "token"}}],
    )
    kube.wait_ready("secretive")
    eventually(lambda: serves(stack, kube, "secretive", "token=first-token-value"))
    kube.apply({**secret, "stringData": {"token": "second-token-value"}})
    eventually(lambda: serves(stack, kube, "secretive", "token=second-token-value"))
    # The secret's value never lands in status or Events.
    obj = kube.get("worker", "secretive")
    events = kube.list("events")
    assert "token-value" not in str(obj) and "token-value" not in str(events)


def test_missing_source_stalls_and_deploys_by_itself_once_it_appears(
    stack: Stack, kube: Kube
) -> None:
    spec_module = {"name": "index.js", "configMapKeyRef": {"name": "code", "key": "index.js"}}
    kube.apply(
        {**worker("later", ""), "spec": {"compatibilityDate": "2025-01-01",
                                         "modules": [spec_module]}},
        route("later", f"{host(kube, 'later')}/*", "later"),
    )
    stalled = eventually(lambda: (kube.condition("worker", "later", "Stalled") or {})
                         .get("status") == "True" and kube.condition("worker", "later", "Stalled"))
    assert stalled["reason"] == "SourceNotFound"
    assert "ConfigMap" in stalled["message"] and "code" in stalled["message"]
    kube.apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "code"},
                "data": {"index.js": responder('"from a ConfigMap"')}})
    kube.wait_ready("later")
    eventually(lambda: serves(stack, kube, "later", "from a ConfigMap"))


def test_a_syntax_error_stalls_while_the_last_good_version_serves(
    stack: Stack, kube: Kube
) -> None:
    deploy(kube, "fragile", responder('"good"'))
    kube.wait_ready("fragile")
    kube.apply(worker("fragile", "export default { fetch( {"))
    # A healthy Worker applied at the same moment is not held up by the broken one.
    deploy(kube, "sturdy", responder('"sturdy"'))

    def stalled() -> dict[str, object] | None:
        cond = kube.condition("worker", "fragile", "Stalled")
        return cond if cond and cond["status"] == "True" else None

    cond = eventually(stalled)
    assert cond["reason"] == "ScriptInvalid"
    assert "SyntaxError" in str(cond["message"])
    ready = kube.condition("worker", "fragile", "Ready")
    assert ready and ready["status"] == "False" and ready["reason"] == "ScriptInvalid"
    kube.wait_ready("sturdy", timeout=30)
    eventually(lambda: serves(stack, kube, "sturdy", "sturdy"))
    assert serves(stack, kube, "fragile", "good")


def test_no_matching_target_stalls(stack: Stack, kube: Kube) -> None:
    kube.apply(worker("nowhere", responder('"x"'),
                      targets={"matchLabels": {"edgeplane.io/region": "mars"}}))
    cond = eventually(lambda: (kube.condition("worker", "nowhere", "Stalled") or {})
                      .get("reason") == "NoTargets" and kube.condition("worker", "nowhere",
                                                                       "Stalled"))
    assert cond["status"] == "True"
    assert "spec.targets" in cond["message"]


def test_an_unreachable_location_is_reported_and_recovers(stack: Stack, kube: Kube) -> None:
    deploy(kube, "steady", responder('"steady"'))
    kube.wait_ready("steady")
    down = stack.agents[2]
    down.stop()
    try:
        cond = eventually(
            lambda: (kube.condition("worker", "steady", "Ready") or {}).get("reason")
            == "TargetUnreachable" and kube.condition("worker", "steady", "Ready"),
            timeout=30,
        )
        assert cond["status"] == "False" and down.name in cond["message"]
        for a in stack.agents[:2]:
            assert fetch(a, host(kube, "steady")) == (200, "steady")
    finally:
        down.start()
    kube.wait_ready("steady", timeout=60)
    eventually(lambda: serves(stack, kube, "steady", "steady"))


def test_binary_and_text_modules_from_a_config_map(stack: Stack, kube: Kube) -> None:
    kube.apply({
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "assets"},
        "data": {"greeting.txt": "hi from a text module"},
        "binaryData": {"blob.bin": base64.b64encode(b"\x00\x01\x02").decode()},
    })
    script = (
        'import greeting from "greeting.txt"; import blob from "blob.bin";\n'
        + "export default { fetch() { return new Response(greeting + ' ' + "
        + "new Uint8Array(blob).length); } };\n"
    )
    kube.apply(
        {
            **worker("assets", script),
            "spec": {
                "compatibilityDate": "2025-01-01",
                "modules": [
                    {"name": "index.js", "inline": script},
                    {"name": "greeting.txt", "type": "text",
                     "configMapKeyRef": {"name": "assets", "key": "greeting.txt"}},
                    {"name": "blob.bin", "type": "data",
                     "configMapKeyRef": {"name": "assets", "key": "blob.bin"}},
                ],
            },
        },
        route("assets", f"{host(kube, 'assets')}/*", "assets"),
    )
    kube.wait_ready("assets")
    eventually(lambda: serves(stack, kube, "assets", "hi from a text module 3"))


def test_a_large_inline_script_deploys_and_kopf_stores_no_copy_of_it(
    stack: Stack, kube: Kube
) -> None:
    padding = "// " + "x" * 400_000 + "\n"  # over kopf's 256 KiB annotation limit
    deploy(kube, "large", padding + responder('"large"'))
    obj = kube.wait_ready("large")
    assert not any("kopf" in k for k in obj["metadata"].get("annotations") or {})
    eventually(lambda: serves(stack, kube, "large", "large"))


class _Recorder(http.server.BaseHTTPRequestHandler):
    """An endpoint that records every request it gets (and answers none usefully)."""

    seen: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        self.seen.append(f"{self.path} {self.headers.get('Authorization', '')}")
        self.send_response(500)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_an_edge_target_cannot_use_another_namespaces_secret(stack: Stack, kube: Kube) -> None:
    """Whoever may create an EdgeTarget must not make the operator read a team's Secret and
    send it as a bearer token to an endpoint of their choosing."""
    kube.cluster.kubectl("create", "secret", "generic", "team-token", "-n", kube.namespace,
                         "--from-literal=token=do-not-send-me")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    name = f"steal-{kube.namespace}"
    doc = {
        "apiVersion": "edgeplane.io/v1alpha1", "kind": "EdgeTarget",
        "metadata": {"name": name, "labels": {"edgeplane.io/region": "nowhere"}},
        "spec": {"endpoint": f"http://127.0.0.1:{server.server_port}",
                 "credentialsSecretRef": {"namespace": kube.namespace, "name": "team-token",
                                          "key": "token"}},
    }
    kube.cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(doc))
    try:
        def refused() -> dict | None:
            res = kube.cluster.kubectl("get", "edgetarget", name, "-o", "json")
            conds = (json.loads(res.stdout).get("status") or {}).get("conditions") or []
            ready = next((c for c in conds if c["type"] == "Ready"), {})
            return ready if ready.get("reason") == "CredentialsNotAllowed" else None

        cond = eventually(refused, timeout=30)
        assert cond["status"] == "False"
        assert "spec.credentialsSecretRef.namespace" in cond["message"]
        assert kube.namespace in cond["message"] and "edgeplane-system" in cond["message"]
        time.sleep(5)  # two more health checks at the 2 s interval the stack uses
        assert _Recorder.seen == []
    finally:
        kube.cluster.kubectl("delete", "edgetarget", name, "--wait=true", check=False)
        server.shutdown()
