"""Rollout decisions (pure): which locations serve which version, when a step's hold
ends, whether its gate passed, and when to roll back.

All progress lives in `RolloutStatus`, which the operator writes to the Worker's status
before it acts on a new step, so a restarted operator resumes exactly where it stopped:
a hold keeps its recorded end, a gate not yet judged is judged, and pushes the status
already asked for are recognised as done (they are idempotent on deployment identity).

A step with `pause` waits, once done, for a promote naming the version and the step; an
abort naming the version rolls back as a failed gate does. Both come as annotations on the
Worker (so RBAC, audit and Argo CD see them) and each value acts once: the status records
it, applied or ignored, and a value already recorded is not read again.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from edgeplane.api import (
    Gate,
    GateResult,
    RequestCount,
    Rollout,
    RolloutAction,
    RolloutActionKind,
    RolloutPhase,
    RolloutStatus,
    RolloutStrategy,
)
from edgeplane.plan.targets import TargetView

MAX_GATE_RESULTS = 64
MAX_ACTIONS = 32
PROMOTE_ANNOTATION = "edgeplane.io/promote"  # "<version>/<step>": that step's pause ends
ABORT_ANNOTATION = "edgeplane.io/abort"  # "<version>": roll that version back
MIN_VERSION_PREFIX = 8  # as for spec.version: a prefix of at least 8 hex digits


@dataclass(frozen=True)
class PlannedStep:
    targets: frozenset[str]  # every location running the new version once the step is done
    added: tuple[str, ...]  # the locations this step adds; its gate is judged at these
    hold_seconds: int = 0
    gate: Gate | None = None
    pause: bool = False  # wait for a promote once done


def plan_steps(rollout: Rollout, selected: Sequence[TargetView]) -> list[PlannedStep]:
    """Cumulative location sets, in name order; locations no step reaches get the version
    in a final step of their own."""
    names = sorted(t.name for t in selected)
    everyone = frozenset(names)
    if rollout.strategy is RolloutStrategy.ALL_AT_ONCE:
        return [PlannedStep(everyone, tuple(names))]
    labels = {t.name: dict(t.labels) for t in selected}
    steps: list[PlannedStep] = []
    done: set[str] = set()
    for s in rollout.steps:
        if s.selector is not None:
            add = [n for n in names if n not in done and s.selector.matches(labels[n])]
        else:
            share = math.ceil((s.percent or 0) * len(names) / 100)
            want = s.count if s.count is not None else share
            add = [n for n in names if n not in done][: max(0, want - len(done))]
        done.update(add)
        steps.append(
            PlannedStep(frozenset(done), tuple(add), s.hold_seconds, s.gate, s.pause is not None)
        )
    if done != everyone:
        steps.append(PlannedStep(everyone, tuple(n for n in names if n not in done)))
    return steps


def pass_limit(steps: int) -> int:
    """Most passes one reconcile makes over the state machine: each step moves at most
    twice (to its hold, then on), plus a margin; a bug can never loop a reconcile forever."""
    return 2 * steps + 4


def begin(
    desired: str, stable: str | None, prev: RolloutStatus | None, steps: int
) -> RolloutStatus:
    """The rollout to continue: the recorded one while it is for `desired`, else a new one.
    Returning to the stable version is a rollback and needs no steps."""
    if prev is not None and prev.version == desired:
        step = min(prev.step, steps)
        return prev.model_copy(update={"steps": steps, "step": step, "progress": f"{step}/{steps}"})
    if desired == stable:
        return RolloutStatus(
            version=desired,
            from_version=stable,
            phase=RolloutPhase.COMPLETE,
            step=steps,
            steps=steps,
            progress=f"{steps}/{steps}",
        )
    return RolloutStatus(
        version=desired,
        from_version=stable,
        phase=RolloutPhase.PROGRESSING,
        step=1,
        steps=steps,
        progress=f"1/{steps}",
    )


def assignment(
    state: RolloutStatus, steps: Sequence[PlannedStep], names: Sequence[str]
) -> dict[str, str | None]:
    """The version each selected location should serve now (None: not this Worker)."""
    if state.phase is RolloutPhase.COMPLETE:
        return {n: state.version for n in names}
    if state.phase is RolloutPhase.ROLLED_BACK:
        return {n: state.from_version for n in names}
    reached = steps[state.step - 1].targets
    return {n: state.version if n in reached else state.from_version for n in names}


class Need(StrEnum):
    COUNTERS = "counters"  # the request counters of the step's new locations
    GATE = "gate"  # probe results (if the gate has a probe) and the counters


@dataclass(frozen=True)
class ProbeResult:
    url: str
    status: int  # 0: no HTTP response
    body: str = ""
    error: str = ""


@dataclass(frozen=True)
class Observed:
    """What the operator fetched because a previous `progress` asked for it."""

    counters: Mapping[str, tuple[int, int]] | None = None  # target -> (total, 5xx)
    probes: Mapping[str, ProbeResult] | None = None


@dataclass(frozen=True)
class Actions:
    """The Worker's promote and abort annotations, as found (None: absent)."""

    promote: str | None = None
    abort: str | None = None


