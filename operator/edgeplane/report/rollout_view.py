"""`edgeplane rollout status` as text (pure): the steps (✓ done, ▶ current, · to come, ✗
where it rolled back), the locations each step reaches, the version each location serves,
the gate results and the time left in a hold. Step membership is recomputed with the
operator's own `plan_steps`, so the status needs no copy of it."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from edgeplane.api import (
    GateResult,
    RolloutPhase,
    RolloutStatus,
    RolloutStep,
    RolloutStrategy,
    Worker,
)
from edgeplane.plan.rollout import PlannedStep, plan_steps
from edgeplane.plan.targets import TargetView

DONE, CURRENT, TO_COME, FAILED = "✓", "▶", "·", "✗"
# Settled phases: `rollout status --watch` stops there, as `kubectl rollout status` does.
FINAL = frozenset({RolloutPhase.COMPLETE, RolloutPhase.ROLLED_BACK})


def short(version: str | None) -> str:
    return version[:12] if version else "-"


def duration(seconds: float) -> str:
    """`1h02m`, `3m05s`, `42s`: time left in a hold, or time paused."""
    s = max(0, round(seconds))
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"


def render(worker: Worker, selected: Sequence[TargetView], now: datetime) -> list[str]:
    """The lines to print for `worker`, whose selected EdgeTargets are `selected`."""
    meta = worker.metadata
    name = f"{meta.namespace}/{meta.name}"
    status = worker.status
    r = status.rollout if status else None
    if status is None or r is None:
        return [f"Worker {name}: no rollout yet (the operator has not reported on it)"]
    steps = plan_steps(worker.spec.rollout, selected)
    lines = [f"Worker {name}  {_headline(r, now)}"]
    lines.append(f"  version {short(r.version)}, from {short(r.from_version)}")
    specs = worker.spec.rollout.steps
    for k, step in enumerate(steps, start=1):
        spec = specs[k - 1] if k <= len(specs) else None
        lines.append(_step_line(k, _mark(r, k), _describe(worker, spec), step))
        lines += [f"      gate {_gate(g)}" for g in r.gates if g.step == k]
    lines.append("  locations:")
    width = max((len(t.name) for t in status.targets), default=0)
    for t in status.targets:
        note = f"  {t.message}" if t.message else ""
        lines.append(f"    {t.name:<{width}}  {short(t.version)}  {t.state}{note}")
    lines += [f"  {a.action.value.lower()} {a.value!r}: {a.message}" for a in r.actions]
    lines += _next_move(r, meta.name, meta.namespace or "")
    return lines


def _headline(r: RolloutStatus, now: datetime) -> str:
    text = f"{r.phase.value} (step {r.progress})"
    if r.phase is RolloutPhase.HOLDING and r.hold_until is not None:
        text += f", hold ends in {duration((r.hold_until - now).total_seconds())}"
    if r.phase is RolloutPhase.PAUSED and r.paused_since is not None:
        text += f", paused for {duration((now - r.paused_since).total_seconds())}"
    return text


def _mark(r: RolloutStatus, k: int) -> str:
    if r.phase is RolloutPhase.COMPLETE or k < r.step:
        return DONE
    if k == r.step:
        return FAILED if r.phase is RolloutPhase.ROLLED_BACK else CURRENT
    return TO_COME


def _describe(worker: Worker, spec: RolloutStep | None) -> str:
    if worker.spec.rollout.strategy is RolloutStrategy.ALL_AT_ONCE:
        return "all at once"
    if spec is None:
        return "the rest"
    if spec.count is not None:
        parts = [f"count {spec.count}"]
    elif spec.percent is not None:
        parts = [f"{spec.percent}%"]
    else:
        parts = ["selector"]
    if spec.hold_seconds:
        parts.append(f"hold {duration(spec.hold_seconds)}")
    if spec.gate is not None:
        parts.append("gate")
    if spec.pause is not None:
        parts.append("pause")
    return ", ".join(parts)


def _step_line(k: int, mark: str, what: str, step: PlannedStep) -> str:
    added = ", ".join(step.added) or "(no location)"
    return f"  {mark} {k}  {what:<28} +{added}"


def _gate(g: GateResult) -> str:
    verdict = "passed" if g.passed else "FAILED"
    probe = f" {g.probe} -> {g.response}" if g.probe else ""
    return f"{g.target}: {verdict}{probe} ({g.message})"


def _next_move(r: RolloutStatus, name: str, ns: str) -> list[str]:
    """What the reader can do now, as commands."""
    where = f"{name} -n {ns}"
    if r.phase is RolloutPhase.PAUSED:
        then = f"step {r.step + 1}" if r.step < r.steps else "completion"
        return [
            f"  paused: `edgeplane rollout promote {where}` goes on to {then}, "
            f"`edgeplane rollout abort {where}` rolls back"
        ]
    if r.phase is RolloutPhase.ROLLED_BACK:
        why = f": {r.failure.target}: {r.failure.message}" if r.failure else " (aborted)"
        return [f"  rolled back{why}; every location serves {short(r.from_version)}"]
    return []
