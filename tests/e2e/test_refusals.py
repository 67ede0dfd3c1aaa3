"""Refusals the Worker cannot fix are not held against it (#14 item 1), with the real
faults on the real stack: a token the agent rejects is the location's problem
(CredentialsRejected) and the Worker recovers when the Secret is fixed; a route another
Worker still holds (409) is retried, so the Worker becomes Ready once the other lets go.
Neither needs a change to the Worker."""

from __future__ import annotations

import json
from typing import Any

import pytest

from edgeplane.localstack.stack import SYSTEM_NAMESPACE, Stack
from tests.e2e.conftest import Kube, eventually, fetch, responder, route, worker
from tests.e2e.test_operator import host

pytestmark = pytest.mark.integration


def _target(kube: Kube, name: str, location: str) -> dict[str, Any]:
    status = (kube.get("worker", name) or {}).get("status") or {}
    return next((t for t in status.get("targets") or [] if t["name"] == location), {})


def _set_token(stack: Stack, location: str, token: str) -> None:
    assert stack.cluster is not None
    patch = json.dumps({"stringData": {"token": token}})
    stack.cluster.kubectl("patch", "secret", "-n", SYSTEM_NAMESPACE,
                          f"edge-{location}-token", "--type=merge", "-p", patch)


def _target_reason(stack: Stack, location: str) -> str:
    assert stack.cluster is not None
    body = json.loads(stack.cluster.kubectl("get", "edgetarget", location, "-o", "json").stdout)
    conds = (body.get("status") or {}).get("conditions") or []
    return next((c["reason"] for c in conds if c["type"] == "Ready"), "")


def test_a_rejected_token_is_the_locations_problem_and_recovers(
    stack: Stack, kube: Kube
) -> None:
    agent = stack.agents[1]
    kube.apply(worker("creds", responder('"one"')), route("creds", f"{host(kube, 'creds')}/*",
                                                            "creds"))
    kube.wait_ready("creds")
    _set_token(stack, agent.name, "not-the-agents-token")
    try:
        kube.apply(worker("creds", responder('"two"')))
        generation = (kube.get("worker", "creds") or {})["metadata"]["generation"]

        def named() -> bool:
            t = _target(kube, "creds", agent.name)
            assert t.get("state") == "Unreachable", t
            assert t.get("message", "").startswith("CredentialsRejected:"), t
            assert "401" in t["message"], t
            return True

        eventually(named, timeout=30)
        # Its EdgeTarget says so at its next health check (every 2 s here).
        eventually(lambda: _target_reason(stack, agent.name) == "CredentialsRejected", 20)
    finally:
        _set_token(stack, agent.name, agent.token)
    # The Secret fixed, nothing else changed: the location answers and gets the update.
    kube.wait_ready("creds", generation, timeout=30)
    eventually(lambda: fetch(agent, host(kube, "creds")) == (200, "two"), timeout=10)
    eventually(lambda: _target_reason(stack, agent.name) == "Reachable", 10)


def _move_route_from_a_broken_holder(
    kube: Kube, name: str, holder: str, taker: str, new_taker: dict[str, Any] | None = None
) -> int:
    """Route `name` moves from `holder` to `taker` (and `taker` to `new_taker`, if given)
    while `holder`'s own update is refused everywhere (a throw at top level): every agent
    still has `holder` serving the route and answers `taker`'s push 409. Returns `taker`'s
    generation."""
    pattern = f"{host(kube, name)}/*"
    kube.apply(worker(holder, responder(f'"{holder}"')), worker(taker, responder(f'"{taker}"')),
               route(name, pattern, holder))
    kube.wait_ready(holder)
    kube.wait_ready(taker)
    kube.apply(worker(holder, "throw new Error('broken');\n" + responder(f'"{holder}"')),
               *([new_taker] if new_taker else []), route(name, pattern, taker))
    return (kube.get("worker", taker) or {})["metadata"]["generation"]


