"""Operator behaviour across restarts, drift, routes and metrics (real stack)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
import yaml

from edgeplane.localstack.cluster import REPO
from edgeplane.localstack.stack import Agent, Stack
from tests.e2e.conftest import (
    Kube,
    eventually,
    fetch,
    host_claim,
    metric,
    responder,
    route,
    worker,
)

pytestmark = pytest.mark.integration


def ready_reason(kube: Kube, kind: str, name: str, reason: str) -> dict[str, Any] | None:
    cond = kube.condition(kind, name, "Ready") or {}
    return cond if cond.get("reason") == reason else None


def test_the_older_route_keeps_its_pattern_and_the_newer_names_it(
    stack: Stack, kube: Kube
) -> None:
    pattern = f"clash.{kube.namespace}.example.com/*"
    host = f"clash.{kube.namespace}.example.com"
    kube.apply(worker("one", responder('"one"')), route("first", pattern, "one"))
    kube.wait_ready("one")
    eventually(lambda: all(fetch(a, host) == (200, "one") for a in stack.agents))
    kube.apply(worker("two", responder('"two"')), route("second", pattern, "two"))
    cond = eventually(lambda: ready_reason(kube, "workerroute", "second", "RouteConflict"))
    assert cond["status"] == "False" and f"{kube.namespace}/first" in cond["message"]
    assert (kube.condition("workerroute", "first", "Ready") or {}).get("status") == "True"
    kube.wait_ready("two")
    # The site never went dark: the older route serves throughout.
    assert all(fetch(a, host) == (200, "one") for a in stack.agents)
    # Once the holder goes, the newer route takes the pattern.
    kube.delete("workerroute", "first")
    eventually(lambda: all(fetch(a, host) == (200, "two") for a in stack.agents))
    eventually(lambda: ready_reason(kube, "workerroute", "second", "Routed"))


@pytest.fixture
def other_team(stack: Stack) -> Iterator[Kube]:
    """A second namespace, with no HostClaim of its own."""
    assert stack.cluster is not None
    name = f"o-{uuid.uuid4().hex[:10]}"
    stack.cluster.kubectl("create", "namespace", name)
    try:
        yield Kube(stack.cluster, name)
    finally:
        stack.cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def test_another_namespace_cannot_take_over_a_site(
    stack: Stack, kube: Kube, other_team: Kube
) -> None:
    """The three takeovers: a more specific path, the same pattern, and a catch-all, each
    from a namespace no HostClaim grants the host to."""
    host = f"victim.{kube.namespace}.example.com"
    kube.apply(worker("site", responder('"site"')), route("site", f"{host}/*", "site"))
    kube.wait_ready("site")
    eventually(lambda: all(fetch(a, host, "/login") == (200, "site") for a in stack.agents))
    other_team.apply(
        worker("thief", responder('"stolen"')),
        route("login", f"{host}/login", "thief"),
        route("same", f"{host}/*", "thief"),
        route("everything", "*/*", "thief"),
    )
    other_team.wait_ready("thief")
    for name, granted in (("login", host), ("same", host), ("everything", "*")):
        cond = eventually(lambda n=name: ready_reason(other_team, "workerroute", n,
                                                      "HostNotClaimed"))
        assert cond["status"] == "False"
        assert f"host {granted!r}" in cond["message"] and other_team.namespace in cond["message"]
    # The victim's route holds its pattern and its paths, at every location.
    assert (kube.condition("workerroute", "site", "Ready") or {}).get("status") == "True"
    for path in ("/login", "/", "/anything"):
        assert all(fetch(a, host, path) == (200, "site") for a in stack.agents)
    # Another team's host is not caught by the catch-all either.
    assert all(fetch(a, f"nobody.{other_team.namespace}.example.com")[0] == 404
               for a in stack.agents)
    # A claim for the other team's own host lets its route serve there, and only there.
    claim = host_claim(f"test-{other_team.namespace}", other_team.namespace,
                       f"shop.{other_team.namespace}.example.com")
    assert stack.cluster is not None
    stack.cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(claim))
    try:
        other_team.apply(route("shop", f"shop.{other_team.namespace}.example.com/*", "thief"))
        eventually(lambda: all(fetch(a, f"shop.{other_team.namespace}.example.com")
                               == (200, "stolen") for a in stack.agents))
        assert all(fetch(a, host, "/login") == (200, "site") for a in stack.agents)
    finally:
        stack.cluster.kubectl("delete", "hostclaim", claim["metadata"]["name"], check=False)


def test_a_location_that_lost_its_state_is_refilled(stack: Stack, kube: Kube) -> None:
    kube.apply(worker("durable", responder('"still here"')),
               route("durable", f"durable.{kube.namespace}.example.com/*", "durable"))
    kube.wait_ready("durable")
    lost = stack.agents[1]
    lost.kill()
    try:
        shutil.rmtree(lost.state_dir)
    finally:
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


def test_restarting_the_operator_with_workers_in_sync_pushes_and_writes_nothing(
    stack: Stack, kube: Kube
) -> None:
    docs = []
    for i in range(50):
        docs += [worker(f"w{i}", responder(f'"w{i}"')),
                 route(f"w{i}", f"w{i}.{kube.namespace}.example.com/*", f"w{i}")]
    # Two with a cron trigger (yearly: no occurrence passes during the test), whose
    # status.cron.location is leased anew by a new operator.
    docs += [worker(f"c{i}", YEARLY_SCRIPT, triggers={"crons": ["0 0 1 1 *"]}) for i in range(2)]
    # And some that are not Ready, whose status a restart must not rewrite either: no
    # location matches, a ConfigMap that does not exist, a route whose pattern is taken.
    docs += [
        worker("nowhere", responder('"x"'), targets={"matchLabels": {"edgeplane.io/region": "x"}}),
        {**worker("stalled", ""), "spec": {
            "compatibilityDate": "2025-01-01",
            "modules": [{"name": "index.js",
                         "configMapKeyRef": {"name": "missing", "key": "index.js"}}]}},
        route("twin", f"w0.{kube.namespace}.example.com/*", "w1"),
    ]
    kube.apply(*docs)

    def all_ready() -> bool:
        items = kube.list("workers")
        ready = [w for w in items if any(c["type"] == "Ready" and c["status"] == "True"
                                         for c in (w.get("status") or {}).get("conditions", []))]
        return len(ready) == 52

    eventually(all_ready, timeout=240, interval=1)
    for name, reason in (("nowhere", "NoTargets"), ("stalled", "SourceNotFound")):
        eventually(lambda name=name, reason=reason: (kube.condition(
            "worker", name, "Stalled") or {}).get("reason") == reason, timeout=60)
    for i in range(2):
        eventually(lambda i=i: ((kube.get("worker", f"c{i}") or {}).get("status") or {})
                   .get("cron", {}).get("location"), timeout=60)
    assert stack.operator is not None

    def nothing_being_deleted() -> bool:
        # Earlier tests' namespaces are still going away; their removals are not pushes. A
        # Terminating namespace may not have marked its Workers yet: wait for it to go.
        items = json.loads(kube.cluster.kubectl("get", "workers", "-A", "-o", "json").stdout)
        spaces = json.loads(kube.cluster.kubectl("get", "namespaces", "-o", "json").stdout)
        return not any(w["metadata"].get("deletionTimestamp") for w in items["items"]) and all(
            (n.get("status") or {}).get("phase") != "Terminating" for n in spaces["items"]
        )

    eventually(nothing_being_deleted, timeout=120, interval=1)

    def agent_puts() -> list[float]:
        return [metric(f"{a.api_url}/metrics", "edgeplane_agent_pushes_total", a.token)
                for a in stack.agents]

    total = len(json.loads(kube.cluster.kubectl("get", "workers", "-A", "-o", "json").stdout)
                ["items"])
    # A route made after its Worker changes what is pushed while the Worker stays Ready:
    # stopped during that push, the operator would leave a location still applying it.
    def pushes_settled() -> bool:
        before = agent_puts()
        time.sleep(3)
        return agent_puts() == before

    eventually(pushes_settled, timeout=60)
    # The count each EdgeTarget's status shows is written at the next health check after
    # the pushes: a restart before that writes it, rightly.
    eventually(lambda: counts_shown(kube) == {a.name: agent_info(a)["workers"]
                                              for a in stack.agents}, timeout=30)
    heartbeats, puts_before = last_heartbeats(kube), agent_puts()
    stack.operator.stop()
    requests_before = kube.cluster.requests_served()
    started, restarted_at = time.monotonic(), time.time()
    stack.operator.start()
    url = stack.operator.metrics_url
    # The new operator has reconciled and reported every Worker, and has nothing queued;
    # then a few health rounds (2 s apart) pass, and its own cron leases settle (twice a
    # lease of 3 rounds from its start, then a round).
    eventually(lambda: metric(url, "edgeplane_workers") >= total
               and metric(url, "edgeplane_workqueue_depth", name="worker") == 0, timeout=120)
    time.sleep(max(5.0, started + 2 * 6 + 5 - time.monotonic()))
    assert metric(url, "edgeplane_pushes_total") == 0
    assert agent_puts() == puts_before
    done = kube.cluster.requests_served()
    done.subtract(requests_before)
    # Nothing it writes changed: no status, no version recorded again (a 409 counts).
    writes = {k: n for k, n in done.items() if n > 0 and k.split()[0] in WRITES
              and k.split()[1] not in ("edgetargets/status", "leases")}
    # The audit log names them (e.g. a Worker another test left in a namespace gone).
    assert writes == {}, (writes, [w for w in kube.cluster.writes_since(restarted_at)
                                   if "edgetargets/status" not in w])
    # An EdgeTarget's status is written again only for a heartbeat that came due (every
    # 30 s), not because a new process has checked it for the first time.
    due = sum(int((time.time() - beat + 2) // 30) for beat in heartbeats)
    assert done["PATCH edgetargets/status"] <= due, (heartbeats, time.time())
    # What was recorded is learned from a paginated LIST, not read per Worker.
    per_worker = {k: n for k, n in done.items() if "workerversions" in k and n > 0}
    assert sum(per_worker.values()) <= 5, per_worker
    assert all(fetch(a, f"w7.{kube.namespace}.example.com") == (200, "w7") for a in stack.agents)
    assert all(((kube.get("worker", f"c{i}") or {}).get("status") or {})
               .get("cron", {}).get("location") for i in range(2))


WRITES = {"POST", "PUT", "PATCH", "DELETE", "APPLY"}
YEARLY_SCRIPT = "export default { fetch() { return new Response('c'); }, scheduled() {} };\n"


def counts_shown(kube: Kube) -> dict[str, int]:
    targets = json.loads(kube.cluster.kubectl("get", "edgetargets", "-o", "json").stdout)
    return {t["metadata"]["name"]: t["status"].get("workers") for t in targets["items"]}


def agent_info(agent: Agent) -> dict[str, Any]:
    req = urllib.request.Request(f"{agent.api_url}/v1/info",
                                 headers={"Authorization": f"Bearer {agent.token}"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return dict(json.loads(resp.read()))


def last_heartbeats(kube: Kube) -> list[float]:
    """Each EdgeTarget's status.lastHeartbeat, in seconds since the epoch."""
    targets = json.loads(kube.cluster.kubectl("get", "edgetargets", "-o", "json").stdout)
    return [datetime.fromisoformat(t["status"]["lastHeartbeat"]).timestamp()
            for t in targets["items"]]


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
    # The agent kept the Worker in its state; its inventory check finds it orphaned. (Its
    # host may answer 404 before that: the route left without a Worker is excluded.)
    assert stack.operator is not None and stack.operator.proc is not None
    log = stack.operator.proc.log
    removed = f"removing {kube.namespace}.gone from {down.name}: the Worker no longer exists"
    eventually(lambda: removed in log.read_text(errors="replace"), timeout=90)
    eventually(lambda: fetch(down, host)[0] == 404, timeout=30)


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
