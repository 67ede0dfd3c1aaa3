"""Versions, progressive rollouts with gates, rollback, pinning and traffic splits, on the
real stack: three locations (edge-1, edge-2, edge-3), the real operator and workerd."""

from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest

from edgeplane.localstack.stack import Stack
from edgeplane.wire import signed_headers
from tests.e2e.conftest import Kube, eventually, fetch, metric, route, worker
from tests.unit.test_argocd_health import health

pytestmark = pytest.mark.integration

FIRST, REST = "edge-1", ("edge-2", "edge-3")  # steps take locations in name order


def app(label: str, health: int = 200) -> str:
    """A Worker answering `label` everywhere, and `health` (with "ok" or "sick") on
    /healthz."""
    body = "ok" if health < 500 else "sick"
    return (
        "export default { async fetch(request) {\n"
        "  const url = new URL(request.url);\n"
        f'  if (url.pathname === "/healthz") return new Response("{body}", '
        f"{{ status: {health} }});\n"
        f'  return new Response("{label}");\n'
        "} };\n"
    )


def progressive(hold: int, **gate: Any) -> dict[str, Any]:
    return {
        "strategy": "Progressive",
        "steps": [{"count": 1, "holdSeconds": hold, "gate": gate or None}],
    }


def serving(stack: Stack, host: str) -> dict[str, str]:
    return {a.name: fetch(a, host)[1] for a in stack.agents}


def rollout(kube: Kube, name: str) -> dict[str, Any]:
    return ((kube.get("worker", name) or {}).get("status") or {}).get("rollout") or {}


def holding(kube: Kube, name: str) -> dict[str, Any]:
    """status.rollout once the Worker's rollout holds at a step."""
    return eventually(lambda: rollout(kube, name).get("phase") == "Holding"
                      and rollout(kube, name))


def ready_reason(kube: Kube, kind: str, name: str, reason: str, **kw: Any) -> dict[str, Any]:
    """The Ready condition once its reason is `reason`."""
    return eventually(lambda: (kube.condition(kind, name, "Ready") or {}).get("reason") == reason
                      and kube.condition(kind, name, "Ready"), **kw)


def when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def judged_after_hold(gate: dict[str, Any], hold: dict[str, Any]) -> bool:
    return when(gate["time"]) >= when(hold["holdUntil"])


def deploy_v1(stack: Stack, kube: Kube, name: str) -> str:
    """v1 everywhere, all at once; returns its version id."""
    host = f"{name}.{kube.namespace}.example.com"
    kube.apply(worker(name, app("v1")), route(name, f"{host}/*", name))
    obj = kube.wait_ready(name)
    eventually(lambda: set(serving(stack, host).values()) == {"v1"})
    return str(obj["status"]["readyVersion"])


def serving_targets(kube: Kube, name: str) -> dict[str, int]:
    """How many locations serve each of the Worker's versions, by version id, from its
    status.targets (one entry per location; WorkerVersions no longer count them)."""
    targets = ((kube.get("worker", name) or {}).get("status") or {}).get("targets") or []
    return dict(Counter(t["version"] for t in targets if t.get("version")))


def probe_gate(**extra: Any) -> dict[str, Any]:
    return {"probe": {"path": "/healthz", "bodyContains": "ok", **extra}}