def test_a_route_another_worker_still_holds_is_retried_until_it_lets_go(
    stack: Stack, kube: Kube
) -> None:
    generation = _move_route_from_a_broken_holder(kube, "moving", "holder", "taker")

    def conflict() -> bool:
        ready = kube.condition("worker", "taker", "Ready") or {}
        assert ready.get("reason") == "RouteConflict", ready
        return True

    eventually(conflict, timeout=30)
    # Only `holder` is fixed; `taker` is not touched again.
    kube.apply(worker("holder", responder('"holder, fixed"')))
    obj = kube.wait_ready("taker", generation, timeout=45)
    assert obj["metadata"]["generation"] == generation
    for agent in stack.agents:
        eventually(lambda a=agent: fetch(a, host(kube, "moving")) == (200, "taker"), timeout=10)


def test_a_route_conflict_does_not_roll_a_progressive_rollout_back(
    stack: Stack, kube: Kube
) -> None:
    # v2 of `roller`, rolled out one location at a time, takes the route `keeper` cannot
    # give up yet: its first step's location answers 409.
    steps = {"strategy": "Progressive", "steps": [{"count": 1, "holdSeconds": 1}]}
    v2 = worker("roller", responder('"v2"'), rollout=steps)
    generation = _move_route_from_a_broken_holder(kube, "rolling", "keeper", "roller", v2)
    phases: set[str] = set()

    def conflict() -> bool:
        phases.add(((kube.get("worker", "roller") or {}).get("status") or {})
                   .get("rollout", {}).get("phase", ""))
        ready = kube.condition("worker", "roller", "Ready") or {}
        assert ready.get("reason") == "RouteConflict", ready
        return True

    eventually(conflict, timeout=30)
    kube.apply(worker("keeper", responder('"keeper, fixed"')))

    def done() -> dict[str, Any] | None:
        obj = kube.get("worker", "roller") or {}
        rollout = (obj.get("status") or {}).get("rollout") or {}
        phases.add(rollout.get("phase", ""))
        return obj if rollout.get("phase") == "Complete" else None

    eventually(done, timeout=60)
    assert "RolledBack" not in phases
    kube.wait_ready("roller", generation, timeout=30)
    for agent in stack.agents:
        eventually(lambda a=agent: fetch(a, host(kube, "rolling")) == (200, "v2"), timeout=10)


def test_a_spec_only_the_operator_can_refuse_is_stalled_naming_the_field(
    stack: Stack, kube: Kube
) -> None:
    """The apiserver checks a cron expression's shape; 30 February only the operator's
    parser finds. Before: the reconcile raised on the model, the status never said, and the
    Worker was retried for ever. Now it is Stalled naming the field, the last good version
    keeps serving, and the fixed spec goes through."""
    name = "feb30"
    h = host(kube, name)
    kube.apply(worker(name, responder('"v1"')), route(name, f"{h}/*", name))
    kube.wait_ready(name)
    kube.apply(worker(name, responder('"v2"'), triggers={"crons": ["0 0 30 2 *"]}))

    def ready() -> dict[str, Any]:
        status = (kube.get("worker", name) or {}).get("status") or {}
        return next((c for c in status.get("conditions") or [] if c["type"] == "Ready"), {})

    eventually(lambda: ready().get("reason") == "InvalidSpec", timeout=30)
    cond = ready()
    assert cond["status"] == "False" and cond["observedGeneration"] == 2, cond
    assert "spec.triggers.crons[0]" in cond["message"] and "30" in cond["message"], cond
    assert all(fetch(a, h) == (200, "v1") for a in stack.agents)  # the last good version
    assert stack.cluster is not None
    events = json.loads(stack.cluster.kubectl(
        "get", "events", "-n", kube.namespace, "-o", "json").stdout)["items"]
    warned = [e for e in events if e["reason"] == "InvalidSpec"
              and e["involvedObject"]["name"] == name]
    assert len(warned) == 1 and warned[0]["type"] == "Warning", warned
    kube.apply(worker(name, responder('"v2"'), triggers={"crons": ["0 0 28 2 *"]}))
    kube.wait_ready(name, generation=3)
    eventually(lambda: all(fetch(a, h) == (200, "v2") for a in stack.agents), timeout=30)
