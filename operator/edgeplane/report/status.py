"""A Worker's status from what one reconcile observed, and the Events its changes deserve.

kstatus rules: Reconciling is True while the operator still has work it will do by
itself; Stalled is True when nothing will change without a change from the user; Ready is
True only when every selected target serves the latest version.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from edgeplane.api import (
    ConditionStatus,
    RolloutActionKind,
    RolloutPhase,
    RolloutStatus,
    WorkerStatus,
    get_condition,
    set_condition,
)
from edgeplane.api.worker import MAX_TARGET_MESSAGE, TargetStatus
from edgeplane.wire import MissingService


class TargetState(StrEnum):
    READY = "Ready"  # serves the latest version
    PENDING = "Pending"  # serves the previous version until its rollout step comes
    ROLLED_BACK = "RolledBack"  # serves the version a failed gate rolled back to
    DEPLOYING = "Deploying"  # a push is due or under way
    FAILED = "Failed"  # the agent refused the latest version
    UNREACHABLE = "Unreachable"
    QUARANTINED = "Quarantined"  # refuses to run a version it serves: it hung its cell
    SERVICE_MISSING = "ServiceMissing"  # a service binding's Worker is not there


@dataclass(frozen=True)
class TargetOutcome:
    name: str
    state: TargetState
    version: str | None  # the version the target serves now, if known
    message: str = ""
    quarantined: tuple[str, ...] = ()  # versions it serves and quarantined (Quarantined)


ConditionFields = tuple[bool, str, str]  # a condition's (status, reason, message)


@dataclass(frozen=True)
class TargetFacts:
    """What the operator knows about one Worker at one location."""

    reachable: bool | None = None
    message: str = ""  # why it is not reachable
    has: str | None = None  # deployment identity the location serves, if known
    serving: str | None = None  # primary version the location serves, if known
    refused: tuple[str, str] | None = None  # (identity, message) of a refused deployment
    # version -> why the location refuses to run it; any version, served or not
    quarantined: Mapping[str, str] = field(default_factory=dict)
    missing_services: tuple[MissingService, ...] = ()  # of the primary it serves
    reason: str = ""  # why it is not reachable, in a word: Unreachable, CredentialsRejected


def target_outcome(
    name: str,
    facts: TargetFacts,
    identity: str | None,
    assigned: str | None,
    rollout: RolloutStatus | None,
    live: Iterable[str] = (),
) -> TargetOutcome:
    """The state of one location for the Worker's status: `identity` is the deployment it
    should have, `assigned` the version the rollout gives it, `live` the versions that
    deployment runs requests on. Unreachable first (nothing else is current), then a
    quarantined version it serves, then a missing service, then the rollout's view."""
    if facts.reachable is False:
        message = facts.message
        if facts.reason and facts.reason != TargetState.UNREACHABLE:
            message = f"{facts.reason}: {message}"  # e.g. a token the agent rejects
        return TargetOutcome(name, TargetState.UNREACHABLE, facts.serving, message)
    if hung := serving_quarantined(facts, identity, live):
        message = quarantine_message(name, hung, facts.quarantined)
        return TargetOutcome(name, TargetState.QUARANTINED, facts.serving, message, hung)
    if facts.missing_services:
        message = missing_services_message(name, facts.missing_services)
        return TargetOutcome(name, TargetState.SERVICE_MISSING, facts.serving, message)
    if rollout is not None and facts.has == identity:
        if assigned == rollout.version:
            return TargetOutcome(name, TargetState.READY, facts.serving)
        if rollout.phase is RolloutPhase.ROLLED_BACK:
            return TargetOutcome(name, TargetState.ROLLED_BACK, facts.serving)
        return TargetOutcome(name, TargetState.PENDING, facts.serving)
    if facts.refused and identity and facts.refused[0] == identity:
        return TargetOutcome(name, TargetState.FAILED, facts.serving, facts.refused[1])
    return TargetOutcome(name, TargetState.DEPLOYING, facts.serving)


