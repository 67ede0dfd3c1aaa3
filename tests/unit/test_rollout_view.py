"""`edgeplane rollout status` output (pure): steps, locations, versions, gates, hold time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from edgeplane.api import Worker
from edgeplane.plan.targets import TargetView
from edgeplane.report.rollout_view import duration, render

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
OLD, NEW = "a" * 64, "b" * 64
VIEWS = [TargetView("edge-1", {"canary": "yes"}), TargetView("edge-2"), TargetView("edge-3")]
STEPS = [{"count": 1, "holdSeconds": 90, "pause": {}}, {"count": 3}]


def worker(rollout: dict[str, Any] | None, steps: list[dict] | None = None,
           targets: tuple[tuple[str, str, str], ...] = ()) -> Worker:
    body: dict[str, Any] = {
        "metadata": {"name": "shop", "namespace": "team", "generation": 2},
        "spec": {
            "compatibilityDate": "2025-01-01",
            "modules": [{"name": "index.js", "inline": "export default {}"}],
            "rollout": {"strategy": "Progressive", "steps": steps or STEPS},
        },
    }
    if rollout is not None:
        body["status"] = {
            "observedGeneration": 2,
            "latestVersion": NEW,
            "targets": [{"name": n, "version": v, "state": s} for n, v, s in targets],
            "rollout": {"version": NEW, "fromVersion": OLD, "steps": 2, "step": 1,
                        "progress": "1/2", **rollout},
        }
    return Worker.model_validate(body)


SERVING_1 = (("edge-1", NEW, "Ready"), ("edge-2", OLD, "Pending"), ("edge-3", OLD, "Pending"))


def test_a_paused_rollout_in_full() -> None:
    paused = {"phase": "Paused", "pausedSince": (T0 - timedelta(seconds=75)).isoformat()}
    assert render(worker(paused, targets=SERVING_1), VIEWS, T0) == [
        "Worker team/shop  Paused (step 1/2), paused for 1m15s",
        "  version bbbbbbbbbbbb, from aaaaaaaaaaaa",
        "  ▶ 1  count 1, hold 1m30s, pause   +edge-1",
        "  · 2  count 3                      +edge-2, edge-3",
        "  locations:",
        "    edge-1  bbbbbbbbbbbb  Ready",
        "    edge-2  aaaaaaaaaaaa  Pending",
        "    edge-3  aaaaaaaaaaaa  Pending",
        "  paused: `edgeplane rollout promote shop -n team` goes on to step 2, "
        "`edgeplane rollout abort shop -n team` rolls back",
    ]


GATE = {"step": 1, "target": "edge-1", "time": T0.isoformat()}


@pytest.mark.parametrize(
    ("rollout", "steps", "expected", "absent"),
    [
        # A hold: the time left, from holdUntil.
        ({"phase": "Holding", "holdUntil": (T0 + timedelta(seconds=42)).isoformat()}, None,
         ["Holding (step 1/2), hold ends in 42s", "  ▶ 1", "  · 2"], ["paused:"]),
        # Done: every step ticked.
        ({"phase": "Complete", "step": 2, "progress": "2/2"}, None,
         ["Complete (step 2/2)", "  ✓ 1", "  ✓ 2"], ["▶", "paused:"]),
        # Step 2 under way: step 1 ticked, with its gate's verdict under it.
        ({"phase": "Progressing", "step": 2, "progress": "2/2",
          "gates": [{**GATE, "passed": True, "message": "probe answered 200",
                     "probe": "GET http://x/healthz", "response": "200 ok"}]}, None,
         ["  ✓ 1", "      gate edge-1: passed GET http://x/healthz -> 200 ok (probe answered 200)",
          "  ▶ 2"], []),
        # Rolled back by its gate: the step crossed, the failure said, where things are.
        ({"phase": "RolledBack", "failure": {**GATE, "passed": False, "message": "status 500"},
          "gates": [{**GATE, "passed": False, "message": "status 500"}]}, None,
         ["  ✗ 1", "      gate edge-1: FAILED (status 500)",
          "  rolled back: edge-1: status 500; every location serves aaaaaaaaaaaa"], ["▶"]),
        # Aborted: the action as the operator recorded it.
        ({"phase": "RolledBack", "actions": [
            {"action": "Abort", "value": "bbbbbbbbbbbb", "step": 1, "applied": True,
             "message": "version bbbbbbbbbbbb aborted at step 1/2", "time": T0.isoformat()}]},
         None,
         ["  abort 'bbbbbbbbbbbb': version bbbbbbbbbbbb aborted at step 1/2",
          "  rolled back (aborted); every location serves aaaaaaaaaaaa"], []),
        # A paused last step completes when promoted.
        ({"phase": "Paused", "step": 2, "progress": "2/2"}, None,
         ["goes on to completion"], []),
        # Percent and selector steps; the locations no step reaches come last.
        ({"phase": "Progressing", "steps": 3, "progress": "1/3"},
         [{"selector": {"matchLabels": {"canary": "yes"}}, "gate": {"maxErrorPercent": 1}},
          {"percent": 60}],
         ["  ▶ 1  selector, gate", "+edge-1", "  · 2  60%", "+edge-2", "  · 3  the rest",
          "+edge-3"], []),
    ],
)
def test_render(
    rollout: dict[str, Any], steps: list[dict] | None, expected: list[str], absent: list[str]
) -> None:
    text = "\n".join(render(worker(rollout, steps, SERVING_1), VIEWS, T0))
    for part in expected:
        assert part in text
    for part in absent:
        assert part not in text


def test_no_status_yet() -> None:
    assert render(worker(None), VIEWS, T0) == [
        "Worker team/shop: no rollout yet (the operator has not reported on it)"
    ]


def test_all_at_once_is_one_step() -> None:
    w = worker({"phase": "Progressing", "steps": 1, "progress": "1/1"})
    w = w.model_copy(update={"spec": w.spec.model_copy(update={"rollout": type(
        w.spec.rollout)()})})
    assert "  ▶ 1  all at once" in "\n".join(render(w, VIEWS, T0))


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (-3, "0s"), (42.4, "42s"), (60, "1m00s"), (3599, "59m59s"), (3720, "1h02m")],
)
def test_duration(seconds: float, text: str) -> None:
    assert duration(seconds) == text
