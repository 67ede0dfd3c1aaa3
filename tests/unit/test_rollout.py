"""Rollout decisions (pure): steps, assignments, holds, gates, rollback, and what a
restarted operator does with a recorded state."""

from __future__ import annotations

import base64
import hashlib
import random
from datetime import UTC, datetime, timedelta

import pytest

from edgeplane.api import Gate, Rollout, RolloutPhase, RolloutStatus
from edgeplane.plan.rollout import (
    Need,
    Observed,
    ProbeResult,
    assignment,
    begin,
    judge,
    plan_steps,
    progress,
)
from edgeplane.plan.targets import TargetView
from edgeplane.plan.traffic import RouteSplit, contents, named_versions, serving_versions
from edgeplane.report.status import TargetOutcome, TargetState, worker_status
from edgeplane.versions.archive import ArchiveError, pack, unpack
from edgeplane.wire import BundleModule, Route, TrafficSplit

T0 = datetime(2026, 11, 1, tzinfo=UTC)
OLD, NEW = "a" * 64, "b" * 64
TARGETS = [
    TargetView("ap-south", {"region": "ap"}),
    TargetView("eu-central", {"region": "eu", "canary": "yes"}),
    TargetView("us-east", {"region": "us"}),
]
NAMES = [t.name for t in TARGETS]


def progressive(*steps: dict) -> Rollout:
    return Rollout.model_validate({"strategy": "Progressive", "steps": list(steps)})


PROBE_GATE = {"probe": {"path": "/healthz", "bodyContains": "ok"}}


def test_steps_are_cumulative_and_the_rest_get_a_final_step() -> None:
    steps = plan_steps(progressive({"count": 1, "holdSeconds": 30}), TARGETS)
    assert [sorted(s.targets) for s in steps] == [["ap-south"], NAMES]
    assert steps[0].added == ("ap-south",) and steps[0].hold_seconds == 30
    assert steps[1].added == ("eu-central", "us-east") and steps[1].gate is None

    steps = plan_steps(progressive({"percent": 50}, {"percent": 100}), TARGETS)
    assert [len(s.targets) for s in steps] == [2, 3]  # 50% of 3 rounds up

    canary = {"selector": {"matchLabels": {"canary": "yes"}}}
    steps = plan_steps(progressive(canary, {"count": 2}), TARGETS)
    assert [s.added for s in steps] == [("eu-central",), ("ap-south",), ("us-east",)]


def test_all_at_once_is_one_step_everywhere() -> None:
    steps = plan_steps(Rollout(), TARGETS)
    assert len(steps) == 1 and steps[0].targets == frozenset(NAMES)


def test_a_new_version_starts_at_step_one_and_only_its_locations_get_it() -> None:
    steps = plan_steps(progressive({"count": 1, "holdSeconds": 10}), TARGETS)
    state = begin(NEW, OLD, None, len(steps))
    assert (state.phase, state.step, state.progress) == (RolloutPhase.PROGRESSING, 1, "1/2")
    assert assignment(state, steps, NAMES) == {
        "ap-south": NEW, "eu-central": OLD, "us-east": OLD
    }
    # Not there yet: nothing moves.
    assert progress(state, steps, {"eu-central", "us-east"}, {}, T0).state == state


def test_hold_then_gate_then_next_step_then_complete() -> None:
    gate = {"holdSeconds": 10, "gate": PROBE_GATE}
    steps = plan_steps(progressive({"count": 1, **gate}), TARGETS)
    state = begin(NEW, OLD, None, len(steps))
    holding = progress(state, steps, set(NAMES), {}, T0).state
    assert holding.phase is RolloutPhase.HOLDING
    assert holding.hold_until == T0 + timedelta(seconds=10)

    early = progress(holding, steps, set(NAMES), {}, T0 + timedelta(seconds=4))
    assert early.state == holding and early.wait == 6

    due = progress(holding, steps, set(NAMES), {}, T0 + timedelta(seconds=10))
    assert due.need is Need.GATE and due.gate_targets == ("ap-south",)

    ok = Observed(probes={"ap-south": ProbeResult("http://x/healthz", 200, "all ok")})
    passed = progress(holding, steps, set(NAMES), {}, T0 + timedelta(seconds=10), ok).state
    assert (passed.phase, passed.step) == (RolloutPhase.PROGRESSING, 2)
    assert passed.gates[0].passed and passed.hold_until is None
    assert assignment(passed, steps, NAMES) == dict.fromkeys(NAMES, NEW)

    done = progress(passed, steps, set(NAMES), {}, T0).state
    assert done.phase is RolloutPhase.COMPLETE