def test_progressive_rollout_holds_at_one_location_then_completes(
    stack: Stack, kube: Kube
) -> None:
    name = "prog"
    host = f"{name}.{kube.namespace}.example.com"
    v1 = deploy_v1(stack, kube, name)
    # A hold long enough for the checks below on a loaded 2-core machine; the last of
    # them says so if it was not.
    kube.apply(worker(name, app("v2"), rollout=progressive(25, **probe_gate())))

    held = holding(kube, name)
    assert held["progress"] == "1/2" and held["fromVersion"] == v1
    # At the hold, the plan shows on the wire: the first location has v2, the rest v1.
    assert serving(stack, host) == {FIRST: "v2", REST[0]: "v1", REST[1]: "v1"}
    table = stack.cluster.kubectl("get", "ew", name, "-n", kube.namespace).stdout  # type: ignore[union-attr]
    assert "Holding" in table and "1/2" in table
    obj = kube.get("worker", name)
    assert obj is not None and health("Worker", obj)["status"] == "Progressing"
    status = obj["status"]
    states = {t["name"]: (t["state"], t["version"]) for t in status["targets"]}
    v2 = status["latestVersion"]
    assert states[FIRST] == ("Ready", v2)
    assert {states[r] for r in REST} == {("Pending", v1)}
    # The Worker's status says where each version serves.
    eventually(lambda: serving_targets(kube, name) == {v1: 2, v2: 1})
    assert datetime.now(UTC) < when(held["holdUntil"]), "the checks outlasted the hold"

    done = kube.wait_ready(name, timeout=90)
    assert done["status"]["readyVersion"] == v2
    assert done["status"]["rollout"]["phase"] == "Complete"
    assert serving(stack, host) == dict.fromkeys([FIRST, *REST], "v2")
    eventually(lambda: serving_targets(kube, name) == {v2: 3})
    gates = done["status"]["rollout"]["gates"]
    assert [(g["step"], g["target"], g["passed"]) for g in gates] == [(1, FIRST, True)]
    assert gates[0]["probe"].startswith("GET ") and gates[0]["probe"].endswith("/healthz")
    # The hold was honoured: the gate was judged no earlier than the hold's end.
    assert judged_after_hold(gates[0], held)
    reasons = [e["reason"] for e in kube.list("events")
               if e["involvedObject"]["name"] == name]
    assert reasons.count("StepPassed") == 2