def serving_quarantined(
    facts: TargetFacts, identity: str | None, live: Iterable[str]
) -> tuple[str, ...]:
    """The versions the location runs requests on and has quarantined: the primary it
    serves, and once it has the deployment it should have, every version that deployment
    gives traffic to. A quarantined version it keeps without traffic harms nobody."""
    serving = set(live) if identity is not None and facts.has == identity else set()
    if facts.serving:
        serving.add(facts.serving)
    return tuple(sorted(v for v in serving if v in facts.quarantined))


# A location's reason for a quarantine is its own text; a message holds a few of them, so
# each is cut to this many characters (after redaction, which needs the whole text).
MAX_QUARANTINE_REASON = 300
QUARANTINE_FIX = (
    "fix the code and apply the Worker (quarantine is per version), or move the traffic "
    "to another version"
)


def quarantine_message(target: str, versions: tuple[str, ...], why: Mapping[str, str]) -> str:
    """Names each quarantined version (short id) with the agent's reason."""
    why = {v: r[:MAX_QUARANTINE_REASON] for v, r in why.items()}
    if len(versions) == 1:
        v = versions[0]
        reason = f": {why[v]}" if why.get(v) else ""
        return f"version {v[:12]} is quarantined at {target}{reason}; {target} answers 502 for it"
    each = ", ".join(v[:12] + (f" ({why[v]})" if why.get(v) else "") for v in versions)
    return f"versions {each} are quarantined at {target}; {target} answers 502 for them"


def missing_services_message(target: str, missing: tuple[MissingService, ...]) -> str:
    """Names each binding and the Worker it calls (`namespace/name`), and the two fixes."""
    if len(missing) == 1:
        binding, worker = missing[0].binding, missing[0].worker.replace(".", "/", 1)
        return (
            f"service binding {binding} calls Worker {worker}, which is not deployed at "
            f"{target}, so requests through it fail: deploy {worker} to the same targets as "
            "this Worker, or remove the binding"
        )
    calls = ", ".join(f"{m.binding} (Worker {m.worker.replace('.', '/', 1)})" for m in missing)
    return (
        f"service bindings {calls} call Workers not deployed at {target}, so requests through "
        "them fail: deploy those Workers to the same targets as this Worker, or remove the "
        "bindings"
    )


# States the operator does no more work on by itself: the rollout's (Ready, Pending,
# RolledBack), and those that change only with the location's news (a health check
# requeues the Worker when a quarantine or a missing service comes or goes).
SETTLED = frozenset(
    {
        TargetState.READY,
        TargetState.PENDING,
        TargetState.ROLLED_BACK,
        TargetState.QUARANTINED,
        TargetState.SERVICE_MISSING,
    }
)


# A requeue decision: reconcile again after the work queue's per-key backoff.
BACKOFF = "backoff"
Requeue = float | str | None  # seconds, BACKOFF, or None: only when something changes


def requeue_after(outcomes: list[TargetOutcome], stall: Stall | None, wait: Requeue) -> Requeue:
    """When to reconcile the Worker again by itself: never while stalled (a change from the
    user, which is watched, must come first); with backoff while a location has not
    settled; else when the rollout asks to (`wait`, e.g. the end of a hold)."""
    if stall is not None:
        return BACKOFF if stall.retry else None
    if any(o.state not in SETTLED for o in outcomes):
        return BACKOFF
    return wait


@dataclass(frozen=True)
class Stall:
    """The reconcile cannot progress without a change from the user."""

    reason: str  # e.g. SourceNotFound, ScriptInvalid, NoTargets
    message: str
    # The operator retries by itself (with backoff), e.g. a route another Worker still
    # holds: reported as Reconciling, not Stalled.
    retry: bool = False


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
        "RolledBack",
        "VersionNotFound",
        "ArchiveUnavailable",
        "ArtifactUnavailable",
        "ArtifactNotFound",
        "ArtifactDigestMismatch",
        "ArtifactTooLarge",
        "Quarantined",
        "ServiceMissing",
    }
)
# Failures announced per location (`_target_events`) rather than by one Failed Event.
PER_TARGET_EVENTS = frozenset({"Quarantined", "ServiceMissing"})
MAX_FAILED_VERSIONS = 10
# The locations a Ready condition's message details; status.targets[] has them all.
MAX_DETAILED = 3


