"""`edgeplane tail` on the real stack, driven like a user: the CLI (a subprocess, with a
ServiceAccount token kubeconfig) streams a Worker's console lines and exceptions from two
locations within 2 s through the operator's endpoint, with secret values redacted; a user
the cluster does not let `get` the Worker is refused, and told so."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edgeplane.localstack.cluster import REPO
from edgeplane.localstack.stack import Stack, TailEndpoint
from tests.e2e.conftest import Kube, eventually, fetch, route, worker
from tests.e2e.test_rbac import token_kubeconfig

pytestmark = pytest.mark.integration

# The CLI's environment: this checkout's package, no kubeconfig but the one it is given.
ENV = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"} | {
    "PYTHONPATH": str(REPO / "operator")
}
SECRET = "tail-e2e-s3cret-7c1d"
SCRIPT = """
export default {
  async fetch(request, env) {
    const path = new URL(request.url).pathname;
    console.log("tail-e2e", path, env.TOKEN);
    if (path === "/boom") throw new Error("tail-e2e kaboom");
    return new Response("ok");
  },
};
"""


def sa_kubeconfig(kube: Kube, name: str, may_get: bool, root: Path) -> Path:
    """A kubeconfig with only the token of ServiceAccount `name`, which may `get` the
    Worker `tailed` (a Role and RoleBinding) or not."""
    ns = kube.namespace
    docs: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name}}
    ]
    if may_get:
        docs += [
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
             "metadata": {"name": name},
             "rules": [{"apiGroups": ["edgeplane.io"], "resources": ["workers"],
                        "resourceNames": ["tailed"], "verbs": ["get"]}]},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
             "metadata": {"name": name},
             "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
             "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": ns}]},
        ]
    kube.apply(*docs)
    token = kube.cluster.kubectl("create", "token", name, "-n", ns, "--duration=1h").stdout
    return token_kubeconfig(kube.cluster, token.strip(), root / f"{name}.kubeconfig")


def tail_cli(endpoint: TailEndpoint, kubeconfig: Path, *args: str) -> list[str]:
    return [
        sys.executable, "-m", "edgeplane.cli", "tail", *args,
        "--endpoint", endpoint.url, "--ca-file", str(endpoint.ca),
        "--kubeconfig", str(kubeconfig),
    ]


class Lines:
    """A running `edgeplane tail`: its stdout lines as they come, read by a thread."""

    def __init__(self, cmd: list[str]) -> None:
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
            env=ENV,
        )
        self.q: queue.Queue[tuple[float, str]] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.q.put((time.monotonic(), line))

    def next(self, timeout: float) -> tuple[float, dict[str, Any]]:
        try:
            at, line = self.q.get(timeout=timeout)
        except queue.Empty:
            err = self.proc.stderr.read() if self.proc.poll() is not None else ""  # type: ignore[union-attr]
            code = self.proc.poll()
            raise AssertionError(f"no line within {timeout}s; exited {code}: {err}") from None
        return at, json.loads(line)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


@pytest.fixture
def tailed(stack: Stack, kube: Kube) -> Iterator[str]:
    host = f"tail.{kube.namespace}.example.com"
    kube.apply(
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "tail-secret"},
         "stringData": {"token": SECRET}},
        worker("tailed", SCRIPT, bindings=[
            {"name": "TOKEN", "secretKeyRef": {"name": "tail-secret", "key": "token"}}]),
        route("tailed", f"{host}/*", "tailed"),
    )
    kube.wait_ready("tailed", timeout=90)
    eventually(lambda: all(fetch(a, host, "/warm")[0] == 200 for a in stack.agents))
    yield host


def start_tail(
    stack: Stack, kubeconfig: Path, ns: str, *args: str, locations: int = 0
) -> Lines:
    """`edgeplane tail` once the operator knows where the Worker runs (its inventory of
    each location is refreshed by the health checks): at `locations` (default: all)."""
    assert stack.operator is not None and stack.operator.tail is not None
    cmd = tail_cli(
        stack.operator.tail, kubeconfig, "tailed", "-n", ns, "--format", "json", *args
    )
    deadline = time.monotonic() + 30
    while True:
        lines = Lines(cmd)
        try:
            _, first = lines.next(20)
        except AssertionError:
            lines.stop()
            if time.monotonic() > deadline:
                raise
            continue
        assert first["type"] == "ready", first
        if len(first["locations"]) == (locations or len(stack.agents)):
            return lines
        lines.stop()


def test_tail_streams_logs_and_exceptions_from_two_locations(
    stack: Stack, kube: Kube, tailed: str, tmp_path: Path
) -> None:
    reader = sa_kubeconfig(kube, "tail-reader", True, tmp_path)
    lines = start_tail(stack, reader, kube.namespace)
    try:
        sent: dict[str, float] = {}
        for agent in stack.agents[:2]:
            status, _ = fetch(agent, tailed, "/boom")
            assert status == 500
            sent[agent.name] = time.monotonic()
        seen: dict[str, dict[str, Any]] = {}
        while len(seen) < 2:
            at, line = lines.next(5)
            if line["type"] != "event" or line["request"]["url"] != f"http://{tailed}/boom":
                continue
            where = line["location"]
            seen[where] = line
            assert at - sent[where] < 2.0, (where, at - sent[where])
    finally:
        lines.stop()
    assert set(seen) == {a.name for a in stack.agents[:2]}
    for line in seen.values():
        assert line["logs"][0]["message"] == ["tail-e2e", "/boom", "[redacted]"]
        (exc,) = line["exceptions"]
        assert exc["message"] == "tail-e2e kaboom" and "at " in exc["stack"]
    assert SECRET not in json.dumps(seen)


def test_tail_refuses_a_user_who_may_not_get_the_worker(
    stack: Stack, kube: Kube, tailed: str, tmp_path: Path
) -> None:
    assert stack.operator is not None and stack.operator.tail is not None
    nobody = sa_kubeconfig(kube, "tail-nobody", False, tmp_path)
    cmd = tail_cli(stack.operator.tail, nobody, "tailed", "-n", kube.namespace)
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=REPO,
                         env=ENV)
    assert res.returncode != 0
    user = f"system:serviceaccount:{kube.namespace}:tail-nobody"
    assert f'refused (403): {user} may not get workers.edgeplane.io "tailed"' in res.stderr
    assert "needs the get verb" in res.stderr
    assert res.stdout == ""
    # A token the cluster does not accept gets no further either.
    bogus = token_kubeconfig(kube.cluster, "not-a-token", tmp_path / "bogus.kubeconfig")
    cmd = tail_cli(stack.operator.tail, bogus, "tailed", "-n", kube.namespace)
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=REPO,
                         env=ENV)
    assert "refused (401): the cluster did not accept the token" in res.stderr


def test_tail_takes_a_client_certificate_kubeconfig(
    stack: Stack, kube: Kube, tailed: str
) -> None:
    """The cluster admin's kubeconfig has a client certificate (O=system:masters), no token:
    the endpoint trusts the cluster's client CA, reads the user from the certificate and
    asks the same SubjectAccessReview."""
    assert stack.cluster is not None
    lines = start_tail(stack, stack.cluster.kubeconfig, kube.namespace)
    try:
        fetch(stack.agents[2], tailed, "/boom")
        while True:
            _, line = lines.next(5)
            if line["type"] == "event":
                break
    finally:
        lines.stop()
    assert line["location"] == stack.agents[2].name
    assert line["exceptions"][0]["message"] == "tail-e2e kaboom"


def test_a_revoked_right_ends_the_stream(
    stack: Stack, kube: Kube, tailed: str, tmp_path: Path
) -> None:
    """The operator proves a streaming caller again every --tail-review-interval (3 s in the
    local stack): once the RoleBinding is gone, the stream ends, saying why."""
    reader = sa_kubeconfig(kube, "tail-revoked", True, tmp_path)
    lines = start_tail(stack, reader, kube.namespace)
    try:
        kube.cluster.kubectl("delete", "rolebinding", "tail-revoked", "-n", kube.namespace)
        revoked = time.monotonic()
        while True:
            at, line = lines.next(15)
            if line["type"] == "end":
                break
        assert "access ended: system:serviceaccount" in line["error"]
        assert "may not get workers.edgeplane.io" in line["error"]
        assert at - revoked < 10
        assert lines.proc.wait(10) != 0  # the CLI ends with the stream
    finally:
        lines.stop()


def test_a_location_restarting_mid_tail_comes_back(
    stack: Stack, kube: Kube, tailed: str, tmp_path: Path
) -> None:
    """SIGKILL one location's whole agent and workerds, then start it again: the stream
    says the location's stream was lost, opens it again, and its events arrive again;
    the other locations' never stopped."""
    reader = sa_kubeconfig(kube, "tail-restart", True, tmp_path)
    lines = start_tail(stack, reader, kube.namespace)
    edge = stack.agents[1]
    try:
        edge.kill()
        edge.start()
        eventually(lambda: fetch(edge, tailed, "/warm")[0] == 200, 60)
        errors: set[str] = set()
        got: set[str] = set()
        deadline = time.monotonic() + 60
        while edge.name not in got and time.monotonic() < deadline:
            for agent in (stack.agents[0], edge):
                fetch(agent, tailed, "/after")
            _, line = lines.next(10)
            if line["type"] == "error":
                errors.add(line["location"])
            elif line["type"] == "event" and line["request"]["url"].endswith("/after"):
                got.add(line["location"])
    finally:
        lines.stop()
    assert edge.name in errors
    assert got == {stack.agents[0].name, edge.name}


