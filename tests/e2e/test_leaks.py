"""Secrets never leave: a Worker's Secret holds a canary value, every path that produces
text is driven (a runtime exception, a workerd crash and restart, a failing probe that
rolls a version back, a startup failure, an import), then everything a person or a tool
can read is searched for the canary: operator and agent logs, metrics, Events, every
status, WorkerVersions and ConfigMaps, and the agents' files outside their stores."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
import uuid
from pathlib import Path

import pytest

from edgeplane.localstack.stack import Stack
from tests.e2e.conftest import Kube, eventually, fetch, route, worker

pytestmark = pytest.mark.integration

LEAKY = """export default { async fetch(request, env) {
  const url = new URL(request.url);
  console.log("serving with " + env.SECRET);
  if (url.pathname === "/throw") throw new Error("leaking " + env.SECRET);
  if (url.pathname === "/healthz") return new Response("sick " + env.SECRET, { status: 500 });
  return new Response("ok");
} };
"""


def leaky(version: str, **spec: object) -> dict:
    doc = worker("leaky", LEAKY.replace("ok", f"ok {version}"), **spec)
    doc["spec"]["bindings"] = [
        {"name": "SECRET", "secretKeyRef": {"name": "canary", "key": "value"}}
    ]
    return doc


def read_everything(stack: Stack, kube: Kube) -> dict[str, str]:
    """Where to look -> what is there, as text."""
    assert stack.cluster is not None and stack.operator is not None
    kubectl = stack.cluster.kubectl
    out = {str(p): p.read_text(errors="replace") for p in (stack.root / "logs").glob("*.log")}
    for kind in ("workers", "workerroutes", "workerversions", "configmaps", "events"):
        out[f"kubectl get {kind}"] = kubectl("get", kind, "-n", kube.namespace, "-o", "json").stdout
    out["edgetargets"] = kubectl("get", "edgetargets", "-o", "json").stdout
    out["operator /metrics"] = urllib.request.urlopen(stack.operator.metrics_url).read().decode()
    for agent in stack.agents:
        req = urllib.request.Request(f"{agent.api_url}/metrics",
                                     headers={"Authorization": f"Bearer {agent.token}"})
        out[f"{agent.name} /metrics"] = urllib.request.urlopen(req).read().decode()
        for path in (agent.state_dir / "state").rglob("*"):
            # The store holds accepted deployments and the code files the cells load, secrets
            # included, by design (0600).
            parts = path.relative_to(agent.state_dir).parts
            if path.is_file() and "deployments" not in parts and "code" not in parts:
                out[str(path)] = path.read_bytes().decode(errors="replace")
    return out


def test_a_canary_secret_appears_nowhere(stack: Stack, kube: Kube, tmp_path: Path) -> None:
    canary = f"canary-{uuid.uuid4().hex}"
    kube.cluster.kubectl("create", "secret", "generic", "canary", "-n", kube.namespace,
                         f"--from-literal=value={canary}")
    host = f"leaky.{kube.namespace}.example.com"
    kube.apply(leaky("v1"), route("leaky", f"{host}/*", "leaky"))
    v1 = kube.wait_ready("leaky")["status"]["readyVersion"]
    eventually(lambda: all(fetch(a, host) == (200, "ok v1") for a in stack.agents))

    # A runtime exception whose message holds the secret, at every location.
    for agent in stack.agents:
        assert fetch(agent, host, "/throw")[0] == 500
    # A workerd crash: the agent reports the stderr tail (which holds that exception).
    crashed = stack.agents[0]
    assert crashed.proc is not None
    children = Path(f"/proc/{crashed.proc.popen.pid}/task/{crashed.proc.popen.pid}/children")
    for pid in children.read_text().split():
        os.kill(int(pid), signal.SIGKILL)
    eventually(lambda: fetch(crashed, host) == (200, "ok v1"))

    # A probe whose failing answer holds the secret: the version rolls back.
    gate = {"probe": {"path": "/healthz", "bodyContains": "ok"}}
    kube.apply(leaky("v2", rollout={"strategy": "Progressive",
                                    "steps": [{"count": 1, "gate": gate}]}))
    cond = eventually(lambda: (kube.condition("worker", "leaky", "Ready") or {}).get("reason")
                      == "RolledBack" and kube.condition("worker", "leaky", "Ready"), timeout=90)
    assert "[redacted]" in cond["message"], cond["message"]  # the probe's answer, redacted

    # A startup failure.
    broken = leaky("v3")
    broken["spec"]["modules"][0]["inline"] = "export default { fetch( {"
    broken["spec"].pop("rollout", None)
    kube.apply(broken)
    eventually(lambda: (kube.condition("worker", "leaky", "Ready") or {}).get("reason")
               == "ScriptInvalid", timeout=60)
    assert all(fetch(a, host) == (200, "ok v1") for a in stack.agents)  # v1 serves on

    # An import of a project whose .dev.vars holds the value.
    project = tmp_path / "proj"
    project.mkdir()
    (project / "wrangler.toml").write_text(
        'name = "leaky"\nmain = "index.js"\ncompatibility_date = "2025-01-01"\n')
    (project / "index.js").write_text("export default { fetch() { return new Response('x') } }")
    (project / ".dev.vars").write_text(f"SECRET={canary}\n")
    imported = subprocess.run([sys.executable, "-m", "edgeplane.cli", "import", str(project)],
                              capture_output=True, text=True, timeout=60)
    assert imported.returncode == 0, imported.stderr
    assert "SECRET" in imported.stdout  # the name is there, for the kubectl hint

    found = {where: text for where, text in read_everything(stack, kube).items()
             if canary in text}
    found["edgeplane import"] = imported.stdout + imported.stderr
    leaks = {where: text.count(canary) for where, text in found.items() if canary in text}
    assert leaks == {}, f"the canary leaked into: {json.dumps(leaks, indent=1)}"
    # The scan can fail: a canary planted where it looks is found there.
    assert v1 in read_everything(stack, kube)["kubectl get workerversions"]
    kube.apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "planted"},
                "data": {"x": canary}})
    planted = [w for w, text in read_everything(stack, kube).items() if canary in text]
    assert planted == ["kubectl get configmaps"]