def worker_status(
    prev: WorkerStatus | None,
    generation: int,
    latest: str | None,
    outcomes: list[TargetOutcome],
    stall: Stall | None,
    now: datetime,
    rollout: RolloutStatus | None = None,
) -> tuple[WorkerStatus, list[Event]]:
    prev = prev or WorkerStatus()
    ready_count = sum(o.state is TargetState.READY for o in outcomes)
    all_ready = stall is None and bool(outcomes) and ready_count == len(outcomes)
    # A held or paused last step serves the version everywhere, yet its gate may still
    # fail or it may be aborted; and the write that records a rollback still sees every
    # location on it. Only a Complete rollout makes it the version to roll back to.
    all_ready = all_ready and (rollout is None or rollout.phase is RolloutPhase.COMPLETE)
    triple = _conditions(outcomes, stall, rollout, latest, ready_count, all_ready)
    phase = rollout.phase if rollout else None

    conditions = list(prev.conditions)
    for type_, (status, reason, message) in zip(
        ("Ready", "Reconciling", "Stalled"), triple, strict=True
    ):
        conditions = set_condition(
            conditions, type_, status, reason, message, observed_generation=generation, at=now
        )

    failed = list(prev.failed_versions)
    if phase is RolloutPhase.ROLLED_BACK and rollout and rollout.version not in failed:
        failed = [*failed, rollout.version][-MAX_FAILED_VERSIONS:]
    status = WorkerStatus(
        observed_generation=generation,
        conditions=conditions,
        latest_version=latest,
        ready_version=latest if all_ready else prev.ready_version,
        targets=_targets(prev, outcomes, now),
        rollout=rollout,
        failed_versions=failed,
        ready_targets=f"{ready_count}/{len(outcomes)}",
    )
    return status, _events(prev, status)


def invalid_spec(
    prev: WorkerStatus, generation: int, message: str, now: datetime
) -> tuple[WorkerStatus, list[Event]]:
    """A Worker the apiserver took but the operator's own checks refuse (one the schema
    cannot make, e.g. a cron expression for 30 February): Stalled with reason InvalidSpec
    and `message` (the fields at fault); what locations serve, and the rest of the status,
    stay as they were. A Warning once per distinct message, not at every resync."""
    ready = get_condition(prev.conditions, "Ready")
    text = f"spec: {message}; fix the spec (the last good version keeps serving)"
    conditions = list(prev.conditions)
    for type_, status in (("Ready", False), ("Reconciling", False), ("Stalled", True)):
        conditions = set_condition(
            conditions, type_, status, "InvalidSpec", text, observed_generation=generation, at=now
        )
    new = prev.model_copy(update={"conditions": conditions, "observed_generation": generation})
    repeated = ready is not None and ready.reason == "InvalidSpec" and ready.message == text
    return new, [] if repeated else [Event("Warning", "InvalidSpec", text)]


def _targets(
    prev: WorkerStatus, outcomes: list[TargetOutcome], now: datetime
) -> list[TargetStatus]:
    """status.targets[]: a location's transition time moves only when its state or version
    does."""
    old_targets = {t.name: t for t in prev.targets}
    targets = []
    for o in outcomes:
        old = old_targets.get(o.name)
        changed = old is None or old.state != o.state or old.version != o.version
        # What a location quarantined stays recorded while it does not answer, so its
        # coming back announces nothing again.
        quarantined = list(o.quarantined) or (
            old.quarantined if old and o.state is TargetState.UNREACHABLE else None
        )
        targets.append(
            TargetStatus(
                name=o.name,
                version=o.version,
                state=o.state.value,
                message=o.message[:MAX_TARGET_MESSAGE],
                quarantined=quarantined,
                last_transition_time=now if changed or old is None else old.last_transition_time,
            )
        )
    return targets