def read_actions(annotations: Mapping[str, str] | None) -> Actions:
    a = annotations or {}
    return Actions(a.get(PROMOTE_ANNOTATION), a.get(ABORT_ANNOTATION))


@dataclass(frozen=True)
class Progress:
    state: RolloutStatus
    need: Need | None = None  # fetch this for `gate_targets`, then call progress again
    wait: float | None = None  # seconds until the hold ends
    gate_targets: tuple[str, ...] = ()


def progress(
    state: RolloutStatus,
    steps: Sequence[PlannedStep],
    in_sync: set[str],
    refused: Mapping[str, str],
    now: datetime,
    observed: Observed | None = None,
    quarantined: Mapping[str, Mapping[str, str]] | None = None,
    actions: Actions | None = None,
) -> Progress:
    """One move of the state machine, given which locations serve what they were assigned
    (`in_sync`), which refused the new version (`refused`: target -> why), and what each
    location quarantined (`quarantined`: target -> version -> why; it hung their cells).
    Only the new version's quarantine counts: the stable one's is reported, never a reason
    to roll back (to what?). `actions` are the promote and abort asked for."""
    if actions is not None:
        acted = act(state, steps, actions, now)
        if (acted.phase, acted.step) != (state.phase, state.step):
            # What the locations should serve changed: `in_sync` speaks of the old
            # assignment, so the next pass pushes the new one before judging it.
            return Progress(acted)
        state = acted
    if state.phase in (RolloutPhase.COMPLETE, RolloutPhase.ROLLED_BACK):
        return Progress(state)
    step = steps[state.step - 1]
    # AllAtOnce has no step to stop at: a refusal is a stall, a quarantine is reported, and
    # the locations keep what they serve.
    progressive = len(steps) > 1 or step.gate is not None or step.hold_seconds > 0 or step.pause
    hung = {t: q[state.version] for t, q in (quarantined or {}).items() if state.version in q}
    failures = _step_failures(refused, hung)
    failing = sorted(step.targets & failures.keys())
    if progressive and failing:
        result = GateResult(
            step=state.step,
            target=failing[0],
            passed=False,
            message=failures[failing[0]][:1024],
            time=now,
        )
        return Progress(_rolled_back(state, result))
    if state.phase is RolloutPhase.PROGRESSING:
        return _progressing(state, step, in_sync, now, observed)
    if state.phase is RolloutPhase.PAUSED:
        # Until a promote or an abort; or the pause was taken out of the spec (steps are
        # no part of the version, so the rollout goes on), and no promote could end it.
        return Progress(state if step.pause else _next(state))
    return _holding(state, step, now, observed)


def _step_failures(refused: Mapping[str, str], quarantined: Mapping[str, str]) -> dict[str, str]:
    """Locations where the new version failed without a gate, with why: it refused the
    version, or quarantined it (a refusal says more, so it wins at one location)."""
    out = {
        t: f"the location quarantined the version: {why or 'no reason given'}"
        for t, why in quarantined.items()
    }
    out.update({t: f"the location refused the version: {why}" for t, why in refused.items()})
    return out


def _progressing(
    state: RolloutStatus,
    step: PlannedStep,
    in_sync: set[str],
    now: datetime,
    observed: Observed | None,
) -> Progress:
    """A step's pushes: once its locations serve the version, its hold starts (with the
    request counters as the error-rate baseline) or, with no hold and no gate, it is done."""
    if not step.targets <= in_sync:
        return Progress(state)  # pushes still under way
    if step.hold_seconds == 0 and step.gate is None:
        return Progress(_step_done(state, step, now))
    needs_counts = step.gate is not None and step.gate.max_error_percent is not None
    if needs_counts and (observed is None or observed.counters is None):
        return Progress(state, Need.COUNTERS, gate_targets=step.added)
    baseline = [
        RequestCount(target=t, total=c[0], errors=c[1])
        for t, c in sorted(((observed.counters or {}) if observed else {}).items())
    ]
    return Progress(
        state.model_copy(
            update={
                "phase": RolloutPhase.HOLDING,
                "hold_start": now,
                "hold_until": now + timedelta(seconds=step.hold_seconds),
                "baseline": baseline,
            }
        )
    )