def test_a_failing_probe_rolls_back_at_the_first_location_only(
    stack: Stack, kube: Kube
) -> None:
    name = "sick"
    host = f"{name}.{kube.namespace}.example.com"
    v1 = deploy_v1(stack, kube, name)
    assert stack.operator is not None
    rolled_back = metric(stack.operator.metrics_url, "edgeplane_rollouts_total",
                         result="rolled_back")

    # Watch the other two locations for the whole rollout: they must never answer v2.
    seen: dict[str, Counter[str]] = {r: Counter() for r in REST}
    stop = threading.Event()

    def watch() -> None:
        others = [a for a in stack.agents if a.name in REST]
        while not stop.is_set():
            for a in others:
                seen[a.name][fetch(a, host)[1]] += 1
            time.sleep(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        kube.apply(worker(name, app("v2", health=500), rollout=progressive(1, **probe_gate())))
        ready = ready_reason(kube, "worker", name, "RolledBack")
        eventually(lambda: serving(stack, host) == dict.fromkeys([FIRST, *REST], "v1"))
    finally:
        stop.set()
        watcher.join(10)
    assert all(set(c) == {"v1"} for c in seen.values()), seen
    assert all(sum(c.values()) > 5 for c in seen.values())

    obj = kube.get("worker", name)
    assert obj is not None and health("Worker", obj)["status"] == "Degraded"
    status = obj["status"]
    v2 = status["latestVersion"]
    failure = status["rollout"]["failure"]
    assert failure["target"] == FIRST and failure["step"] == 1
    assert failure["response"].startswith("500 sick") and "expected 200" in failure["message"]
    assert FIRST in ready["message"] and "500" in ready["message"]
    assert status["readyVersion"] == v1 and status["failedVersions"] == [v2]
    assert kube.condition("worker", name, "Stalled")["status"] == "True"  # type: ignore[index]
    # The failed version stays recorded.
    versions = {v["spec"]["versionId"] for v in kube.list("workerversions")
                if v["spec"]["worker"] == name}
    assert {v1, v2} <= versions
    events = [e for e in kube.list("events") if e["involvedObject"]["name"] == name]
    assert any(e["reason"] == "RolledBack" and e["type"] == "Warning" for e in events)
    assert metric(stack.operator.metrics_url, "edgeplane_rollouts_total",
                  result="rolled_back") == rolled_back + 1

    # A fixed version rolls out from the first step again and completes.
    kube.apply(worker(name, app("v3"), rollout=progressive(1, **probe_gate())))
    obj = kube.wait_ready(name, timeout=60)
    assert obj["status"]["rollout"]["phase"] == "Complete"
    assert serving(stack, host) == dict.fromkeys([FIRST, *REST], "v3")


def test_traffic_split_with_zero_percent_override_then_90_10_and_sticky_keys(
    stack: Stack, kube: Kube
) -> None:
    name = "split"
    host = f"{name}.{kube.namespace}.example.com"
    v1 = deploy_v1(stack, kube, name)
    split_route = route(name, f"{host}/*", name)

    # v2 arrives at 0 %: only the override header reaches it.
    split_route["spec"]["traffic"] = [
        {"version": v1[:12], "percent": 100}, {"version": "latest", "percent": 0}
    ]
    kube.apply(worker(name, app("v2")), split_route)
    obj = kube.wait_ready(name, generation=2)
    v2 = obj["status"]["latestVersion"]
    agent = stack.agents[0]
    asked = f'{kube.namespace}.{name}="{v2[:12]}"'
    override = signed_headers(stack.signing_key, int(time.time()), overrides=asked)
    # The route's split may reach the location a moment after the Worker's new version.
    eventually(lambda: {fetch(agent, host)[1] for _ in range(40)} == {"v1"})
    assert fetch(agent, host, headers=override) == (200, "v2")
    # The same header unsigned, or signed with another key, is a request like any other.
    forged = signed_headers("f" * 40, int(time.time()), overrides=asked)
    for headers in ({"Edgeplane-Version-Overrides": asked}, forged):
        assert {fetch(agent, host, headers=headers)[1] for _ in range(20)} == {"v1"}
    route_ready = kube.condition("workerroute", name, "Ready")
    assert route_ready and route_ready["status"] == "True" and v1[:12] in route_ready["message"]

    split_route["spec"]["traffic"] = [
        {"version": v1, "percent": 90}, {"version": "latest", "percent": 10}
    ]
    kube.apply(split_route)

    def split_live() -> bool:
        return any(fetch(agent, host)[1] == "v2" for _ in range(60))

    eventually(split_live)
    eventually(lambda: (kube.condition("worker", name, "Ready") or {}).get("status") == "True")
    counts = Counter(fetch(agent, host)[1] for _ in range(2000))
    assert set(counts) == {"v1", "v2"}
    share = 100 * counts["v2"] / 2000
    assert 5 <= share <= 15, counts
    for key in ("client-7", "client-42"):
        sticky = signed_headers(stack.signing_key, int(time.time()), version_key=key)
        answers = {fetch(agent, host, headers=sticky)[1] for _ in range(50)}
        assert len(answers) == 1, (key, answers)

    # A version the Worker never had is refused by name, and nothing changes.
    split_route["spec"]["traffic"] = [
        {"version": "0123456789ab", "percent": 50}, {"version": "latest", "percent": 50}
    ]
    kube.apply(split_route)
    cond = ready_reason(kube, "workerroute", name, "VersionNotFound")
    assert "spec.traffic[0].version" in cond["message"]
    assert set(Counter(fetch(agent, host)[1] for _ in range(200))) == {"v1", "v2"}


def test_sigkill_during_a_hold_resumes_the_rollout(stack: Stack, kube: Kube) -> None:
    name = "resume"
    host = f"{name}.{kube.namespace}.example.com"
    deploy_v1(stack, kube, name)
    kube.apply(worker(name, app("v2"), rollout=progressive(20, **probe_gate())))
    held = holding(kube, name)
    assert stack.operator is not None
    stack.operator.kill()
    try:
        time.sleep(2)
        # Nothing moves while the operator is gone.
        assert serving(stack, host) == {FIRST: "v2", REST[0]: "v1", REST[1]: "v1"}
    finally:
        stack.operator.start()

    done = kube.wait_ready(name, timeout=90)
    final = done["status"]["rollout"]
    assert final["phase"] == "Complete"
    assert serving(stack, host) == dict.fromkeys([FIRST, *REST], "v2")
    # The recorded hold was kept, and the gate ran once: not skipped, not repeated.
    gates = final["gates"]
    assert [(g["step"], g["target"], g["passed"]) for g in gates] == [(1, FIRST, True)]
    assert judged_after_hold(gates[0], held)
    passed = [e for e in kube.list("events")
              if e["involvedObject"]["name"] == name and e["reason"] == "StepPassed"]
    assert len(passed) == 2  # step 1 and the final step, once each


def test_pinning_an_older_version_serves_it_without_its_sources(
    stack: Stack, kube: Kube
) -> None:
    name = "pinned"
    host = f"{name}.{kube.namespace}.example.com"

    def source(label: str) -> dict[str, Any]:
        return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"{name}-src"},
                "data": {"index.js": app(label)}}

    from_cm = worker(name, "")
    from_cm["spec"]["modules"] = [
        {"name": "index.js", "configMapKeyRef": {"name": f"{name}-src", "key": "index.js"}}
    ]
    kube.apply(source("v1"), from_cm, route(name, f"{host}/*", name))
    v1 = kube.wait_ready(name)["status"]["readyVersion"]
    kube.apply(source("v2"))  # the ConfigMap changes: a new version rolls out
    eventually(lambda: set(serving(stack, host).values()) == {"v2"})
    v2 = kube.wait_ready(name)["status"]["readyVersion"]
    assert v2 != v1

    # Pin v1 by prefix: served everywhere although its ConfigMap now says v2.
    pinned = {**from_cm, "spec": {**from_cm["spec"], "version": v1[:10]}}
    kube.apply(pinned)
    obj = kube.wait_ready(name, generation=2)
    assert obj["status"]["latestVersion"] == v1 and obj["status"]["readyVersion"] == v1
    assert serving(stack, host) == dict.fromkeys([FIRST, *REST], "v1")

    # A version that does not exist is named in the error, and v1 keeps serving.
    kube.apply({**from_cm, "spec": {**from_cm["spec"], "version": "fedcba9876"}})
    cond = ready_reason(kube, "worker", name, "VersionNotFound")
    assert "spec.version" in cond["message"] and "fedcba9876" in cond["message"]
    assert serving(stack, host) == dict.fromkeys([FIRST, *REST], "v1")

    # Unpinning returns to what the spec compiles to.
    kube.apply(from_cm)
    obj = kube.wait_ready(name, generation=4)
    assert obj["status"]["readyVersion"] == v2
    assert serving(stack, host) == dict.fromkeys([FIRST, *REST], "v2")


