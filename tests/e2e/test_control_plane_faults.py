"""Faults of the control plane itself, injected for real: the apiserver restarted in the
middle of a deployment, etcd restarted and stalled, a deletion hidden in a watch gap, and
a watch connection that silently stops delivering."""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from edgeplane.localstack import procs
from edgeplane.localstack.cluster import Cluster
from edgeplane.localstack.stack import Operator, Stack
from tests.e2e.conftest import (
    Kube,
    eventually,
    fetch,
    host_claim,
    responder,
    route,
    worker,
)
from tests.relay import Relay

pytestmark = pytest.mark.integration


def host(kube: Kube, name: str) -> str:
    return f"{name}.{kube.namespace}.example.com"


def answers(stack: Stack, kube: Kube, name: str) -> list[tuple[int, str]]:
    return [fetch(a, host(kube, name)) for a in stack.agents]


def served_everywhere(stack: Stack, kube: Kube, name: str, text: str) -> bool:
    got = answers(stack, kube, name)
    assert got == [(200, text)] * len(stack.agents), got
    return True


def ready_and_true(stack: Stack, kube: Kube, name: str, text: str, generation: int) -> None:
    """Ready at the generation, 3/3, and what status says is what the locations answer."""
    obj = kube.wait_ready(name, generation=generation, timeout=120)
    eventually(lambda: served_everywhere(stack, kube, name, text), timeout=60)
    status = obj["status"]
    assert status["readyTargets"] == "3/3"
    assert status["readyVersion"] == status["latestVersion"]
    assert {t["name"]: t["state"] for t in status["targets"]} == {
        a.name: "Ready" for a in stack.agents
    }


def operator_process(stack: Stack) -> int:
    """The operator's pid; it is still running."""
    assert stack.operator is not None and stack.operator.proc is not None
    assert stack.operator.proc.popen.poll() is None, "the operator exited"
    return stack.operator.proc.popen.pid