def test_location_status_and_search_filter(
    stack: Stack, kube: Kube, tailed: str, tmp_path: Path
) -> None:
    """--location, --status error and --search go to the locations as parameters: only the
    failed request at that location, whose exception matches, comes through."""
    reader = sa_kubeconfig(kube, "tail-filter", True, tmp_path)
    here, there = stack.agents[0], stack.agents[1]
    args = ("--location", here.name, "--status", "error", "--search", "KABOOM")
    lines = start_tail(stack, reader, kube.namespace, *args, locations=1)
    try:
        fetch(there, tailed, "/boom")  # another location
        fetch(here, tailed, "/fine")  # not an error
        fetch(here, tailed, "/boom")
        while True:
            _, line = lines.next(5)
            if line["type"] == "event":
                break
    finally:
        lines.stop()
    assert (line["location"], line["request"]["url"]) == (here.name, f"http://{tailed}/boom")
    # A location the Worker does not run at is refused by name.
    assert stack.operator is not None and stack.operator.tail is not None
    cmd = tail_cli(stack.operator.tail, reader, "tailed", "-n", kube.namespace,
                   "--location", "nowhere")
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=REPO, env=ENV)
    assert "refused (404)" in res.stderr and "does not run at location nowhere" in res.stderr


def test_a_location_the_worker_reaches_later_joins_the_stream(
    stack: Stack, kube: Kube, tmp_path: Path
) -> None:
    """The Worker runs at one location when the tail starts; once its targets take in a
    second, that location's events come through the same stream, announced."""
    first, later = stack.agents[0], stack.agents[1]
    host = f"tail.{kube.namespace}.example.com"
    spec: dict[str, Any] = {"targets": {"matchLabels": {"edgeplane.io/region": first.region}}}
    kube.apply(worker("tailed", SCRIPT, **spec), route("tailed", f"{host}/*", "tailed"))
    kube.wait_ready("tailed", generation=1, timeout=90)
    reader = sa_kubeconfig(kube, "tail-follow", True, tmp_path)
    lines = start_tail(stack, reader, kube.namespace, locations=1)
    try:
        everywhere = {"matchExpressions": [
            {"key": "edgeplane.io/region", "operator": "Exists"}]}
        kube.apply(worker("tailed", SCRIPT, targets=everywhere))
        kube.wait_ready("tailed", generation=2, timeout=90)
        announced = False
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            fetch(later, host, "/later")
            try:
                _, line = lines.next(3)
            except AssertionError:  # nothing yet: the operator looks every 3 s
                continue
            announced |= line == {"type": "location", "location": later.name}
            if line["type"] == "event" and line["location"] == later.name:
                break
        else:
            raise AssertionError("no event from the location the Worker reached later")
    finally:
        lines.stop()
    assert announced
    assert line["request"]["url"] == f"http://{host}/later"
