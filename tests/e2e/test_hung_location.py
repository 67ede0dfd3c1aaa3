"""A location that accepts connections and never answers (its agent SIGSTOPped: the kernel
still completes handshakes into the listen backlog, and its workerds keep serving): the
operator stops pushing to it once its health check marks it down, the other locations'
deploys are not held up by its PUTs, each Worker's status names it, and the pushes resume
when it answers again."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import pytest

from edgeplane.localstack.stack import Stack
from tests.e2e.conftest import Kube, eventually, fetch, responder, route, worker
from tests.e2e.test_operator import host

pytestmark = pytest.mark.integration

COUNT = 40  # more Workers than the operator's queue runs at once (32)


def _states(kube: Kube, names: list[str]) -> dict[str, dict[str, str]]:
    """Per Worker, the state its status gives each location."""
    out = {}
    for w in kube.list("workers"):
        if w["metadata"]["name"] in names:
            targets = (w.get("status") or {}).get("targets") or []
            out[w["metadata"]["name"]] = {t["name"]: t["state"] for t in targets}
    return out


def _reported(kube: Kube, names: list[str], want: dict[str, str]) -> bool:
    states = _states(kube, names)
    assert len(states) == len(names) and all(s == want for s in states.values()), {
        n: s for n, s in states.items() if s != want
    } or f"{len(states)} of {len(names)}"
    return True


def test_a_location_that_never_answers_does_not_slow_the_others(
    stack: Stack, kube: Kube
) -> None:
    hung = stack.agents[2]
    assert hung.proc is not None
    pid = hung.proc.popen.pid
    names = [f"hang-{i}" for i in range(COUNT)]
    docs: list[dict[str, Any]] = []
    for n in names:
        docs += [worker(n, responder(f'"{n}"')), route(n, f"{host(kube, n)}/*", n)]
    os.kill(pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        kube.apply(*docs)
        # Each status names the hung location, the others Ready, well before the 120 s a
        # PUT to it would take to time out.
        want = {"edge-1": "Ready", "edge-2": "Ready", hung.name: "Unreachable"}
        eventually(lambda: _reported(kube, names, want), timeout=60, interval=1)
        reported = time.monotonic() - started
        for n in names:
            assert [fetch(a, host(kube, n)) for a in stack.agents[:2]] == [(200, n)] * 2
        print(f"{COUNT} Workers reported with {hung.name} hung after {reported:.1f} s")
        assert reported < 45, reported
    finally:
        os.kill(pid, signal.SIGCONT)
    # It answers again: the pushes resume and every Worker is Ready everywhere.
    for n in names:
        kube.wait_ready(n, timeout=120)
    eventually(
        lambda: all(fetch(hung, host(kube, n)) == (200, n) for n in names), timeout=60
    )


def test_a_hung_location_is_named_within_15_s(stack: Stack, kube: Kube) -> None:
    """A Worker deployed everywhere, then its location stops answering: its status says so
    within 15 s, and an update still reaches the others at once."""
    kube.apply(worker("steady", responder('"v1"')),
               route("steady", f"{host(kube, 'steady')}/*", "steady"))
    kube.wait_ready("steady", timeout=60)
    hung = stack.agents[2]
    assert hung.proc is not None
    pid = hung.proc.popen.pid
    os.kill(pid, signal.SIGSTOP)
    try:
        stopped = time.monotonic()
        want = {"edge-1": "Ready", "edge-2": "Ready", hung.name: "Unreachable"}
        eventually(lambda: _reported(kube, ["steady"], want), timeout=30, interval=0.5)
        named = time.monotonic() - stopped
        assert named < 15, named
        updated = time.monotonic()
        kube.apply(worker("steady", responder('"v2"')))
        eventually(
            lambda: all(fetch(a, host(kube, "steady")) == (200, "v2") for a in stack.agents[:2]),
            timeout=30,
        )
        eventually(
            lambda: (kube.get("worker", "steady") or {}).get("status", {}).get(
                "observedGeneration") == 2 and _reported(kube, ["steady"], want),
            timeout=30,
        )
        assert time.monotonic() - updated < 20
    finally:
        os.kill(pid, signal.SIGCONT)
    kube.wait_ready("steady", timeout=60)
    eventually(lambda: fetch(hung, host(kube, "steady")) == (200, "v2"), timeout=60)