@contextmanager
def operator_stopped(stack: Stack) -> Iterator[None]:
    """SIGSTOP the operator: its connections stay open and it reads none of them."""
    assert stack.operator is not None and stack.operator.proc is not None
    pid = stack.operator.proc.popen.pid
    procs.signal_group(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        procs.signal_group(pid, signal.SIGCONT)


def compact_etcd(cluster: Cluster) -> int:
    """Compact etcd's history up to now (what the apiserver does every 5 minutes): a watch
    can no longer resume from before it. Returns the revision compacted at."""
    url = next(a.split("=", 1)[1] for a in cluster.proc("etcd").popen.args
               if str(a).startswith("--listen-client-url="))

    def call(path: str, body: dict[str, object]) -> dict[str, object]:
        req = urllib.request.Request(f"{url}/v3/{path}", json.dumps(body).encode())
        with urllib.request.urlopen(req, timeout=30) as resp:
            return dict(json.loads(resp.read()))

    header = call("kv/range", {"key": "AA=="})["header"]
    revision = int(header["revision"])  # type: ignore[index]
    call("kv/compaction", {"revision": str(revision), "physical": True})
    return revision


GAP_TARGET = "gap-nowhere"
# The test's Workers leave GAP_TARGET (nobody answers there) alone.
NOT_NOWHERE = {"matchExpressions": [
    {"key": "edgeplane.io/region", "operator": "NotIn", "values": ["nowhere"]}]}


def samples(url: str, metric_name: str) -> list[str]:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return [line for line in resp.read().decode().splitlines()
                if line.startswith(metric_name + "{")]


def test_objects_deleted_during_a_watch_gap_are_forgotten(stack: Stack, kube: Kube) -> None:
    """A WorkerRoute, a HostClaim, a Secret and an EdgeTarget deleted while the operator's
    watches are down: once they relist, none of them is acted on any more."""
    cluster, op = stack.cluster, stack.operator
    assert cluster is not None and op is not None
    ns = kube.namespace
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "gap-secret"},
              "stringData": {"token": "gap-token-value"}}
    kube.apply(
        secret,
        worker("gap", responder('"gap"'), targets=NOT_NOWHERE),
        worker("gap-src", responder("env.TOKEN"), targets=NOT_NOWHERE, bindings=[
            {"name": "TOKEN", "secretKeyRef": {"name": "gap-secret", "key": "token"}}]),
        route("gap-a", f"{host(kube, 'gap-a')}/*", "gap"),
        route("gap-b", f"{host(kube, 'gap-b')}/*", "gap"),
        route("gap-c", f"c.{ns}.gap-claim.test/*", "gap"),
        route("gap-src", f"{host(kube, 'gap-src')}/*", "gap-src"),
    )
    claim = host_claim(f"gap-{ns}", ns, f"*.{ns}.gap-claim.test")
    target = {
        "apiVersion": "edgeplane.io/v1alpha1", "kind": "EdgeTarget",
        "metadata": {"name": GAP_TARGET, "labels": {"edgeplane.io/region": "nowhere"}},
        "spec": {"endpoint": "http://127.0.0.1:9", "credentialsSecretRef": {
            "namespace": "edgeplane-system", "name": "edge-edge-1-token", "key": "token"}},
    }
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump_all([claim, target]))
    restart_operator = True
    operator_pid = operator_process(stack)
    try:
        kube.wait_ready("gap", timeout=120)
        kube.wait_ready("gap-src", timeout=120)
        for name, text in (("gap-a", "gap"), ("gap-b", "gap"), ("gap-src", "gap-token-value")):
            eventually(lambda n=name, t=text: served_everywhere(stack, kube, n, t))
        eventually(lambda: [fetch(a, f"c.{ns}.gap-claim.test") for a in stack.agents]
                   == [(200, "gap")] * 3)
        eventually(lambda: samples(op.metrics_url, "edgeplane_target_up")
                   and any(GAP_TARGET in x for x in samples(op.metrics_url, "edgeplane_target_up")))

        with operator_stopped(stack):
            # Its watches end first (a stopped process still receives into its sockets: an
            # event sent on a live watch would be read on resume).
            cluster.restart("kube-apiserver")
            kube.delete("workerroute", "gap-a")
            kube.delete("secret", "gap-secret")
            cluster.kubectl("delete", "hostclaim", claim["metadata"]["name"], "--wait=true")
            cluster.kubectl("delete", "edgetarget", GAP_TARGET, "--wait=true")
            # With the history compacted past the deletions and the apiserver's watch cache
            # gone with its process, the operator's watches cannot resume: they get 410 Gone
            # and list again, and a list has no DELETED events.
            compact_etcd(cluster)
            cluster.restart("kube-apiserver")
        started = time.monotonic()

        def forgotten() -> dict[str, object]:
            codes = {
                "route": [c for c, _ in answers(stack, kube, "gap-a")],
                "claim": [fetch(a, f"c.{ns}.gap-claim.test")[0] for a in stack.agents],
            }
            stalled = kube.condition("worker", "gap-src", "Stalled") or {}
            up = [x for x in samples(op.metrics_url, "edgeplane_target_up") if GAP_TARGET in x]
            state = {
                **{k: v == [404] * 3 for k, v in codes.items()},
                "secret": stalled.get("reason") == "SourceNotFound",
                "target": not up,
            }
            assert all(state.values()), (state, codes, stalled, up)
            return state

        eventually(forgotten, timeout=60)
        print(f"deletions in the watch gap acted on {time.monotonic() - started:.1f}s after "
              "the operator resumed")
        assert answers(stack, kube, "gap-b") == [(200, "gap")] * 3
        assert operator_process(stack) == operator_pid  # no restart did it
        restart_operator = False
    finally:
        cluster.kubectl("delete", "hostclaim", claim["metadata"]["name"], "--ignore-not-found",
                        check=False)
        cluster.kubectl("delete", "edgetarget", GAP_TARGET, "--ignore-not-found", check=False)
        if restart_operator:  # its caches may hold what was deleted: not for the next test
            op.stop()
            op.start()


@contextmanager
def deploying(stack: Stack, kube: Kube, name: str, text: str) -> Iterator[None]:
    """Apply a new version and enter while it is surely being deployed: the last location
    holds its push (a stopped agent accepts the connection and answers nothing) after the
    others serve it; that location is let go on leaving."""
    held = stack.agents[-1]
    assert held.proc is not None
    os.kill(held.proc.popen.pid, signal.SIGSTOP)
    try:
        kube.apply(worker(name, responder(f'"{text}"')))
        eventually(lambda: [fetch(a, host(kube, name)) for a in stack.agents[:-1]]
                   == [(200, text)] * (len(stack.agents) - 1), timeout=60)
        yield
    finally:
        os.kill(held.proc.popen.pid, signal.SIGCONT)


