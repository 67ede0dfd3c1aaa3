"""Processes killed at the worst moment, on the real stack: the operator between a push
and its status write and inside a Worker's finalizer, and a location in the middle of a
Progressive rollout. Each ends with the status telling what the locations serve over
HTTP, without anyone touching the resources."""

from __future__ import annotations

import os
import secrets
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from edgeplane.localstack.stack import Agent, Stack
from tests.e2e.conftest import Kube, eventually, fetch, worker
from tests.e2e.test_rollout import (
    FIRST,
    REST,
    app,
    deploy_v1,
    holding,
    probe_gate,
    progressive,
    rollout,
    serving,
    when,
)

pytestmark = pytest.mark.integration

_ESTABLISHED = "01"


def queued_bytes(port: int) -> int:
    """The most bytes waiting unread in one established connection to a local port (the
    kernel's receive queue, from /proc/net/tcp): what a stopped process was sent."""
    most = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, state, queues = fields[1], fields[3], fields[4]
        if state == _ESTABLISHED and int(local.rsplit(":", 1)[1], 16) == port:
            most = max(most, int(queues.split(":")[1], 16))
    return most


@contextmanager
def stopped(agents: list[Agent]) -> Iterator[None]:
    """The agents' processes SIGSTOPped (their workerds keep serving); SIGCONT after."""
    pids = [a.proc.popen.pid for a in agents if a.proc is not None]
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)


def status(kube: Kube, name: str) -> dict:
    return (kube.get("worker", name) or {}).get("status") or {}


def test_an_operator_killed_between_push_and_status_write_converges(
    stack: Stack, kube: Kube
) -> None:
    name = "pushkill"
    host = f"{name}.{kube.namespace}.example.com"
    v1 = deploy_v1(stack, kube, name)
    assert stack.operator is not None
    # Random padding makes the PUT stand out in the agents' receive queues, compressed or
    # not, from the health checks' small GETs. In bindings: modules travel apart, as blobs
    # (after the deployment, if the location lacks them), so only bindings make it large.
    pads = [{"name": f"PAD{i}", "plainText": secrets.token_urlsafe(3_500)} for i in range(6)]
    with stopped(stack.agents):
        kube.apply(worker(name, app("v2"), bindings=pads))
        # Every location has been sent the new deployment and applied none of it.
        eventually(lambda: all(queued_bytes(a.api_port) > 10_000 for a in stack.agents),
                   timeout=30, interval=0.1)
        stack.operator.kill()
    # The agents now read the dead operator's PUTs (and ask for v2's module, which it can
    # no longer send); its status write never happened.
    assert status(kube, name)["readyVersion"] == v1
    stack.operator.start()

    obj = kube.wait_ready(name, generation=2, timeout=90)
    v2_id = obj["status"]["readyVersion"]
    assert v2_id != v1
    eventually(lambda: set(serving(stack, host).values()) == {"v2"}, timeout=30)
    targets = {t["name"]: (t["state"], t["version"]) for t in obj["status"]["targets"]}
    assert targets == {a.name: ("Ready", v2_id) for a in stack.agents}


def test_an_operator_killed_inside_the_finalizer_finishes_the_deletion(
    stack: Stack, kube: Kube
) -> None:
    name = "finkill"
    host = f"{name}.{kube.namespace}.example.com"
    deploy_v1(stack, kube, name)
    assert stack.operator is not None
    hung = stack.agents[2]
    with stopped([hung]):
        kube.delete("worker", name, wait=False)
        # The finalizer removed it where it could and waits for the hung location.
        eventually(lambda: all(fetch(a, host)[0] == 404 for a in stack.agents[:2]),
                   timeout=30, interval=0.1)
        obj = kube.get("worker", name)
        assert obj is not None and obj["metadata"].get("deletionTimestamp")
        assert obj["metadata"].get("finalizers"), "the finalizer finished before the kill"
        stack.operator.kill()
    stack.operator.start()

    eventually(lambda: kube.get("worker", name) is None, timeout=90)
    eventually(lambda: all(fetch(a, host)[0] == 404 for a in stack.agents), timeout=60)
    eventually(lambda: not [v for v in kube.list("workerversions")
                            if v["spec"]["worker"] == name], timeout=60)


def test_a_location_killed_during_a_hold_holds_the_rollout_until_it_is_back(
    stack: Stack, kube: Kube
) -> None:
    name = "canarykill"
    host = f"{name}.{kube.namespace}.example.com"
    deploy_v1(stack, kube, name)
    kube.apply(worker(name, app("v2"), rollout=progressive(15, **probe_gate())))
    held = holding(kube, name)
    canary = next(a for a in stack.agents if a.name == FIRST)
    # The whole location crashes: agent and workerds, SIGKILL.
    canary.kill()
    try:
        # Past the hold's end, the gate cannot be judged at a location that is down: the
        # rollout waits for it, neither rolling back nor going on.
        end = when(held["holdUntil"]).timestamp()
        time.sleep(max(0.0, end - time.time()) + 8)
        assert rollout(kube, name)["phase"] == "Holding", rollout(kube, name)
        assert {a: serving(stack, host)[a] for a in REST} == dict.fromkeys(REST, "v1")
    finally:
        canary.start()

    done = kube.wait_ready(name, timeout=120)
    final = done["status"]["rollout"]
    assert final["phase"] == "Complete", final
    assert serving(stack, host) == dict.fromkeys([FIRST, *REST], "v2")
    assert [(g["step"], g["target"], g["passed"]) for g in final["gates"]] == [(1, FIRST, True)]

