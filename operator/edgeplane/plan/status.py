"""A Worker's status from what one reconcile observed, and the Events its changes deserve.

kstatus rules: Reconciling is True while the operator still has work it will do by
itself; Stalled is True when nothing will change without a change from the user; Ready is
True only when every selected target serves the latest version.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from edgeplane.api import ConditionStatus, WorkerStatus, get_condition, set_condition
from edgeplane.api.worker import TargetStatus


class TargetState(StrEnum):
    READY = "Ready"  # serves the latest version
    DEPLOYING = "Deploying"  # a push is due or under way
    FAILED = "Failed"  # the agent refused the latest version
    UNREACHABLE = "Unreachable"


@dataclass(frozen=True)
class TargetOutcome:
    name: str
    state: TargetState
    version: str | None  # the version the target serves now, if known
    message: str = ""


@dataclass(frozen=True)
class Stall:
    """The reconcile cannot progress without a change from the user."""

    reason: str  # e.g. SourceNotFound, ScriptInvalid, NoTargets
    message: str


@dataclass(frozen=True)
class Event:
    type: str  # Normal or Warning
    reason: str
    message: str


FAILURE_REASONS = frozenset(
    {
        "TargetUnreachable",
        "ScriptInvalid",
        "SourceNotFound",
        "NoTargets",
        "ScriptTooLarge",
        "SourceChecksumMismatch",
        "InvalidSource",
        "InvalidSpec",
        "RouteConflict",
    }
)


def worker_status(
    prev: WorkerStatus | None,
    generation: int,
    latest: str | None,
    outcomes: list[TargetOutcome],
    stall: Stall | None,
    now: datetime,
) -> tuple[WorkerStatus, list[Event]]:
    prev = prev or WorkerStatus()
    old_targets = {t.name: t for t in prev.targets}
    targets = []
    for o in outcomes:
        old = old_targets.get(o.name)
        changed = old is None or old.state != o.state or old.version != o.version
        targets.append(
            TargetStatus(
                name=o.name,
                version=o.version,
                state=o.state.value,
                message=o.message,
                last_transition_time=now if changed else old.last_transition_time,
            )
        )
    ready_count = sum(o.state is TargetState.READY for o in outcomes)
    all_ready = stall is None and bool(outcomes) and ready_count == len(outcomes)
    unreachable = [o.name for o in outcomes if o.state is TargetState.UNREACHABLE]
    short = (latest or "")[:12]

    if stall is not None:
        ready = (False, stall.reason, stall.message)
        reconciling = (False, stall.reason, "waiting for a change to the Worker or its sources")
        stalled = (True, stall.reason, stall.message)
    elif all_ready:
        msg = f"version {short} serving at {ready_count}/{len(outcomes)} targets"
        ready = (True, "Deployed", msg)
        reconciling = (False, "Deployed", msg)
        stalled = (False, "Deployed", msg)
    elif unreachable:
        msg = f"cannot reach {', '.join(unreachable)}; retrying with backoff"
        if details := "; ".join(o.message for o in outcomes if o.message and o.name in unreachable):
            msg += f" ({details})"
        ready = (False, "TargetUnreachable", msg)
        reconciling = (True, "TargetUnreachable", msg)
        stalled = (False, "TargetUnreachable", msg)
    else:
        msg = f"deploying version {short}: {ready_count}/{len(outcomes)} targets serve it"
        ready = (False, "Deploying", msg)
        reconciling = (True, "Deploying", msg)
        stalled = (False, "Deploying", msg)

    conditions = list(prev.conditions)
    for type_, (status, reason, message) in (
        ("Ready", ready),
        ("Reconciling", reconciling),
        ("Stalled", stalled),
    ):
        conditions = set_condition(
            conditions, type_, status, reason, message, observed_generation=generation, at=now
        )

    status = WorkerStatus(
        observed_generation=generation,
        conditions=conditions,
        latest_version=latest,
        ready_version=latest if all_ready else prev.ready_version,
        targets=targets,
        ready_targets=f"{ready_count}/{len(outcomes)}",
    )
    return status, _events(prev, status)


def _events(prev: WorkerStatus, new: WorkerStatus) -> list[Event]:
    before = get_condition(prev.conditions, "Ready")
    after = get_condition(new.conditions, "Ready")
    assert after is not None
    events = []
    was_ready = before is not None and before.status is ConditionStatus.TRUE
    now_ready = after.status is ConditionStatus.TRUE
    if now_ready and (not was_ready or prev.ready_version != new.ready_version):
        if before is not None and before.reason in FAILURE_REASONS:
            events.append(Event("Normal", "Recovered", f"{after.message} (was {before.reason})"))
        else:
            events.append(Event("Normal", "Deployed", after.message))
    elif (
        not now_ready
        and after.reason in FAILURE_REASONS
        and (before is None or before.reason != after.reason)
    ):
        events.append(Event("Warning", "Failed", f"{after.reason}: {after.message}"))
    return events