def test_an_error_rate_over_the_gate_rolls_back(stack: Stack, kube: Kube) -> None:
    name = "flaky"
    host = f"{name}.{kube.namespace}.example.com"
    deploy_v1(stack, kube, name)
    # Healthy on /healthz, but every third request elsewhere fails.
    flaky = (
        "let n = 0;\n"
        "export default { async fetch(request) {\n"
        '  if (new URL(request.url).pathname === "/healthz") return new Response("ok");\n'
        '  return ++n % 3 === 0 ? new Response("oops", { status: 503 }) : new Response("v2");\n'
        "} };\n"
    )
    gate = {**probe_gate(), "maxErrorPercent": 5, "minRequests": 20}
    kube.apply(worker(name, flaky, rollout=progressive(20, **gate)))
    holding(kube, name)
    first = next(a for a in stack.agents if a.name == FIRST)
    answers = Counter(fetch(first, host)[0] for _ in range(60))
    assert answers[503] >= 15, answers  # the hold saw the errors

    ready_reason(kube, "worker", name, "RolledBack", timeout=90)
    failure = kube.get("worker", name)["status"]["rollout"]["failure"]  # type: ignore[index]
    assert failure["target"] == FIRST and not failure["passed"]
    assert "over maxErrorPercent 5" in failure["message"], failure
    assert "probe answered 200" in failure["message"]  # the probe alone would have passed
    eventually(lambda: serving(stack, host) == dict.fromkeys([FIRST, *REST], "v1"))