def _conditions(
    outcomes: list[TargetOutcome],
    stall: Stall | None,
    rollout: RolloutStatus | None,
    latest: str | None,
    ready_count: int,
    all_ready: bool,
) -> tuple[ConditionFields, ConditionFields, ConditionFields]:
    """Ready, Reconciling and Stalled, in the kstatus sense."""
    unreachable = [o.name for o in outcomes if o.state is TargetState.UNREACHABLE]
    moving = any(o.state in (TargetState.DEPLOYING, TargetState.UNREACHABLE) for o in outcomes)
    short = (latest or "")[:12]
    phase = rollout.phase if rollout else None
    step = f"step {rollout.progress}: " if rollout and rollout.steps > 1 else ""
    if stall is not None and stall.retry:
        msg = f"{stall.message}; retrying with backoff"
        return (False, stall.reason, msg), (True, stall.reason, msg), (False, stall.reason, msg)
    if stall is not None:
        return (
            (False, stall.reason, stall.message),
            (False, stall.reason, "waiting for a change to the Worker or its sources"),
            (True, stall.reason, stall.message),
        )
    if rollout is not None and phase is RolloutPhase.ROLLED_BACK:
        msg = _rolled_back_message(rollout)
        reason = "RolledBack"
        return (False, reason, msg), (moving, reason, msg), (not moving, reason, msg)
    if all_ready:
        msg = f"version {short} serving at {ready_count}/{len(outcomes)} targets"
        return (True, "Deployed", msg), (False, "Deployed", msg), (False, "Deployed", msg)
    if hung := [o for o in outcomes if o.state is TargetState.QUARANTINED]:
        # Only a new version (or traffic moved off it) helps: stalled once nothing moves.
        msg, reason = f"{_detailed(hung)}; {QUARANTINE_FIX}", "Quarantined"
        return (False, reason, msg), (moving, reason, msg), (not moving, reason, msg)
    if unreachable:
        msg = f"cannot reach {', '.join(unreachable)}; retrying with backoff"
        if details := "; ".join(o.message for o in outcomes if o.message and o.name in unreachable):
            msg += f" ({details})"
        reason = "TargetUnreachable"
    elif missing := [o for o in outcomes if o.state is TargetState.SERVICE_MISSING]:
        # Like a route's WorkerNotFound: the other Worker may be on its way (the same apply
        # or Argo CD sync); the location's next health check tells.
        msg = _detailed(missing)
        reason = "ServiceMissing"
    elif rollout is not None and phase is RolloutPhase.PAUSED:
        # The operator does nothing more by itself, and nothing failed: neither
        # Reconciling nor Stalled (Argo CD shows it Suspended).
        msg = f"{ready_count}/{len(outcomes)} targets serve version {short}; {paused(rollout)}"
        return (False, "Paused", msg), (False, "Paused", msg), (False, "Paused", msg)
    elif rollout is not None and phase is RolloutPhase.HOLDING and rollout.hold_until:
        msg = (
            f"{step}{ready_count}/{len(outcomes)} targets serve version {short}; holding "
            f"until {rollout.hold_until.isoformat()}"
        )
        reason = "Holding"
    else:
        msg = f"{step}deploying version {short}: {ready_count}/{len(outcomes)} targets serve it"
        reason = "Deploying"
    return (False, reason, msg), (True, reason, msg), (False, reason, msg)


def _detailed(outcomes: list[TargetOutcome]) -> str:
    """The first few locations' messages, and how many more there are."""
    msg = "; ".join(o.message for o in outcomes[:MAX_DETAILED])
    if len(outcomes) > MAX_DETAILED:
        msg += f"; and at {len(outcomes) - MAX_DETAILED} more targets (see status.targets)"
    return msg


def paused(rollout: RolloutStatus) -> str:
    """How a paused rollout goes on, in words for a condition and an Event."""
    since = rollout.paused_since.isoformat() if rollout.paused_since else "now"
    key = f"{rollout.version[:12]}/{rollout.step}"
    return (
        f"paused at step {rollout.step}/{rollout.steps} since {since}: promote with "
        f'`edgeplane rollout promote` (annotation edgeplane.io/promote: "{key}"), or abort'
    )