def test_apiserver_restart_in_the_middle_of_a_deployment(stack: Stack, kube: Kube) -> None:
    assert stack.cluster is not None
    kube.apply(worker("mid", responder('"v1"')), route("mid", f"{host(kube, 'mid')}/*", "mid"))
    ready_and_true(stack, kube, "mid", "v1", 1)
    operator_pid = operator_process(stack)
    with deploying(stack, kube, "mid", "v2"):
        stack.cluster.restart("kube-apiserver", down_for=3)
    ready_and_true(stack, kube, "mid", "v2", 2)
    assert operator_process(stack) == operator_pid  # recovered, not restarted


def test_etcd_restart_and_stall(stack: Stack, kube: Kube) -> None:
    cluster = stack.cluster
    assert cluster is not None
    kube.apply(worker("etcd", responder('"v1"')), route("etcd", f"{host(kube, 'etcd')}/*", "etcd"))
    ready_and_true(stack, kube, "etcd", "v1", 1)
    operator_pid = operator_process(stack)

    with deploying(stack, kube, "etcd", "v2"):
        cluster.restart("etcd", down_for=3)
    ready_and_true(stack, kube, "etcd", "v2", 2)

    with deploying(stack, kube, "etcd", "v3"):
        cluster.pause("etcd")  # a stall: every write and quorum read hangs, nothing closes
    # The held location answers now, and the operator's status write meets the stall.
    try:
        time.sleep(15)
    finally:
        cluster.resume("etcd")
    cluster.wait_ready()
    ready_and_true(stack, kube, "etcd", "v3", 3)
    # And later changes deploy, without an operator restart.
    kube.apply(worker("etcd", responder('"v4"')))
    ready_and_true(stack, kube, "etcd", "v4", 4)
    assert operator_process(stack) == operator_pid


WATCH_IDLE_TIMEOUT = 15.0


def relayed_kubeconfig(cluster: Cluster, relay: Relay, path: Path) -> Path:
    """The cluster's kubeconfig with the apiserver reached through the relay (its
    certificate names 127.0.0.1, so TLS verifies as before)."""
    cfg = yaml.safe_load(cluster.kubeconfig.read_text())
    for c in cfg["clusters"]:
        c["cluster"]["server"] = f"https://127.0.0.1:{relay.port}"
    path.write_text(yaml.safe_dump(cfg))
    path.chmod(0o600)
    return path


def test_a_watch_that_silently_stops_delivering_is_noticed_within_its_bound(
    stack: Stack, kube: Kube, tmp_path: Path
) -> None:
    cluster, shared = stack.cluster, stack.operator
    assert cluster is not None and shared is not None
    server = urlsplit(yaml.safe_load(cluster.kubeconfig.read_text())
                      ["clusters"][0]["cluster"]["server"])
    assert server.hostname and server.port
    relay = Relay((server.hostname, server.port))
    op = Operator(
        tmp_path, relayed_kubeconfig(cluster, relay, tmp_path / "kubeconfig"),
        extra_args=("--signing-key-file", str(stack.root / "signing-key"),
                    "--watch-idle-timeout", str(WATCH_IDLE_TIMEOUT)),
    )
    shared.stop()  # one operator at a time: this one talks through the relay
    try:
        op.start()
        kube.apply(worker("quiet", responder('"v1"')),
                   route("quiet", f"{host(kube, 'quiet')}/*", "quiet"))
        ready_and_true(stack, kube, "quiet", "v1", 1)

        frozen = relay.freeze()
        assert frozen >= 6, frozen  # the watches at least: 4 kinds, ConfigMaps, Secrets
        started = time.monotonic()
        kube.apply(worker("quiet", responder('"v2"')))
        ready_and_true(stack, kube, "quiet", "v2", 2)
        took = time.monotonic() - started
        print(f"{frozen} connections frozen; v2 Ready and served after {took:.1f}s "
              f"(watch idle timeout {WATCH_IDLE_TIMEOUT:g}s)")
        # Noticed by the idle bound, not by the watch's own end (300 s) or a restart.
        assert took < WATCH_IDLE_TIMEOUT + 30, took
        assert op.proc is not None and op.proc.popen.poll() is None
    finally:
        op.stop()
        relay.close()
        shared.ensure_started()