def test_a_failed_probe_rolls_every_location_back_and_says_why() -> None:
    steps = plan_steps(progressive({"count": 1, "gate": PROBE_GATE}), TARGETS)
    state = progress(begin(NEW, OLD, None, len(steps)), steps, set(NAMES), {}, T0).state
    bad = Observed(probes={"ap-south": ProbeResult("http://x/healthz", 500, "boom")})
    rolled = progress(state, steps, set(NAMES), {}, T0, bad).state
    assert rolled.phase is RolloutPhase.ROLLED_BACK
    assert rolled.failure is not None and rolled.failure.target == "ap-south"
    assert rolled.failure.response == "500 boom" and "expected 200" in rolled.failure.message
    assert assignment(rolled, steps, NAMES) == dict.fromkeys(NAMES, OLD)
    # The same version stays rolled back; a new one starts over.
    assert begin(NEW, OLD, rolled, len(steps)).phase is RolloutPhase.ROLLED_BACK
    assert begin("c" * 64, OLD, rolled, len(steps)).phase is RolloutPhase.PROGRESSING


def test_a_refusal_at_a_step_location_rolls_back() -> None:
    steps = plan_steps(progressive({"count": 1, "holdSeconds": 5}), TARGETS)
    state = begin(NEW, OLD, None, len(steps))
    rolled = progress(state, steps, set(), {"ap-south": "422: SyntaxError"}, T0).state
    assert rolled.phase is RolloutPhase.ROLLED_BACK and "SyntaxError" in rolled.failure.message


HUNG = "hung its cell 3 times in 10 minutes (last: GET /loop)"
CANARY_HOLD = progressive({"count": 1, "holdSeconds": 30})


@pytest.mark.parametrize(
    ("rollout", "phase", "quarantined", "refused", "rolled_back", "why"),
    [
        # The new version quarantined where a Progressive rollout gave it: a failed step.
        (CANARY_HOLD, RolloutPhase.PROGRESSING, {"ap-south": {NEW: HUNG}}, {}, True,
         f"the location quarantined the version: {HUNG}"),
        (CANARY_HOLD, RolloutPhase.HOLDING, {"ap-south": {NEW: HUNG, OLD: HUNG}}, {}, True,
         f"the location quarantined the version: {HUNG}"),
        (CANARY_HOLD, RolloutPhase.HOLDING, {"ap-south": {NEW: ""}}, {}, True,
         "the location quarantined the version: no reason given"),
        # The stable version quarantined (where it still serves, or anywhere): the targets
        # report it; rolling back to it would not help.
        (CANARY_HOLD, RolloutPhase.HOLDING, {"us-east": {OLD: HUNG}, "ap-south": {OLD: HUNG}},
         {}, False, None),
        # Where the step has not come, the location does not run it (a quarantine left
        # from an earlier rollout of the same version is no verdict on this step).
        (CANARY_HOLD, RolloutPhase.HOLDING, {"us-east": {NEW: HUNG}}, {}, False, None),
        # A refusal says more than a quarantine at the same location.
        (CANARY_HOLD, RolloutPhase.PROGRESSING, {"ap-south": {NEW: HUNG}},
         {"ap-south": "422: x"}, True, "the location refused the version: 422: x"),
        # AllAtOnce has no step to stop at: the targets report it, nothing rolls back.
        (Rollout(), RolloutPhase.PROGRESSING, {"ap-south": {NEW: HUNG}}, {}, False, None),
        # Done, or already rolled back: a quarantine only reports (no rollback loop).
        (CANARY_HOLD, RolloutPhase.COMPLETE, {"ap-south": {NEW: HUNG}}, {}, False, None),
        (CANARY_HOLD, RolloutPhase.ROLLED_BACK, {"ap-south": {NEW: HUNG}}, {}, False, None),
        (CANARY_HOLD, RolloutPhase.HOLDING, {"ap-south": {}}, {}, False, None),
    ],
)
def test_a_quarantine_of_the_new_version_fails_its_step(
    rollout: Rollout,
    phase: RolloutPhase,
    quarantined: dict,
    refused: dict,
    rolled_back: bool,
    why: str | None,
) -> None:
    steps = plan_steps(rollout, TARGETS)
    state = begin(NEW, OLD, None, len(steps)).model_copy(
        update={"phase": phase, "hold_until": T0 + timedelta(seconds=30)}
    )
    moved = progress(state, steps, set(NAMES), refused, T0, quarantined=quarantined).state
    assert (moved.phase is RolloutPhase.ROLLED_BACK) is (
        rolled_back or phase is RolloutPhase.ROLLED_BACK
    )
    if rolled_back:
        assert moved.failure is not None and moved.failure.message == why
        assert (moved.failure.target, moved.failure.step, moved.failure.passed) == (
            "ap-south", 1, False
        )
        assert assignment(moved, steps, NAMES) == dict.fromkeys(NAMES, OLD)