def _holding(
    state: RolloutStatus, step: PlannedStep, now: datetime, observed: Observed | None
) -> Progress:
    """A step's hold: wait for its end, then judge its gate at the locations it added."""
    assert state.hold_until is not None
    if now < state.hold_until:
        return Progress(state, wait=(state.hold_until - now).total_seconds())
    if step.gate is None:
        return Progress(_step_done(state, step, now))
    if observed is None or (step.gate.probe is not None and observed.probes is None):
        return Progress(state, Need.GATE, gate_targets=step.added)
    base = {b.target: (b.total, b.errors) for b in state.baseline}
    results = [
        judge(state.step, t, step.gate, observed, base.get(t, (0, 0)), now) for t in step.added
    ]
    state = state.model_copy(update={"gates": [*state.gates, *results][-MAX_GATE_RESULTS:]})
    failed = next((r for r in results if not r.passed), None)
    if failed is not None:
        return Progress(_rolled_back(state, failed))
    return Progress(_step_done(state, step, now))


def judge(
    step: int,
    target: str,
    gate: Gate,
    observed: Observed,
    baseline: tuple[int, int],
    now: datetime,
) -> GateResult:
    """The gate's verdict at one location."""
    notes: list[str] = []
    passed = True
    probe_text = response = None
    if gate.probe is not None:
        p = (observed.probes or {}).get(target) or ProbeResult(url="", status=0, error="no answer")
        probe_text = f"GET {p.url}" if p.url else f"GET {gate.probe.path}"
        if p.status == 0:
            response = f"no response: {p.error}"[:600]
            passed = False
            notes.append("the probe got no response")
        else:
            response = f"{p.status} {p.body}"[:600]
            if p.status != gate.probe.expect_status:
                passed = False
                notes.append(f"status {p.status}, expected {gate.probe.expect_status}")
            elif gate.probe.body_contains is not None and gate.probe.body_contains not in p.body:
                passed = False
                notes.append(f"the body does not contain {gate.probe.body_contains!r}")
            else:
                notes.append(f"probe answered {p.status}")
    if gate.max_error_percent is not None:
        total, errors = (observed.counters or {}).get(target, baseline)
        # An agent restart resets its counters: count from zero then.
        if total < baseline[0]:
            baseline = (0, 0)
        d_total, d_errors = total - baseline[0], errors - baseline[1]
        if d_total < gate.min_requests:
            notes.append(
                f"{d_total} requests during the hold, fewer than minRequests "
                f"{gate.min_requests}: error rate not judged"
            )
        else:
            rate = 100.0 * d_errors / d_total
            verdict = "over" if rate > gate.max_error_percent else "within"
            notes.append(
                f"{d_errors}/{d_total} requests failed ({rate:.2f}%), {verdict} "
                f"maxErrorPercent {gate.max_error_percent:g}"
            )
            passed = passed and rate <= gate.max_error_percent
    return GateResult(
        step=step,
        target=target,
        passed=passed,
        probe=probe_text,
        response=response,
        message="; ".join(notes)[:1024],
        time=now,
    )


def _step_done(state: RolloutStatus, step: PlannedStep, now: datetime) -> RolloutStatus:
    """A step whose locations serve the version and whose gate passed: on to the next,
    or paused there until promoted."""
    if not step.pause:
        return _next(state)
    clear = {"hold_start": None, "hold_until": None, "baseline": []}
    return state.model_copy(update={**clear, "phase": RolloutPhase.PAUSED, "paused_since": now})


def _next(state: RolloutStatus) -> RolloutStatus:
    clear = {"hold_start": None, "hold_until": None, "baseline": [], "paused_since": None}
    if state.step >= state.steps:
        return state.model_copy(update={**clear, "phase": RolloutPhase.COMPLETE})
    step = state.step + 1
    return state.model_copy(
        update={
            **clear,
            "phase": RolloutPhase.PROGRESSING,
            "step": step,
            "progress": f"{step}/{state.steps}",
        }
    )


