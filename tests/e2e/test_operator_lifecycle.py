"""Operator behaviour across restarts, drift, routes and metrics (real stack)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from typing import Any

import pytest

from edgeplane.localstack.cluster import REPO
from edgeplane.localstack.stack import Stack
from tests.e2e.conftest import Kube, eventually, fetch, metric, responder, route, worker

pytestmark = pytest.mark.integration


def test_route_conflict_is_reported_on_both_routes_and_served_by_neither(
    stack: Stack, kube: Kube
) -> None:
    pattern = f"clash.{kube.namespace}.example.com/*"
    kube.apply(
        worker("one", responder('"one"')), worker("two", responder('"two"')),
        route("first", pattern, "one"), route("second", pattern, "two"),
    )
    for name, other in (("first", "second"), ("second", "first")):
        cond = eventually(lambda n=name: (kube.condition("workerroute", n, "Ready") or {})
                          .get("reason") == "RouteConflict"
                          and kube.condition("workerroute", n, "Ready"))
        assert cond["status"] == "False"
        assert f"{kube.namespace}/{other}" in cond["message"]
    kube.wait_ready("one")
    kube.wait_ready("two")
    host = f"clash.{kube.namespace}.example.com"
    # Whichever route came first may have been served until the second one appeared.
    eventually(lambda: all(fetch(a, host)[0] == 404 for a in stack.agents))
    # Resolving the conflict lets the remaining route serve.
    kube.delete("workerroute", "second")
    eventually(lambda: all(fetch(a, host) == (200, "one") for a in stack.agents))
    eventually(lambda: (kube.condition("workerroute", "first", "Ready") or {})
               .get("status") == "True")


def test_a_location_that_lost_its_state_is_refilled(stack: Stack, kube: Kube) -> None:
    kube.apply(worker("durable", responder('"still here"')),
               route("durable", f"durable.{kube.namespace}.example.com/*", "durable"))
    kube.wait_ready("durable")
    lost = stack.agents[1]
    lost.kill()
    shutil.rmtree(lost.state_dir)
    lost.start()
    eventually(lambda: fetch(lost, f"durable.{kube.namespace}.example.com")
               == (200, "still here"), timeout=60)


def test_operator_metrics_use_controller_runtime_names(stack: Stack, kube: Kube) -> None:
    kube.apply(worker("counted", responder('"x"')))
    kube.wait_ready("counted")
    assert stack.operator is not None
    url = stack.operator.metrics_url
    assert metric(url, "edgeplane_reconcile_total", controller="worker", result="success") > 0
    assert metric(url, "edgeplane_reconcile_time_seconds_count", controller="worker") > 0
    assert metric(url, "edgeplane_pushes_total", result="ok") > 0
    assert metric(url, "edgeplane_push_duration_seconds_count") > 0
    assert metric(url, "edgeplane_workers", ready="true") >= 1
    assert metric(url, "edgeplane_workqueue_adds_total", name="worker") > 0
    assert metric(url, "edgeplane_target_up") == len(stack.agents)


def test_restarting_the_operator_with_workers_in_sync_pushes_nothing(
    stack: Stack, kube: Kube
) -> None:
    docs = []
    for i in range(50):
        docs += [worker(f"w{i}", responder(f'"w{i}"')),
                 route(f"w{i}", f"w{i}.{kube.namespace}.example.com/*", f"w{i}")]
    kube.apply(*docs)

    def all_ready() -> bool:
        items = kube.list("workers")
        ready = [w for w in items if any(c["type"] == "Ready" and c["status"] == "True"
                                         for c in (w.get("status") or {}).get("conditions", []))]
        return len(ready) == 50

    eventually(all_ready, timeout=240, interval=1)
    assert stack.operator is not None

    def nothing_being_deleted() -> bool:
        # Earlier tests' namespaces are still going away; their removals are not pushes.
        items = json.loads(kube.cluster.kubectl("get", "workers", "-A", "-o", "json").stdout)
        return not any(w["metadata"].get("deletionTimestamp") for w in items["items"])

    eventually(nothing_being_deleted, timeout=120, interval=1)
    def agent_puts() -> list[float]:
        return [metric(f"{a.api_url}/metrics", "edgeplane_agent_pushes_total", a.token)
                for a in stack.agents]

    puts_before = agent_puts()
    stack.operator.stop()
    stack.operator.start()
    url = stack.operator.metrics_url
    # The new operator has seen and reconciled every Worker, and has nothing queued.
    eventually(lambda: metric(url, "edgeplane_reconcile_total", controller="worker") >= 50
               and metric(url, "edgeplane_workqueue_depth", name="worker") == 0, timeout=120)
    assert metric(url, "edgeplane_pushes_total") == 0
    assert agent_puts() == puts_before
    assert all(fetch(a, f"w7.{kube.namespace}.example.com") == (200, "w7") for a in stack.agents)


def test_the_demo_command_works_headless() -> None:
    state = REPO / ".state" / "demo-test"
    out = subprocess.run(
        [sys.executable, "-m", "edgeplane.cli", "demo", "up", "--exit", "--state-dir", str(state)],
        capture_output=True, text=True, timeout=600,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Hello from the edge!" in out.stdout
    assert "Hello, demo!" in out.stdout
    assert "demo: all answers as expected" in out.stdout
    assert not state.exists()


def test_deleting_a_worker_while_a_location_is_down_completes_and_cleans_up_later(
    stack: Stack, kube: Kube
) -> None:
    host = f"gone.{kube.namespace}.example.com"
    kube.apply(worker("gone", responder('"gone"')), route("gone", f"{host}/*", "gone"))
    kube.wait_ready("gone")
    down = stack.agents[2]
    down.stop()
    try:
        eventually(lambda: (kube.condition("worker", "gone", "Ready") or {}).get("reason")
                   == "TargetUnreachable", timeout=30)
        # The deletion does not wait for the location that is down.
        kube.delete("worker", "gone")
        assert kube.get("worker", "gone") is None
        events = [e for e in kube.list("events")
                  if e["involvedObject"]["name"] == "gone" and e["reason"] == "CleanupDeferred"]
        assert events and down.name in events[0]["message"]
        for a in stack.agents[:2]:
            assert fetch(a, host)[0] == 404
    finally:
        down.start()
    # The agent kept the Worker in its state; its inventory check finds it orphaned.
    eventually(lambda: fetch(down, host)[0] == 404, timeout=90)
    assert stack.operator is not None and stack.operator.proc is not None
    removed = f"removing {kube.namespace}.gone from {down.name}: the Worker no longer exists"
    assert removed in stack.operator.proc.log_tail(200)


def test_a_route_without_a_worker_excludes_its_pattern_at_every_location(
    stack: Stack, kube: Kube
) -> None:
    host = f"site.{kube.namespace}.example.com"
    static = route("static", f"{host}/static/*", "")
    del static["spec"]["worker"]
    kube.apply(worker("site", responder('"site"')), route("site", f"{host}/*", "site"), static)
    kube.wait_ready("site")

    def ready(name: str, reason: str) -> dict[str, Any] | None:
        cond = kube.condition("workerroute", name, "Ready") or {}
        return cond if cond.get("reason") == reason else None

    assert eventually(lambda: ready("static", "Excluded"))["status"] == "True"
    eventually(lambda: all(fetch(a, host, "/static/logo.png")[0] == 404
                           and fetch(a, host, "/") == (200, "site") for a in stack.agents))
    body = fetch(stack.agents[0], host, "/static/logo.png")[1]
    assert f"namespace {kube.namespace} names no Worker" in body
    # A location that is down holds the route back from Ready, by name, until it is back.
    down = stack.agents[2]
    down.kill()
    try:
        robots = route("robots", f"{host}/robots.txt", "")
        del robots["spec"]["worker"]
        kube.apply(robots)
        cond = eventually(lambda: ready("robots", "Excluding"), timeout=60)
        assert cond["status"] == "False" and down.name in cond["message"]
    finally:
        down.start()
    eventually(lambda: ready("robots", "Excluded"), timeout=60)
    eventually(lambda: fetch(down, host, "/robots.txt")[0] == 404)
    # Without the route, the less specific route serves the path again.
    kube.delete("workerroute", "static")
    eventually(lambda: all(fetch(a, host, "/static/logo.png") == (200, "site")
                           for a in stack.agents))
