"""Cron triggers on the whole stack (issue 16, Done-when): a `* * * * *` Worker across
three locations runs once per minute for the whole fleet, at one location, counted by the
agents' metrics; with that location stopped (SIGSTOP), the next occurrence runs at another
one, once, and `status.cron.location` says so. About four and a half real minutes: cron's
unit is the minute."""

from __future__ import annotations

import os
import signal
import time

from edgeplane.localstack.stack import Agent, Stack
from edgeplane.localstack.traffic import eventually
from tests.e2e.conftest import Kube, metric, worker

SCRIPT = """export default {
  fetch() { return new Response("cron"); },
  scheduled(controller) {
    if (controller.cron !== "* * * * *") throw new Error("unexpected " + controller.cron);
  },
};
"""


def _runs(agent: Agent, full: str, outcome: str | None = None) -> float:
    labels = {"worker": full, **({"outcome": outcome} if outcome else {})}
    return metric(f"{agent.api_url}/metrics", "edgeplane_agent_cron_runs_total", agent.token,
                  **labels)


def _cron(kube: Kube, name: str) -> dict:  # type: ignore[type-arg]
    return dict(((kube.get("worker", name) or {}).get("status") or {}).get("cron") or {})


def _sleep_until(t: float) -> None:
    time.sleep(max(0.0, t - time.time()))


def test_once_per_minute_for_the_fleet_and_moved_when_its_location_stops(
    stack: Stack, kube: Kube
) -> None:
    name, full = "tick", f"{kube.namespace}.tick"
    kube.apply(worker(name, SCRIPT, triggers={"crons": ["* * * * *"]}))
    kube.wait_ready(name, timeout=90)
    first = eventually(lambda: _cron(kube, name).get("location"), timeout=60)
    assert _cron(kube, name)["nextRun"].endswith(":00Z")

    # Three occurrences: the first one run, then two more minutes and time for them to end.
    eventually(lambda: sum(_runs(a, full) for a in stack.agents) >= 1, timeout=90, interval=1)
    third = time.time() // 60 * 60 + 120
    _sleep_until(third + 25)
    per_location = {a.name: _runs(a, full) for a in stack.agents}
    assert per_location == {a.name: (3.0 if a.name == first else 0.0) for a in stack.agents}
    owner = next(a for a in stack.agents if a.name == first)
    assert _runs(owner, full, "ok") == 3
    status = _cron(kube, name)
    assert (status["location"], status["lastLocation"], status["lastOutcome"]) == (
        first, first, "ok")

    # The location that runs it stops (SIGSTOP: alive, but answering nothing): the next
    # occurrence (35 s on) runs elsewhere, once; resumed after it, the stopped location
    # does not run the occurrence it slept through (its lease ran out meanwhile).
    assert owner.proc is not None
    group = owner.proc.popen.pid
    os.killpg(group, signal.SIGSTOP)
    try:
        others = [a for a in stack.agents if a is not owner]
        moved = eventually(lambda: (c := _cron(kube, name)).get("location") not in (None, first)
                           and c, timeout=30, interval=1)
        assert moved["location"] in {a.name for a in others}
        assert time.time() < third + 60, "moved too late for the next occurrence"
        _sleep_until(third + 60 + 10)
        assert {a.name: _runs(a, full) for a in others} == {
            a.name: (1.0 if a.name == moved["location"] else 0.0) for a in others}
    finally:
        os.killpg(group, signal.SIGCONT)
    _sleep_until(third + 60 + 25)
    assert _runs(owner, full) == 3
    assert sum(_runs(a, full) for a in others) == 1
    after = eventually(lambda: (c := _cron(kube, name)).get("lastLocation") != first and c,
                       timeout=20, interval=1)
    assert (after["lastLocation"], after["lastOutcome"]) == (moved["location"], "ok")
    assert stack.operator is not None
    ok = metric(stack.operator.metrics_url, "edgeplane_cron_runs_total",
                namespace=kube.namespace, name=name, outcome="ok")
    assert ok == 4