def test_a_rolled_back_quarantined_version_stays_rolled_back() -> None:
    """Rolled back once: the same version is not tried again (no loop), and going back to
    the stable version, quarantined or not, needs no steps."""
    steps = plan_steps(CANARY_HOLD, TARGETS)
    hung = {"ap-south": {NEW: HUNG, OLD: HUNG}}
    rolled = progress(begin(NEW, OLD, None, len(steps)), steps, set(NAMES), {}, T0,
                      quarantined=hung).state
    assert rolled.phase is RolloutPhase.ROLLED_BACK
    again = begin(NEW, OLD, rolled, len(steps))
    assert progress(again, steps, set(NAMES), {}, T0, quarantined=hung).state == rolled
    assert begin(OLD, OLD, rolled, len(steps)).phase is RolloutPhase.COMPLETE


def test_error_rate_is_judged_over_the_hold_only() -> None:
    gate = Gate.model_validate({"maxErrorPercent": 5, "minRequests": 20})
    base = (1000, 900)  # a bad past that is not this hold's business
    judged = judge(1, "t", gate, Observed(counters={"t": (1100, 902)}), base, T0)
    assert judged.passed and "2/100" in judged.message
    judged = judge(1, "t", gate, Observed(counters={"t": (1100, 910)}), base, T0)
    assert not judged.passed and "10/100" in judged.message
    judged = judge(1, "t", gate, Observed(counters={"t": (1010, 910)}), base, T0)
    assert judged.passed and "not judged" in judged.message
    # Counters that went backwards (agent restart) count from zero.
    judged = judge(1, "t", gate, Observed(counters={"t": (50, 10)}), base, T0)
    assert not judged.passed and "10/50" in judged.message


def test_the_baseline_is_recorded_when_the_hold_starts() -> None:
    gate = {"maxErrorPercent": 1}
    steps = plan_steps(progressive({"count": 1, "holdSeconds": 60, "gate": gate}), TARGETS)
    state = begin(NEW, OLD, None, len(steps))
    asks = progress(state, steps, set(NAMES), {}, T0)
    assert asks.need is Need.COUNTERS and asks.state == state
    held = progress(state, steps, set(NAMES), {}, T0, Observed(counters={"ap-south": (7, 1)}))
    assert [(b.target, b.total, b.errors) for b in held.state.baseline] == [("ap-south", 7, 1)]


def test_a_restarted_operator_resumes_the_recorded_hold() -> None:
    """The status round trip is all a restart has: the hold keeps its end, the gate runs."""
    steps = plan_steps(progressive({"count": 1, "holdSeconds": 30, "gate": PROBE_GATE}), TARGETS)
    holding = progress(begin(NEW, OLD, None, len(steps)), steps, set(NAMES), {}, T0).state
    recorded = RolloutStatus.model_validate(holding.to_wire())
    resumed = begin(NEW, OLD, recorded, len(steps))
    assert resumed == holding
    later = progress(resumed, steps, set(NAMES), {}, T0 + timedelta(seconds=12))
    assert later.state == holding and later.wait == 18
    assert progress(resumed, steps, set(NAMES), {}, T0 + timedelta(seconds=31)).need is Need.GATE


def test_returning_to_the_stable_version_needs_no_steps() -> None:
    steps = plan_steps(progressive({"count": 1, "holdSeconds": 30}), TARGETS)
    mid = begin(NEW, OLD, None, len(steps))
    back = begin(OLD, OLD, mid, len(steps))
    assert back.phase is RolloutPhase.COMPLETE
    assert assignment(back, steps, NAMES) == dict.fromkeys(NAMES, OLD)


def test_first_version_reaches_only_its_step_locations() -> None:
    steps = plan_steps(progressive({"count": 1, "holdSeconds": 30}), TARGETS)
    state = begin(NEW, None, None, len(steps))
    assert assignment(state, steps, NAMES) == {"ap-south": NEW, "eu-central": None, "us-east": None}


