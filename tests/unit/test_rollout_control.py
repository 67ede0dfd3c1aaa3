"""Rollout control (pure): a step's pause, promote and abort read from the Worker's
annotations, each value acting once, and what the status and Events say of them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from edgeplane.api import (
    Rollout,
    RolloutActionKind,
    RolloutPhase,
    RolloutStatus,
    RolloutStep,
)
from edgeplane.plan.rollout import (
    ABORT_ANNOTATION,
    PROMOTE_ANNOTATION,
    Actions,
    Observed,
    ProbeResult,
    assignment,
    begin,
    plan_steps,
    progress,
    read_actions,
)
from edgeplane.plan.targets import TargetView
from edgeplane.report.status import TargetOutcome, TargetState, worker_status

T0 = datetime(2026, 11, 1, tzinfo=UTC)
OLD, NEW = "a" * 64, "b" * 64
NAMES = ["ap-south", "eu-central", "us-east"]
TARGETS = [TargetView(n, {}) for n in NAMES]
ALL = set(NAMES)
# The shape: one location, a hold, a pause; then every location.
STEPS = plan_steps(
    Rollout.model_validate(
        {
            "strategy": "Progressive",
            "steps": [{"count": 1, "holdSeconds": 10, "pause": {}}, {"count": 3}],
        }
    ),
    TARGETS,
)
P1 = f"{NEW[:12]}/1"


def _progressing() -> RolloutStatus:
    return begin(NEW, OLD, None, len(STEPS))


def _holding() -> RolloutStatus:
    state = progress(_progressing(), STEPS, ALL, {}, T0).state
    assert state.phase is RolloutPhase.HOLDING
    return state


def _paused() -> RolloutStatus:
    state = progress(_holding(), STEPS, ALL, {}, T0 + timedelta(seconds=10)).state
    assert state.phase is RolloutPhase.PAUSED
    return state


def _complete() -> RolloutStatus:
    state = progress(_paused(), STEPS, ALL, {}, T0, actions=Actions(promote=P1)).state
    state = progress(state, STEPS, ALL, {}, T0).state
    assert state.phase is RolloutPhase.COMPLETE
    return state


def _rolled_back() -> RolloutStatus:
    state = progress(_progressing(), STEPS, set(), {"ap-south": "422: SyntaxError"}, T0).state
    assert state.phase is RolloutPhase.ROLLED_BACK
    return state


STATES = {
    "progressing": _progressing,
    "holding": _holding,
    "paused": _paused,
    "complete": _complete,
    "rolled_back": _rolled_back,
}
WAITS = None  # no record: a promote of a pause not reached yet waits for it


@pytest.mark.parametrize(
    ("start", "actions", "phase", "step", "records", "says"),
    [
        # Promote names the version (12 digits, all 64, or 8) and the paused step.
        ("paused", Actions(promote=P1), RolloutPhase.PROGRESSING, 2, [("Promote", True)],
         "promoted past step 1/2"),
        ("paused", Actions(promote=f"{NEW}/1"), RolloutPhase.PROGRESSING, 2,
         [("Promote", True)], "promoted"),
        ("paused", Actions(promote=f" {NEW[:8].upper()}/1 "), RolloutPhase.PROGRESSING, 2,
         [("Promote", True)], "promoted"),
        # Too short a prefix, another version, a step without pause, nonsense: ignored.
        ("paused", Actions(promote=f"{NEW[:7]}/1"), RolloutPhase.PAUSED, 1,
         [("Promote", False)], "but the rollout is of version bbbbbbbbbbbb"),
        ("paused", Actions(promote=f"{OLD[:12]}/1"), RolloutPhase.PAUSED, 1,
         [("Promote", False)], "names version 'aaaaaaaaaaaa'"),
        ("paused", Actions(promote=f"{NEW[:12]}/2"), RolloutPhase.PAUSED, 1,
         [("Promote", False)], "step 2 of version bbbbbbbbbbbb has no pause"),
        ("paused", Actions(promote=f"{NEW[:12]}/9"), RolloutPhase.PAUSED, 1,
         [("Promote", False)], "step 9 of version bbbbbbbbbbbb has no pause"),
        ("paused", Actions(promote="yes please"), RolloutPhase.PAUSED, 1,
         [("Promote", False)], "is not <version>/<step>, e.g. bbbbbbbbbbbb/1"),
        # Longer than a record holds: recorded (cut), and still once.
        ("paused", Actions(promote="x" * 300), RolloutPhase.PAUSED, 1,
         [("Promote", False)], "is not <version>/<step>"),
        # Before the pause: a promote for it waits (sent early, it still acts once).
        ("progressing", Actions(promote=P1), RolloutPhase.PROGRESSING, 1, WAITS, None),
        ("holding", Actions(promote=P1), RolloutPhase.HOLDING, 1, WAITS, None),
        # Abort names the version: back to fromVersion from a pause, a hold or the pushes.
        ("paused", Actions(abort=NEW[:12]), RolloutPhase.ROLLED_BACK, 1, [("Abort", True)],
         "aborted at step 1/2: every location goes back to aaaaaaaaaaaa"),
        ("holding", Actions(abort=NEW), RolloutPhase.ROLLED_BACK, 1, [("Abort", True)],
         "aborted"),
        ("progressing", Actions(abort=NEW[:8]), RolloutPhase.ROLLED_BACK, 1,
         [("Abort", True)], "aborted"),
        ("paused", Actions(abort=OLD[:12]), RolloutPhase.PAUSED, 1, [("Abort", False)],
         "edgeplane.io/abort names version 'aaaaaaaaaaaa'"),
        # Nothing left to abort or promote.
        ("complete", Actions(abort=NEW[:12]), RolloutPhase.COMPLETE, 2, [("Abort", False)],
         "nothing to abort (to go back, set spec.version"),
        ("rolled_back", Actions(abort=NEW[:12]), RolloutPhase.ROLLED_BACK, 1,
         [("Abort", False)], "already rolled back"),
        ("rolled_back", Actions(promote=P1), RolloutPhase.ROLLED_BACK, 1,
         [("Promote", False)], "is RolledBack; nothing to promote"),
        # Both at once: the abort wins, the promote then has nothing to promote.
        ("paused", Actions(promote=P1, abort=NEW[:12]), RolloutPhase.ROLLED_BACK, 1,
         [("Abort", True), ("Promote", False)], "aborted"),
        # No annotations: a pause waits for good.
        ("paused", Actions(), RolloutPhase.PAUSED, 1, WAITS, None),
    ],
)
def test_actions(
    start: str,
    actions: Actions,
    phase: RolloutPhase,
    step: int,
    records: list[tuple[str, bool]] | None,
    says: str | None,
) -> None:
    before = STATES[start]()
    after = progress(before, STEPS, set(), {}, T0 + timedelta(seconds=5), actions=actions)
    state = after.state
    assert (state.phase, state.step) == (phase, step)
    new = state.actions[len(before.actions) :]
    assert [(a.action.value, a.applied) for a in new] == (records or [])
    if says is not None:
        assert says in new[0].message
        assert all(a.step == before.step for a in new)
    if phase is RolloutPhase.ROLLED_BACK and start != "rolled_back":
        assert assignment(state, STEPS, NAMES) == dict.fromkeys(NAMES, OLD)
        assert state.failure is None and state.paused_since is None
    # Read again with the same annotations: nothing more happens (each value acts once).
    again = progress(state, STEPS, set(), {}, T0 + timedelta(seconds=6), actions=actions)
    assert again.state == state


def test_a_pause_comes_after_the_steps_hold_and_gate_and_waits() -> None:
    gated = Rollout.model_validate(
        {
            "strategy": "Progressive",
            "steps": [
                {"count": 1, "holdSeconds": 5, "pause": {}, "gate": {"probe": {"path": "/h"}}},
                {"count": 3},
            ],
        }
    )
    steps = plan_steps(gated, TARGETS)
    assert [s.pause for s in steps] == [True, False]
    holding = progress(begin(NEW, OLD, None, 2), steps, ALL, {}, T0).state
    ok = Observed(probes={"ap-south": ProbeResult("http://x/h", 200, "ok")})
    paused = progress(holding, steps, ALL, {}, T0 + timedelta(seconds=5), ok).state
    assert (paused.phase, paused.step) == (RolloutPhase.PAUSED, 1)
    assert paused.paused_since == T0 + timedelta(seconds=5) and paused.gates[0].passed
    assert paused.hold_until is None and paused.baseline == []
    # One location on the new version, for as long as nobody promotes.
    later = progress(paused, steps, ALL, {}, T0 + timedelta(days=3))
    assert later.state == paused and later.wait is None and later.need is None
    assert assignment(paused, steps, NAMES) == {"ap-south": NEW, "eu-central": OLD, "us-east": OLD}


def test_a_promote_starts_the_next_step_without_judging_it() -> None:
    """Every location serves what the paused step gave it (`in_sync` is all of them): that
    says nothing of the next step, whose locations have not been sent the version yet."""
    on = progress(_paused(), STEPS, ALL, {}, T0, actions=Actions(promote=P1)).state
    assert (on.phase, on.step) == (RolloutPhase.PROGRESSING, 2)
    assert assignment(on, STEPS, NAMES) == dict.fromkeys(NAMES, NEW)
    # The next pass, once the pushes landed, completes it.
    assert progress(on, STEPS, ALL, {}, T0, actions=Actions(promote=P1)).state.phase is (
        RolloutPhase.COMPLETE
    )


def test_a_pause_waits_until_its_locations_serve_the_version() -> None:
    steps = plan_steps(
        Rollout.model_validate(
            {"strategy": "Progressive", "steps": [{"count": 1, "pause": {}}, {"count": 3}]}
        ),
        TARGETS,
    )
    state = begin(NEW, OLD, None, 2)
    assert progress(state, steps, {"eu-central"}, {}, T0).state == state
    paused = progress(state, steps, {"ap-south"}, {}, T0).state
    assert paused.phase is RolloutPhase.PAUSED and paused.paused_since == T0


def test_an_early_promote_acts_when_its_pause_comes() -> None:
    holding = progress(_holding(), STEPS, ALL, {}, T0, actions=Actions(promote=P1)).state
    assert holding.actions == []
    end = T0 + timedelta(seconds=10)
    paused = progress(holding, STEPS, ALL, {}, end, actions=Actions(promote=P1)).state
    # The reconcile passes again whenever a pass moved the state: the pause ends there.
    on = progress(paused, STEPS, ALL, {}, end, actions=Actions(promote=P1))
    assert (on.state.phase, on.state.step) == (RolloutPhase.PROGRESSING, 2)
    assert [(a.action, a.applied, a.step) for a in on.state.actions] == [
        (RolloutActionKind.PROMOTE, True, 1)
    ]


def test_a_pause_on_the_last_step_completes_when_promoted() -> None:
    one = Rollout.model_validate(
        {"strategy": "Progressive", "steps": [{"count": 3, "pause": {}}]}
    )
    steps = plan_steps(one, TARGETS)
    paused = progress(begin(NEW, OLD, None, 1), steps, ALL, {}, T0).state
    assert paused.phase is RolloutPhase.PAUSED
    done = progress(paused, steps, ALL, {}, T0, actions=Actions(promote=P1)).state
    assert done.phase is RolloutPhase.COMPLETE and done.paused_since is None


def test_a_pause_taken_out_of_the_spec_lets_the_rollout_go_on() -> None:
    unpaused = plan_steps(
        Rollout.model_validate(
            {"strategy": "Progressive", "steps": [{"count": 1, "holdSeconds": 10}, {"count": 3}]}
        ),
        TARGETS,
    )
    on = progress(_paused(), unpaused, {"ap-south"}, {}, T0).state
    assert (on.phase, on.step, on.paused_since) == (RolloutPhase.PROGRESSING, 2, None)


def test_a_refusal_during_a_pause_still_rolls_back() -> None:
    rolled = progress(_paused(), STEPS, ALL, {"ap-south": "422: x"}, T0).state
    assert rolled.phase is RolloutPhase.ROLLED_BACK and rolled.failure is not None


def test_a_paused_state_survives_a_restart_and_a_new_version_starts_over() -> None:
    ignored = Actions(abort=OLD[:12])
    paused = progress(_paused(), STEPS, ALL, {}, T0, actions=ignored).state
    assert paused.phase is RolloutPhase.PAUSED and len(paused.actions) == 1
    wire = paused.to_wire()
    assert wire["phase"] == "Paused" and wire["pausedSince"] == "2026-11-01T00:00:10Z"
    back = RolloutStatus.model_validate(wire)
    assert back == paused and begin(NEW, OLD, back, 2) == paused
    fresh = begin("c" * 64, OLD, back, 2)
    assert fresh.phase is RolloutPhase.PROGRESSING and fresh.actions == []


@pytest.mark.parametrize(
    ("annotations", "expected"),
    [
        (None, Actions()),
        ({"other": "x"}, Actions()),
        ({PROMOTE_ANNOTATION: "abc/1", ABORT_ANNOTATION: "abc"}, Actions("abc/1", "abc")),
    ],
)
def test_read_actions(annotations: dict | None, expected: Actions) -> None:
    assert read_actions(annotations) == expected


def test_pause_is_an_empty_object() -> None:
    step = RolloutStep.model_validate({"count": 1, "pause": {}})
    assert step.pause is not None and step.to_wire() == {"count": 1, "holdSeconds": 0,
                                                         "pause": {}}
    assert RolloutStep.model_validate({"count": 1}).pause is None
    with pytest.raises(ValidationError, match="pause"):
        RolloutStep.model_validate({"count": 1, "pause": {"seconds": 5}})


def _outcomes(new_at: set[str]) -> list[TargetOutcome]:
    return [
        TargetOutcome(n, TargetState.READY, NEW)
        if n in new_at
        else TargetOutcome(n, TargetState.PENDING, OLD)
        for n in NAMES
    ]


def test_status_says_paused_and_each_action_once() -> None:
    holding = _holding()
    before, _ = worker_status(None, 1, NEW, _outcomes({"ap-south"}), None, T0, holding)
    before = before.model_copy(update={"ready_version": OLD})
    paused = _paused()
    status, events = worker_status(before, 1, NEW, _outcomes({"ap-south"}), None, T0, paused)
    conds = {c.type: c for c in status.conditions}
    assert [(c.status.value, c.reason) for c in conds.values()] == [("False", "Paused")] * 3
    assert "paused at step 1/2 since 2026-11-01T00:00:10+00:00" in conds["Ready"].message
    assert f'edgeplane.io/promote: "{P1}"' in conds["Ready"].message
    assert [(e.type, e.reason) for e in events] == [("Normal", "Paused")]
    # The same pause again: no second Event.
    _, events = worker_status(status, 1, NEW, _outcomes({"ap-south"}), None, T0, paused)
    assert events == []

    stale = progress(paused, STEPS, ALL, {}, T0, actions=Actions(promote=f"{OLD[:12]}/1")).state
    status2, events = worker_status(status, 1, NEW, _outcomes({"ap-south"}), None, T0, stale)
    assert [(e.type, e.reason) for e in events] == [("Warning", "RolloutActionIgnored")]
    assert "names version 'aaaaaaaaaaaa'" in events[0].message

    promoted = progress(stale, STEPS, {"ap-south"}, {}, T0, actions=Actions(promote=P1)).state
    _, events = worker_status(status2, 1, NEW, _outcomes({"ap-south"}), None, T0, promoted)
    assert [(e.type, e.reason) for e in events] == [
        ("Normal", "StepPassed"),
        ("Normal", "Promoted"),
    ]

    aborted = progress(stale, STEPS, ALL, {}, T0, actions=Actions(abort=NEW)).state
    back = [TargetOutcome(n, TargetState.ROLLED_BACK, OLD) for n in NAMES]
    status3, events = worker_status(status2, 1, NEW, back, None, T0, aborted)
    assert [(e.type, e.reason) for e in events] == [
        ("Warning", "RolledBack"),
        ("Normal", "Aborted"),
    ]
    ready = {c.type: c for c in status3.conditions}["Ready"]
    assert ready.reason == "RolledBack"
    assert "version bbbbbbbbbbbb rolled back at step 1/2: aborted (edgeplane.io/abort)" in (
        ready.message
    )
    assert status3.ready_version == OLD and status3.failed_versions == [NEW]


def test_a_paused_last_step_is_not_the_ready_version_until_promoted() -> None:
    one = Rollout.model_validate(
        {"strategy": "Progressive", "steps": [{"count": 3, "pause": {}}]}
    )
    paused = progress(begin(NEW, OLD, None, 1), plan_steps(one, TARGETS), ALL, {}, T0).state
    prev, _ = worker_status(None, 1, OLD, _outcomes(set()), None, T0, None)
    prev = prev.model_copy(update={"ready_version": OLD})
    status, _ = worker_status(prev, 2, NEW, _outcomes(ALL), None, T0, paused)
    # Every location serves it, yet an abort may still send them back to OLD.
    assert status.ready_targets == "3/3" and status.ready_version == OLD
    assert {c.type: c.reason for c in status.conditions}["Ready"] == "Paused"


def test_a_held_last_step_is_not_the_ready_version_until_its_gate_passed() -> None:
    bake = Rollout.model_validate(
        {"strategy": "Progressive",
         "steps": [{"count": 3, "holdSeconds": 60, "gate": {"probe": {"path": "/h"}}}]}
    )
    holding = progress(begin(NEW, OLD, None, 1), plan_steps(bake, TARGETS), ALL, {}, T0).state
    assert holding.phase is RolloutPhase.HOLDING
    prev, _ = worker_status(None, 1, OLD, _outcomes(set()), None, T0, None)
    prev = prev.model_copy(update={"ready_version": OLD})
    status, events = worker_status(prev, 2, NEW, _outcomes(ALL), None, T0, holding)
    # A failing gate still sends every location back to OLD: OLD stays what the next
    # rollout starts from, and the Worker is not Ready (nor announced Deployed) yet.
    assert status.ready_targets == "3/3" and status.ready_version == OLD
    assert {c.type: c.reason for c in status.conditions}["Ready"] == "Holding"
    assert "Deployed" not in [e.reason for e in events]
    # Its gate fails: the write that records the rollback still sees every location on it.
    bad = Observed(probes=dict.fromkeys(NAMES, ProbeResult("http://x/h", 500, "sick")))
    rolled = progress(holding, plan_steps(bake, TARGETS), ALL, {}, T0 + timedelta(minutes=1),
                      bad).state
    assert rolled.phase is RolloutPhase.ROLLED_BACK
    status, _ = worker_status(status, 2, NEW, _outcomes(ALL), None, T0, rolled)
    assert status.ready_version == OLD


def test_an_abort_left_on_the_worker_aborts_that_version_when_it_comes_back() -> None:
    """As the README says: the annotation stays, so X -> Y -> X aborts X again at once,
    while Y (another version) only reports it as ignored."""
    left = Actions(abort=NEW[:12])
    aborted = progress(_paused(), STEPS, ALL, {}, T0, actions=left).state
    other = progress(begin("c" * 64, OLD, aborted, 2), STEPS, set(), {}, T0, actions=left).state
    assert other.phase is RolloutPhase.PROGRESSING
    assert [(a.action, a.applied) for a in other.actions] == [(RolloutActionKind.ABORT, False)]
    again = progress(begin(NEW, OLD, other, 2), STEPS, set(), {}, T0, actions=left).state
    assert again.phase is RolloutPhase.ROLLED_BACK
