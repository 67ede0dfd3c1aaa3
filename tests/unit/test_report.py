"""Report decisions (pure): per-location outcome, when to look again, rollout results,
EdgeTarget and WorkerRoute status."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from edgeplane.api import (
    EdgeTarget,
    HostClaimStatus,
    RolloutPhase,
    RolloutStatus,
    WorkerRouteStatus,
    WorkerStatus,
)
from edgeplane.api.common import Condition
from edgeplane.kube.client import finalizers_patch, status_patch
from edgeplane.report.route import (
    Blocked,
    claim_condition,
    exclusion_condition,
    ready_status,
    route_condition,
)
from edgeplane.report.status import (
    BACKOFF,
    Stall,
    TargetFacts,
    TargetOutcome,
    TargetState,
    requeue_after,
    rollout_result,
    target_outcome,
)
from edgeplane.report.target import Health, heartbeat_age, target_status, write_due

T0 = datetime(2026, 11, 1, tzinfo=UTC)
OLD, NEW = "a" * 64, "b" * 64
S = TargetState


def _rollout(phase: RolloutPhase, version: str = NEW) -> RolloutStatus:
    return RolloutStatus(
        version=version, from_version=OLD, phase=phase, step=1, steps=2, progress="1/2"
    )


PROGRESSING, ROLLED_BACK = _rollout(RolloutPhase.PROGRESSING), _rollout(RolloutPhase.ROLLED_BACK)


@pytest.mark.parametrize(
    ("facts", "identity", "assigned", "rollout", "state", "message"),
    [
        # Down: whatever else is known, the location is unreachable, with why.
        (TargetFacts(False, "down", "id", NEW), "id", NEW, PROGRESSING, S.UNREACHABLE, "down"),
        (TargetFacts(False, "down", reason="Unreachable"), "id", NEW, None, S.UNREACHABLE, "down"),
        # A reason of its own is named: the fix is the location's, not the Worker's.
        (TargetFacts(False, "bad token", has="id", reason="CredentialsRejected"), "id", NEW,
         PROGRESSING, S.UNREACHABLE, "CredentialsRejected: bad token"),
        # Serves what it should, and that is the rollout's version.
        (TargetFacts(True, has="id", serving=NEW), "id", NEW, PROGRESSING, S.READY, ""),
        # Serves what it should, the previous version: its step has not come.
        (TargetFacts(True, has="id", serving=OLD), "id", OLD, PROGRESSING, S.PENDING, ""),
        (TargetFacts(True, has="id", serving=OLD), "id", OLD, ROLLED_BACK, S.ROLLED_BACK, ""),
        # Refused exactly this deployment.
        (TargetFacts(True, has="x", refused=("id", "no")), "id", NEW, PROGRESSING, S.FAILED, "no"),
        # Refused an earlier deployment: this one is still to be pushed.
        (TargetFacts(True, has="x", refused=("i0", "no")), "id", NEW, PROGRESSING, S.DEPLOYING, ""),
        # Not known yet (never asked) or no rollout recorded (a compile error).
        (TargetFacts(None), "id", NEW, PROGRESSING, S.DEPLOYING, ""),
        (TargetFacts(True, has="id"), "id", NEW, None, S.DEPLOYING, ""),
    ],
)
def test_target_outcome(
    facts: TargetFacts,
    identity: str,
    assigned: str,
    rollout: RolloutStatus | None,
    state: TargetState,
    message: str,
) -> None:
    out = target_outcome("edge-1", facts, identity, assigned, rollout)
    assert (out.name, out.state, out.version, out.message) == (
        "edge-1", state, facts.serving, message
    )


def _outcomes(*states: TargetState) -> list[TargetOutcome]:
    return [TargetOutcome(f"t{i}", s, None) for i, s in enumerate(states)]


@pytest.mark.parametrize(
    ("states", "stall", "wait", "expected"),
    [
        ((S.READY, S.READY), None, None, None),  # done: only a change brings it back
        ((S.READY, S.PENDING), None, 12.5, 12.5),  # holding: look again when the hold ends
        ((S.READY, S.DEPLOYING), None, 12.5, BACKOFF),  # a push under way
        ((S.UNREACHABLE,), None, None, BACKOFF),
        ((S.FAILED,), None, None, BACKOFF),
        ((S.ROLLED_BACK, S.ROLLED_BACK), None, None, None),
        ((S.DEPLOYING,), Stall("ScriptInvalid", "x"), None, None),  # waits for the user
        # Another Worker still holds the route: it may let go without the user.
        ((S.DEPLOYING,), Stall("RouteConflict", "x", retry=True), None, BACKOFF),
        ((S.READY,), None, BACKOFF, BACKOFF),  # a gate's location did not answer
    ],
)
def test_requeue_after(states: tuple, stall: Stall | None, wait: object, expected: object) -> None:
    assert requeue_after(_outcomes(*states), stall, wait) == expected  # type: ignore[arg-type]


def _status(rollout: RolloutStatus | None) -> WorkerStatus:
    return WorkerStatus(rollout=rollout)


@pytest.mark.parametrize(
    ("before", "after", "result"),
    [
        (None, _status(_rollout(RolloutPhase.COMPLETE)), "complete"),
        (_status(PROGRESSING), _status(_rollout(RolloutPhase.COMPLETE)), "complete"),
        (_status(PROGRESSING), _status(ROLLED_BACK), "rolled_back"),
        # Counted once: a status that already recorded the end counts nothing more.
        (_status(ROLLED_BACK), _status(ROLLED_BACK), None),
        (_status(PROGRESSING), _status(_rollout(RolloutPhase.HOLDING)), None),
        (_status(_rollout(RolloutPhase.COMPLETE, OLD)), _status(_rollout(RolloutPhase.COMPLETE)),
         "complete"),  # another version
        (_status(PROGRESSING), _status(None), None),
    ],
)
def test_rollout_result(
    before: WorkerStatus | None, after: WorkerStatus, result: str | None
) -> None:
    assert rollout_result(before, after) == result


def _target(workers: int | None = 2) -> EdgeTarget:
    return EdgeTarget.model_validate(
        {
            "apiVersion": "edgeplane.io/v1alpha1",
            "kind": "EdgeTarget",
            "metadata": {"name": "edge-1", "generation": 3},
            "spec": {
                "endpoint": "http://127.0.0.1:1",
                "credentialsSecretRef": {"namespace": "ops", "name": "edge-1", "key": "token"},
            },
            "status": {"workers": workers, "agentVersion": "0.0.9"},
        }
    )


REACHABLE = {"type": "Ready", "status": "True", "reason": "Reachable", "message": "m",
             "lastTransitionTime": "2026-01-01T00:00:00Z"}


@pytest.mark.parametrize(
    ("workers", "changed", "since", "shown", "health", "due"),
    [
        (2, False, 1.0, REACHABLE, Health(True), False),  # nothing new, heartbeat recent
        (2, True, 1.0, REACHABLE, Health(True), True),  # reachability or inventory changed
        (3, False, 1.0, REACHABLE, Health(True), False),  # a new count waits 10 s...
        (3, False, 10.0, REACHABLE, Health(True), True),  # ...from the last write
        (3, True, 1.0, REACHABLE, Health(True), True),  # or rides on another change
        (None, False, 1.0, REACHABLE, Health(True), False),  # never read: the count stands
        (2, False, 30.0, REACHABLE, Health(True), True),  # heartbeat due
        # A push found it down, with a reason of its own: the status says so now.
        (2, False, 1.0, REACHABLE, Health(False, reason="CredentialsRejected"), True),
        (2, False, 1.0, {**REACHABLE, "status": "False", "reason": "Unreachable"},
         Health(False, reason="CredentialsRejected"), True),
        (2, False, 1.0, {**REACHABLE, "status": "False", "reason": "CredentialsRejected"},
         Health(False, reason="CredentialsRejected"), False),
        (2, False, 1.0, None, Health(True), True),  # never written
        # The agent was upgraded (a restarted operator's first check sees it).
        (2, False, 1.0, REACHABLE, Health(True, info={"agentVersion": "0.1.0"}), True),
        (2, False, 1.0, REACHABLE, Health(True, info={"agentVersion": "0.0.9"}), False),
        (2, False, 1.0, REACHABLE, Health(True, info={"runtimeVersion": "1.2"}), True),
    ],
)
def test_target_status_write_due(
    workers: int | None, changed: bool, since: float, shown: dict[str, Any] | None,
    health: Health, due: bool,
) -> None:
    prev = _target().status
    assert prev is not None
    prev = prev.model_copy(update={"conditions": [Condition.model_validate(shown)]
                                   if shown else []})
    health = replace(health, workers=workers)
    assert write_due(prev, health, changed, since, 30.0) is due


def test_a_first_count_is_written_at_once() -> None:
    prev = _target(workers=None).status
    assert prev is not None and prev.workers is None
    prev = prev.model_copy(update={"conditions": [Condition.model_validate(REACHABLE)]})
    assert write_due(prev, Health(True, workers=3), False, 1.0, 30.0) is True
    assert write_due(prev, Health(True), False, 1.0, 30.0) is False  # none read yet


@pytest.mark.parametrize(
    ("health", "ready", "reason", "heartbeat"),
    [
        (Health(True, workers=4, info={"agentVersion": "1.0"}), "True", "Reachable", T0),
        (Health(False, "Unreachable", "connection refused"), "False", "Unreachable", None),
        (Health(False, "CredentialsNotFound", "Secret ops/edge-1"), "False",
         "CredentialsNotFound", None),
        (Health(False, "CredentialsRejected", "agent refused the operator's credentials (401)"),
         "False", "CredentialsRejected", None),
    ],
)
def test_target_status(health: Health, ready: str, reason: str, heartbeat: datetime | None) -> None:
    target = _target()
    assert target.status is not None
    status = target_status(target.status, target.metadata.generation, health, T0)
    cond = status.conditions[0]
    assert (cond.type, cond.status, cond.reason) == ("Ready", ready, reason)
    assert cond.observed_generation == 3 and status.observed_generation == 3
    assert status.last_heartbeat == heartbeat
    # What this check did not learn keeps its recorded value.
    assert status.workers == (health.workers if health.workers is not None else 2)
    assert status.agent_version == health.info.get("agentVersion", "0.0.9")


NOT_CLAIMED = Blocked(unclaimed="shop.example.com")
HELD = Blocked(holder="apps/older")


@pytest.mark.parametrize(
    ("blocked", "exists", "shares", "failure", "expected"),
    [
        (NOT_CLAIMED, True, (), None, (False, "HostNotClaimed",
         "host 'shop.example.com' of pattern 'shop.example.com/*' is not granted to namespace "
         "apps by any HostClaim")),
        (HELD, True, (), None, (False, "RouteConflict", "already held by WorkerRoute apps/older")),
        (Blocked(), False, (), None, (False, "WorkerNotFound", "Worker apps/shop does not exist")),
        (Blocked(), True, (), (False, "VersionNotFound", "spec.traffic[0].version: no"),
         (False, "VersionNotFound", "spec.traffic[0].version")),
        (Blocked(), True, (), None, (True, "Routed", "go to shop")),
        (Blocked(), True, ("90% 9bcdb4caa8d8", "10% latest"), None,
         (True, "Routed", "go to shop (90% 9bcdb4caa8d8, 10% latest)")),
    ],
)
def test_route_condition(
    blocked: Blocked, exists: bool, shares: tuple, failure: tuple | None, expected: tuple
) -> None:
    status, reason, message = route_condition(
        "shop.example.com/*", "apps", "shop", blocked, exists, shares, failure
    )
    assert (status, reason) == expected[:2]
    assert expected[2] in message


@pytest.mark.parametrize(
    ("pattern", "host", "hint"),
    [
        ("*example.com/*", "*example.com", "use 'example.com' and '*.example.com' instead"),
        ("*/*", "*", "'*' alone matches every host"),
        ("shop.example.com/*", "shop.example.com", None),
    ],
)
def test_unclaimed_message_explains_catch_alls(pattern: str, host: str, hint: str | None) -> None:
    _, _, message = route_condition(pattern, "apps", "shop", Blocked(unclaimed=host), True)
    assert f"lists {host!r}" in message and "apps in spec.namespaces" in message
    assert (hint in message) if hint else ("'*'" not in message)


@pytest.mark.parametrize(
    ("blocked", "failure", "expected"),
    [
        (Blocked(), None, (True, "Excluded", "bypass Workers")),
        (HELD, None, (False, "RouteConflict", "held by WorkerRoute apps/older")),
        (NOT_CLAIMED, None, (False, "HostNotClaimed", "not granted")),
        (Blocked(), (False, "Excluding", "not yet excluded at edge-2"),
         (False, "Excluding", "edge-2")),
    ],
)
def test_route_condition_without_a_worker(
    blocked: Blocked, failure: tuple | None, expected: tuple
) -> None:
    status, reason, message = route_condition(
        "shop.example.com/static/*", "apps", None, blocked, False, (), failure
    )
    assert (status, reason) == expected[:2]
    assert expected[2] in message


def test_claim_condition() -> None:
    assert claim_condition(["a.io", "*.a.io"], ["x"]) == (
        True, "Accepted", "grants a.io, *.a.io to namespace x"
    )
    assert claim_condition(["*"], ["x", "y"])[2] == "grants * to namespaces x, y"


@pytest.mark.parametrize(
    ("pending", "refused", "expected"),
    [
        ([], [], None),
        (["edge-2", "edge-3"], [], (False, "Excluding",
                                    "not yet excluded at edge-2, edge-3; retrying with backoff")),
        (["edge-2"], ["edge-1: route pattern 'a/' is served by Worker ns.w"],
         (False, "ExclusionRefused", "edge-1: route pattern 'a/' is served by Worker ns.w")),
    ],
)
def test_exclusion_condition(pending: list, refused: list, expected: tuple | None) -> None:
    assert exclusion_condition(pending, refused) == expected


@pytest.mark.parametrize(
    ("status", "old", "patch"),
    [
        ({"a": 1}, None, {"status": {"a": 1}}),
        ({"a": 1}, {"a": 0, "gone": 2}, {"status": {"a": 1, "gone": None}}),  # cleared
        ({}, {"x": 1}, {"status": {"x": None}}),
        # Nested: the last rollout's hold, failure or pause is cleared too (a merge patch
        # would keep it); lists are replaced whole anyway.
        ({"rollout": {"phase": "Complete", "gates": []}},
         {"rollout": {"phase": "Paused", "pausedSince": "t", "failure": {"step": 1},
                      "gates": [{"step": 1}]}},
         {"status": {"rollout": {"phase": "Complete", "gates": [], "pausedSince": None,
                                 "failure": None}}}),
        ({"rollout": {"phase": "Complete"}}, {"rollout": None},
         {"status": {"rollout": {"phase": "Complete"}}}),
    ],
)
def test_status_patch(status: dict, old: dict | None, patch: dict) -> None:
    assert status_patch(status, old) == patch


@pytest.mark.parametrize("kind", [WorkerRouteStatus, HostClaimStatus])
def test_ready_status_records_the_generation_and_keeps_the_transition_time(kind: type) -> None:
    body = {"metadata": {"generation": 3}}
    first = ready_status(kind, None, body, (True, "Routed", "x"))
    again = ready_status(kind, first, {"metadata": {"generation": 4}}, (True, "Routed", "y"))
    assert (first.observed_generation, again.observed_generation) == (3, 4)
    (c1,), (c2,) = first.conditions, again.conditions
    assert (c2.reason, c2.message, c2.observed_generation) == ("Routed", "y", 4)
    assert c2.last_transition_time == c1.last_transition_time  # still True: no transition


@pytest.mark.parametrize(
    ("seen", "finalizers", "patch"),
    [
        # Fenced on the version read; an empty list stays a list (null would drop the field).
        ({"metadata": {"resourceVersion": "41", "finalizers": ["a"]}}, ["a", "b"],
         {"metadata": {"resourceVersion": "41", "finalizers": ["a", "b"]}}),
        ({"metadata": {"resourceVersion": "7", "finalizers": ["b"]}}, [],
         {"metadata": {"resourceVersion": "7", "finalizers": []}}),
    ],
)
def test_finalizers_patch(
    seen: dict[str, Any], finalizers: list[str], patch: dict[str, Any]
) -> None:
    assert finalizers_patch(seen, finalizers) == patch


@pytest.mark.parametrize(
    ("beat", "age"),
    [
        (T0 - timedelta(seconds=12), 12.0),  # written by the operator before a restart
        (T0, 0.0),
        (None, float("inf")),  # never: due at once
    ],
)
def test_heartbeat_age(beat: datetime | None, age: float) -> None:
    prev = _target().status
    assert prev is not None
    assert heartbeat_age(prev.model_copy(update={"last_heartbeat": beat}), T0) == age