def _rolled_back(state: RolloutStatus, failure: GateResult | None) -> RolloutStatus:
    """Every location back on fromVersion: a gate failed (`failure`) or it was aborted."""
    gates = state.gates if failure is None or failure in state.gates else [*state.gates, failure]
    return state.model_copy(
        update={
            "phase": RolloutPhase.ROLLED_BACK,
            "failure": failure,
            "gates": gates[-MAX_GATE_RESULTS:],
            "hold_start": None,
            "hold_until": None,
            "baseline": [],
            "paused_since": None,
        }
    )



def act(
    state: RolloutStatus, steps: Sequence[PlannedStep], actions: Actions, now: datetime
) -> RolloutStatus:
    """Apply the abort, then the promote, each recorded once in status.rollout.actions
    (applied or ignored with why). A promote of a pause not reached yet waits for it, so a
    promote sent early, or twice, does no harm."""
    wanted = (
        (RolloutActionKind.ABORT, actions.abort),
        (RolloutActionKind.PROMOTE, actions.promote),
    )
    for kind, value in wanted:
        if value is None:
            continue
        key = value[:128]  # as recorded: a longer value must match its record too
        if any(a.action is kind and a.value == key for a in state.actions):
            continue
        if kind is RolloutActionKind.ABORT:
            verdict = _abort_verdict(state, value)
        else:
            verdict = _promote_verdict(state, steps, value)
        if verdict is None:
            continue
        applied, message = verdict
        record = RolloutAction(
            action=kind,
            value=key,
            step=state.step,
            applied=applied,
            message=message[:1024],
            time=now,
        )
        actions_ = [*state.actions, record][-MAX_ACTIONS:]
        state = state.model_copy(update={"actions": actions_})
        if applied and kind is RolloutActionKind.ABORT:
            state = _rolled_back(state, None)
        elif applied:
            state = _next(state)
    return state


def names_version(value: str, version: str) -> bool:
    """Whether an annotation's version (full, or a prefix of at least 8 hex digits) is
    `version`."""
    v = value.strip().lower()
    return len(v) >= MIN_VERSION_PREFIX and version.startswith(v)


def _other_version(value: str, state: RolloutStatus) -> str:
    return (
        f"names version {value!r}, but the rollout is of version {state.version[:12]}: "
        "ignored (stale, or a typo)"
    )


def _abort_verdict(state: RolloutStatus, value: str) -> tuple[bool, str]:
    short = state.version[:12]
    if not names_version(value, state.version):
        return False, f"{ABORT_ANNOTATION} {_other_version(value, state)}"
    if state.phase is RolloutPhase.COMPLETE:
        return False, (
            f"{ABORT_ANNOTATION}: version {short} already reached every location; nothing "
            "to abort (to go back, set spec.version: `edgeplane rollout undo`)"
        )
    if state.phase is RolloutPhase.ROLLED_BACK:
        return False, f"{ABORT_ANNOTATION}: version {short} is already rolled back"
    back = state.from_version[:12] if state.from_version else "nothing (no earlier version)"
    return True, (
        f"version {short} aborted at step {state.step}/{state.steps}: every location goes "
        f"back to {back}"
    )


def _promote_verdict(
    state: RolloutStatus, steps: Sequence[PlannedStep], value: str
) -> tuple[bool, str] | None:
    """None: the promote names a pause of this rollout not reached yet."""
    version, sep, number = value.strip().rpartition("/")
    if not sep or not number.isdigit():
        return False, (
            f"{PROMOTE_ANNOTATION}: {value!r} is not <version>/<step>, e.g. "
            f"{state.version[:12]}/{state.step}: ignored"
        )
    if not names_version(version, state.version):
        return False, f"{PROMOTE_ANNOTATION} {_other_version(version, state)}"
    n, short = int(number), state.version[:12]
    if state.phase in (RolloutPhase.COMPLETE, RolloutPhase.ROLLED_BACK):
        return False, (
            f"{PROMOTE_ANNOTATION}: the rollout of version {short} is "
            f"{state.phase.value}; nothing to promote"
        )
    if not 1 <= n <= len(steps) or not steps[n - 1].pause:
        return False, f"{PROMOTE_ANNOTATION}: step {n} of version {short} has no pause: ignored"
    if n < state.step:
        return False, f"{PROMOTE_ANNOTATION}: step {n} of version {short} is already done"
    if n > state.step or state.phase is not RolloutPhase.PAUSED:
        return None
    return True, f"version {short} promoted past step {n}/{state.steps}"
