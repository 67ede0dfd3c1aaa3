"""The whole stack for end-to-end tests: three edge locations (agent + workerd each) and
the operator as a real process, around the session's control plane."""

from __future__ import annotations

import contextlib
import json
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import yaml

from edgeplane.localstack.cluster import REPO, Cluster
from edgeplane.localstack.stack import Agent, Stack
from edgeplane.localstack.traffic import eventually


# Package scope: the operator and agents stop when the e2e tests are done, so that the
# integration tests after them never run beside an operator reconciling every namespace.
@pytest.fixture(scope="package")
def stack(cluster: Cluster) -> Iterator[Stack]:
    s = Stack(REPO / ".state" / f"e2e-{os.getpid()}", agent_count=3, cluster=cluster)
    s.up()
    try:
        yield s
    finally:
        s.down()


@pytest.fixture(autouse=True)
def stack_restored(request: pytest.FixtureRequest) -> Iterator[None]:
    """A test that stops or kills the shared operator or an agent and fails before it
    starts them again leaves them started for the next test: its failure stays its own."""
    yield
    if "stack" not in request.fixturenames:
        return
    s: Stack = request.getfixturevalue("stack")
    for agent in s.agents:
        agent.ensure_started()
    if s.operator is not None:
        s.operator.ensure_started()


@contextlib.contextmanager
def operator_with(stack: Stack, *args: str) -> Iterator[None]:
    """The shared operator restarted with `args` beside its own; restored after."""
    op = stack.operator
    assert op is not None
    shared = op.extra_args
    op.stop()
    op.extra_args = (*shared, *args)
    try:
        op.start()
        yield
    finally:
        op.stop()
        op.extra_args = shared
        op.start()


def fetch(agent: Agent, host: str, path: str = "/", headers: dict[str, str] | None = None
          ) -> tuple[int, str]:
    return agent.fetch(host, path, headers)


def metric(url: str, metric_name: str, token: str | None = None, **labels: str) -> float:
    """Sum of the samples of one Prometheus metric whose labels include `labels`."""
    req = urllib.request.Request(url)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, timeout=10) as resp:
        text = resp.read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(metric_name):
            continue
        head, _, value = line.rpartition(" ")
        sample, _, label_text = head.partition("{")
        if sample != metric_name:
            continue
        if all(f'{k}="{v}"' in label_text for k, v in labels.items()):
            total += float(value)
    return total


@dataclass
class Kube:
    """kubectl in one test namespace."""

    cluster: Cluster
    namespace: str

    def apply(self, *docs: dict[str, Any]) -> None:
        # Server-side apply, as GitOps tools do: no last-applied annotation to overflow.
        # JSON documents: PyYAML leaves a string such as a version id "21014922e5" unquoted,
        # and kubectl's YAML 1.2 reads that back as a number.
        self.cluster.kubectl("apply", "--server-side", "--force-conflicts",
                             "-n", self.namespace, "-f", "-",
                             input="\n---\n".join(json.dumps(d) for d in docs))

    def get(self, kind: str, name: str) -> dict[str, Any] | None:
        res = self.cluster.kubectl("get", "-n", self.namespace, kind, name, "-o", "json",
                                   check=False)
        return json.loads(res.stdout) if res.returncode == 0 else None

    def list(self, kind: str) -> list[dict[str, Any]]:
        res = self.cluster.kubectl("get", "-n", self.namespace, kind, "-o", "json")
        return list(json.loads(res.stdout)["items"])

    def delete(self, kind: str, name: str, wait: bool = True) -> None:
        self.cluster.kubectl("delete", "-n", self.namespace, kind, name,
                             f"--wait={str(wait).lower()}", "--timeout=90s")

    def condition(self, kind: str, name: str, type_: str) -> dict[str, Any] | None:
        obj = self.get(kind, name)
        for c in ((obj or {}).get("status") or {}).get("conditions", []):
            if c["type"] == type_:
                return dict(c)
        return None

    def wait_ready(self, name: str, generation: int | None = None, timeout: float = 60) -> dict:
        def ready() -> dict[str, Any] | None:
            obj = self.get("worker", name)
            status = (obj or {}).get("status") or {}
            if generation is not None and status.get("observedGeneration") != generation:
                return None
            cond = next((c for c in status.get("conditions", []) if c["type"] == "Ready"), None)
            return obj if cond and cond["status"] == "True" else None

        return eventually(ready, timeout)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture
def kube(stack: Stack, namespace: str, request: pytest.FixtureRequest) -> Iterator[Kube]:
    assert stack.cluster is not None
    # No claim, no route: the test namespace may route its own hosts and the imported
    # projects' (as a platform team would grant them).
    claim = host_claim(f"test-{namespace}", namespace,
                       f"*.{namespace}.example.com", "*.wrangler-import.test")
    stack.cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(claim))
    yield Kube(stack.cluster, namespace)
    stack.cluster.kubectl("delete", "hostclaim", claim["metadata"]["name"], "--wait=false",
                          "--ignore-not-found", check=False)
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed and stack.operator and stack.operator.proc:
        # The operator runs as another process: show what it said around the failure.
        print(f"--- operator log ---\n{stack.operator.proc.log_tail(60)}")
        print(stack.cluster.kubectl("get", "-n", namespace, "workers", "-o", "yaml").stdout)


def worker(name: str, script: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "edgeplane.io/v1alpha1",
        "kind": "Worker",
        "metadata": {"name": name},
        "spec": {
            "compatibilityDate": "2025-01-01",
            "modules": [{"name": "index.js", "inline": script}],
            **spec,
        },
    }


def host_claim(name: str, namespace: str, *hosts: str) -> dict[str, Any]:
    return {
        "apiVersion": "edgeplane.io/v1alpha1",
        "kind": "HostClaim",
        "metadata": {"name": name},
        "spec": {"hosts": list(hosts), "namespaces": [namespace]},
    }


def route(name: str, pattern: str, worker_name: str) -> dict[str, Any]:
    return {
        "apiVersion": "edgeplane.io/v1alpha1",
        "kind": "WorkerRoute",
        "metadata": {"name": name},
        "spec": {"pattern": pattern, "worker": worker_name},
    }


def responder(text_expr: str) -> str:
    """An ES module Worker answering with the JavaScript expression `text_expr`."""
    return (
        "export default { async fetch(request, env) { "
        f"return new Response({text_expr}); }} }};\n"
    )