def _rolled_back_message(rollout: RolloutStatus) -> str:
    f = rollout.failure
    back = rollout.from_version[:12] if rollout.from_version else "nothing (no earlier version)"
    msg = f"version {rollout.version[:12]} rolled back"
    aborts = [a for a in rollout.actions if a.action is RolloutActionKind.ABORT and a.applied]
    if f is None and aborts:
        msg += f" at step {aborts[-1].step}/{rollout.steps}: aborted (edgeplane.io/abort)"
    if f is not None:
        msg += f" at step {f.step}/{rollout.steps}, {f.target}"
        if f.probe:
            msg += f": {f.probe} answered {f.response}"
        msg += f" ({f.message})"
    return f"{msg}; every location serves {back}; change the Worker to roll out again"


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
        elif was_ready or prev.ready_version is not None:
            # A first rollout announces nothing: its status and WorkerVersion say it, and
            # a burst of creates would be as many Events (and writes) saying it again.
            events.append(Event("Normal", "Deployed", after.message))
    elif (
        not now_ready
        and after.reason in FAILURE_REASONS - PER_TARGET_EVENTS
        and (before is None or before.reason != after.reason)
    ):
        if after.reason == "RolledBack":
            events.append(Event("Warning", "RolledBack", after.message))
        else:
            events.append(Event("Warning", "Failed", f"{after.reason}: {after.message}"))
    events.extend(_target_events(prev.targets, new.targets))
    events.extend(_step_events(prev.rollout, new.rollout))
    events.extend(_action_events(prev.rollout, new.rollout))
    return events


def _target_events(before: list[TargetStatus], after: list[TargetStatus]) -> list[Event]:
    """A Warning per location that quarantined a version it serves, once per version and
    location (the status records which: a resync, or the location being unreachable for a
    while, announces nothing again); and per location whose service bindings fail, once
    when that starts or the bindings named change."""
    old = {t.name: t for t in before}
    out = []
    for t in after:
        was = old.get(t.name)
        if t.state == TargetState.QUARANTINED and set(t.quarantined or ()) - set(
            (was.quarantined if was else None) or ()
        ):
            out.append(Event("Warning", "Quarantined", f"{t.message}; {QUARANTINE_FIX}"))
        elif t.state == TargetState.SERVICE_MISSING and (
            was is None or (was.state, was.message) != (t.state, t.message)
        ):
            out.append(Event("Warning", "ServiceMissing", t.message))
    return out


def _step_events(before: RolloutStatus | None, after: RolloutStatus | None) -> list[Event]:
    """One Event per step a progressive rollout got past, with its gate results."""
    if after is None or after.steps < 2 or before is None or before.version != after.version:
        return []
    out = []
    for k in range(_steps_done(before) + 1, _steps_done(after) + 1):
        gates = "; ".join(f"{g.target}: {g.message}" for g in after.gates if g.step == k)
        out.append(
            Event(
                "Normal",
                "StepPassed",
                f"version {after.version[:12]}: step {k}/{after.steps} done"
                + (f" ({gates})" if gates else ""),
            )
        )
    return out


def _action_events(before: RolloutStatus | None, after: RolloutStatus | None) -> list[Event]:
    """An Event when a step pauses, and one per promote or abort read (applied or not)."""
    if after is None:
        return []
    same = before is not None and before.version == after.version
    seen = before.actions if same and before else []
    out = []
    if after.phase is RolloutPhase.PAUSED and not (
        same and before and (before.phase, before.step) == (after.phase, after.step)
    ):
        out.append(Event("Normal", "Paused", f"version {after.version[:12]}: {paused(after)}"))
    for a in after.actions:
        if a in seen:
            continue
        if not a.applied:
            out.append(Event("Warning", "RolloutActionIgnored", a.message))
        elif a.action is RolloutActionKind.PROMOTE:
            out.append(Event("Normal", "Promoted", a.message))
        else:
            out.append(Event("Normal", "Aborted", a.message))
    return out


def _steps_done(r: RolloutStatus) -> int:
    return r.steps if r.phase is RolloutPhase.COMPLETE else r.step - 1


def rollout_result(before: WorkerStatus | None, after: WorkerStatus) -> str | None:
    """The result to count a rollout under, once, when the status first records how it
    ended: `complete` or `rolled_back`."""
    old, new = before.rollout if before else None, after.rollout
    if new is None or (old is not None and (old.version, old.phase) == (new.version, new.phase)):
        return None
    if new.phase is RolloutPhase.COMPLETE:
        return "complete"
    if new.phase is RolloutPhase.ROLLED_BACK:
        return "rolled_back"
    return None