def test_traffic_split_contents_resolve_latest_to_each_locations_primary() -> None:
    splits = [RouteSplit("a.com/*", ((OLD, 90), (None, 10))), RouteSplit("b.com/*")]
    c = contents(NEW, splits)
    assert c.versions == {OLD, NEW}
    assert c.routes[0].traffic == (
        TrafficSplit(version=OLD, percent=90), TrafficSplit(version=NEW, percent=10)
    )
    assert c.routes[1] == Route(pattern="b.com/*")
    # Where the rollout has not arrived, `latest` is the old version: it gets it all.
    merged = contents(OLD, splits)
    assert merged.versions == {OLD} and merged.routes[0].traffic[0].percent == 100
    assert c.identity != merged.identity and named_versions(splits) == {OLD}


@pytest.mark.parametrize(
    ("primary", "splits", "expected"),
    [
        (NEW, [], {NEW}),
        # A canary split: both run requests.
        (NEW, [RouteSplit("a.com/*", ((OLD, 90), (None, 10)))], {OLD, NEW}),
        # Kept at 0%: deployed, serving nothing.
        (NEW, [RouteSplit("a.com/*", ((OLD, 0), (None, 100)))], {NEW}),
        # The primary runs what no route splits (service bindings, routes without a split).
        (NEW, [RouteSplit("a.com/*", ((OLD, 100),))], {OLD, NEW}),
    ],
)
def test_serving_versions(primary: str, splits: list, expected: set) -> None:
    assert serving_versions(contents(primary, splits)) == expected


def test_status_reports_holding_and_rolled_back() -> None:
    steps = plan_steps(progressive({"count": 1, "holdSeconds": 10, "gate": PROBE_GATE}), TARGETS)
    holding = progress(begin(NEW, OLD, None, len(steps)), steps, set(NAMES), {}, T0).state
    outcomes = [
        TargetOutcome("ap-south", TargetState.READY, NEW),
        TargetOutcome("eu-central", TargetState.PENDING, OLD),
        TargetOutcome("us-east", TargetState.PENDING, OLD),
    ]
    status, _ = worker_status(None, 2, NEW, outcomes, None, T0, holding)
    ready = {c.type: c for c in status.conditions}["Ready"]
    assert ready.reason == "Holding" and "step 1/2" in ready.message
    assert status.ready_targets == "1/3" and status.rollout == holding

    bad = Observed(probes={"ap-south": ProbeResult("http://x/healthz", 500, "boom")})
    rolled = progress(holding, steps, set(NAMES), {}, T0 + timedelta(seconds=10), bad).state
    back = [TargetOutcome(n, TargetState.ROLLED_BACK, OLD) for n in NAMES]
    status2, events = worker_status(status, 2, NEW, back, None, T0, rolled)
    conds = {c.type: c for c in status2.conditions}
    assert conds["Ready"].reason == "RolledBack" and conds["Stalled"].status == "True"
    assert "ap-south" in conds["Ready"].message and "500 boom" in conds["Ready"].message
    assert status2.failed_versions == [NEW]
    assert [(e.type, e.reason) for e in events] == [("Warning", "RolledBack")]


def test_step_events_name_each_step_passed() -> None:
    steps = plan_steps(progressive({"count": 1, "gate": PROBE_GATE}), TARGETS)
    first = progress(begin(NEW, OLD, None, len(steps)), steps, set(NAMES), {}, T0).state
    ok = Observed(probes={"ap-south": ProbeResult("http://x/healthz", 200, "ok")})
    second = progress(first, steps, set(NAMES), {}, T0, ok).state
    outcomes = [TargetOutcome(n, TargetState.PENDING, OLD) for n in NAMES]
    before, _ = worker_status(None, 1, NEW, outcomes, None, T0, first)
    _, events = worker_status(before, 1, NEW, outcomes, None, T0, second)
    assert [e.reason for e in events] == ["StepPassed"]
    assert "step 1/2" in events[0].message and "probe answered 200" in events[0].message


def test_archive_round_trip_checks_digests() -> None:
    noise = base64.b64encode(random.Random(1).randbytes(1_200_000)).decode()
    mods = (
        BundleModule(name="index.js", type="esModule", content="export default {}"),
        BundleModule(name="big.bin", type="data", content=noise),
    )
    parts = pack(mods)
    assert len(parts) == 2 and pack(mods) == parts  # split to fit ConfigMaps; deterministic
    digests = {m.name: hashlib.sha256(m.raw()).hexdigest() for m in mods}
    assert tuple(unpack(parts, digests)) == mods
    with pytest.raises(ArchiveError, match=r"index\.js"):
        unpack(parts, {**digests, "index.js": "0" * 64})
    with pytest.raises(ArchiveError, match="damaged"):
        unpack([parts[0][:-10]], digests)
