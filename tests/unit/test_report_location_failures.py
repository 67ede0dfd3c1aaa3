"""A location that quarantined a version it serves, or lacks a Worker a service binding
calls (pure): the target's state and message, the Worker's conditions, the Events and how
often they come, and what Argo CD shows for it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from edgeplane.api import RolloutPhase, RolloutStatus, WorkerStatus, get_condition
from edgeplane.report.status import (
    BACKOFF,
    TargetFacts,
    TargetOutcome,
    TargetState,
    missing_services_message,
    quarantine_message,
    requeue_after,
    serving_quarantined,
    target_outcome,
    worker_status,
)
from edgeplane.wire import MissingService
from tests.unit.test_argocd_health import health

T0 = datetime(2026, 11, 1, tzinfo=UTC)
OLD, NEW, CANARY = "a" * 64, "b" * 64, "c" * 64
S = TargetState
HUNG = "hung its cell 3 times in 10 minutes (last: GET /loop)"
API = MissingService("API", "apps.other")
AUTH = MissingService("AUTH", "apps.auth")
FIX = (
    "fix the code and apply the Worker (quarantine is per version), or move the traffic to "
    "another version"
)


def _rollout(phase: RolloutPhase) -> RolloutStatus:
    return RolloutStatus(
        version=NEW, from_version=OLD, phase=phase, step=1, steps=2, progress="1/2"
    )


COMPLETE = _rollout(RolloutPhase.COMPLETE)
PROGRESSING = _rollout(RolloutPhase.PROGRESSING)
ROLLED_BACK = _rollout(RolloutPhase.ROLLED_BACK)


def serving(version: str = NEW, **facts: object) -> TargetFacts:
    """A location that answers and has the deployment "id", whose primary is `version`."""
    return TargetFacts(True, has="id", serving=version, **facts)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("facts", "assigned", "rollout", "live", "state", "hung"),
    [
        # The primary it serves is quarantined: not ready, whatever the rollout says.
        (serving(quarantined={NEW: HUNG}), NEW, COMPLETE, {NEW}, S.QUARANTINED, (NEW,)),
        # A version the deployment gives traffic to (a canary split) counts too.
        (
            serving(quarantined={CANARY: HUNG}),
            NEW,
            COMPLETE,
            {NEW, CANARY},
            S.QUARANTINED,
            (CANARY,),
        ),
        (
            serving(quarantined={NEW: HUNG, CANARY: ""}),
            NEW,
            COMPLETE,
            {NEW, CANARY},
            S.QUARANTINED,
            (NEW, CANARY),
        ),
        # Quarantined but without traffic (kept at 0%, or an old version): harms nobody.
        (serving(quarantined={CANARY: HUNG}), NEW, COMPLETE, {NEW}, S.READY, ()),
        (serving(quarantined={OLD: HUNG}), NEW, COMPLETE, {NEW}, S.READY, ()),
        # The stable version, where the rollout has not come or went back: just reported.
        (serving(OLD, quarantined={OLD: HUNG}), OLD, PROGRESSING, {OLD}, S.QUARANTINED, (OLD,)),
        (serving(OLD, quarantined={OLD: HUNG}), OLD, ROLLED_BACK, {OLD}, S.QUARANTINED, (OLD,)),
        # Down: nothing it said is current.
        (
            TargetFacts(False, "down", "id", NEW, quarantined={NEW: HUNG}),
            NEW,
            COMPLETE,
            {NEW},
            S.UNREACHABLE,
            (),
        ),
        # Quarantine first, then missing services.
        (
            serving(quarantined={NEW: HUNG}, missing_services=(API,)),
            NEW,
            COMPLETE,
            {NEW},
            S.QUARANTINED,
            (NEW,),
        ),
        (serving(missing_services=(API,)), NEW, COMPLETE, {NEW}, S.SERVICE_MISSING, ()),
        (serving(OLD, missing_services=(API,)), OLD, PROGRESSING, {OLD}, S.SERVICE_MISSING, ()),
        (serving(OLD, missing_services=(API,)), OLD, ROLLED_BACK, {OLD}, S.SERVICE_MISSING, ()),
        # Refused the new deployment and still serves a quarantined one: that is what its
        # users get (the refusal is the Worker's Stalled reason).
        (
            TargetFacts(
                True, has="old", serving=OLD, refused=("id", "no"), quarantined={OLD: HUNG}
            ),
            NEW,
            COMPLETE,
            {NEW},
            S.QUARANTINED,
            (OLD,),
        ),
        # A push due: the canary of the deployment it does not have yet is not served there.
        (
            TargetFacts(True, has="old", serving=OLD, quarantined={CANARY: HUNG}),
            NEW,
            COMPLETE,
            {NEW, CANARY},
            S.DEPLOYING,
            (),
        ),
        # An agent older than quarantines: as before.
        (serving(), NEW, COMPLETE, {NEW}, S.READY, ()),
    ],
)
def test_target_outcome(
    facts: TargetFacts,
    assigned: str,
    rollout: RolloutStatus,
    live: set[str],
    state: TargetState,
    hung: tuple[str, ...],
) -> None:
    out = target_outcome("edge-1", facts, "id", assigned, rollout, live)
    assert (out.state, out.version, out.quarantined) == (state, facts.serving, hung)
    if state is S.QUARANTINED:
        assert out.message == quarantine_message("edge-1", hung, facts.quarantined)
    if state is S.SERVICE_MISSING:
        assert out.message == missing_services_message("edge-1", facts.missing_services)


@pytest.mark.parametrize(
    ("facts", "identity", "live", "expected"),
    [
        (serving(quarantined={NEW: HUNG}), "id", {NEW}, (NEW,)),
        # The primary counts even when the deployment is not the one it should have.
        (serving(quarantined={NEW: HUNG}), "other", {OLD}, (NEW,)),
        (serving(quarantined={CANARY: HUNG}), "other", {NEW, CANARY}, ()),
        (serving(quarantined={CANARY: HUNG}), "id", {NEW, CANARY}, (CANARY,)),
        # No deployment wanted there (before its step) and none known.
        (TargetFacts(True, quarantined={NEW: HUNG}), None, (), ()),
        (serving(), "id", {NEW}, ()),
    ],
)
def test_serving_quarantined(
    facts: TargetFacts, identity: str | None, live: set[str], expected: tuple
) -> None:
    assert serving_quarantined(facts, identity, live) == expected


@pytest.mark.parametrize(
    ("versions", "why", "message"),
    [
        (
            (NEW,),
            {NEW: HUNG},
            f"version bbbbbbbbbbbb is quarantined at edge-1: {HUNG}; edge-1 answers 502 for it",
        ),
        (
            (NEW,),
            {NEW: ""},
            "version bbbbbbbbbbbb is quarantined at edge-1; edge-1 answers 502 for it",
        ),
        # A long reason is cut; a message holds a few of them.
        (
            (NEW,),
            {NEW: "x" * 5000},
            f"version bbbbbbbbbbbb is quarantined at edge-1: {'x' * 300}; edge-1 answers 502 "
            "for it",
        ),
        (
            (NEW, CANARY),
            {NEW: HUNG, CANARY: ""},
            f"versions bbbbbbbbbbbb ({HUNG}), cccccccccccc are quarantined at edge-1; edge-1 "
            "answers 502 for them",
        ),
    ],
)
def test_quarantine_message(versions: tuple, why: dict, message: str) -> None:
    assert quarantine_message("edge-1", versions, why) == message


@pytest.mark.parametrize(
    ("missing", "message"),
    [
        (
            (API,),
            "service binding API calls Worker apps/other, which is not deployed at edge-1, "
            "so requests through it fail: deploy apps/other to the same targets as this Worker, "
            "or remove the binding",
        ),
        (
            (API, AUTH),
            "service bindings API (Worker apps/other), AUTH (Worker apps/auth) call "
            "Workers not deployed at edge-1, so requests through them fail: deploy those Workers "
            "to the same targets as this Worker, or remove the bindings",
        ),
    ],
)
def test_missing_services_message(missing: tuple, message: str) -> None:
    assert missing_services_message("edge-1", missing) == message


def _outcomes(*states: TargetState) -> list[TargetOutcome]:
    return [TargetOutcome(f"t{i}", s, None) for i, s in enumerate(states)]


@pytest.mark.parametrize(
    ("states", "wait", "expected"),
    [
        # Only the location's news (a health check requeues the Worker) changes these: no
        # backoff loop, and a hold elsewhere still ends on time.
        ((S.QUARANTINED,), None, None),
        ((S.SERVICE_MISSING,), None, None),
        ((S.READY, S.QUARANTINED, S.PENDING), 12.5, 12.5),
        ((S.SERVICE_MISSING, S.DEPLOYING), None, BACKOFF),
    ],
)
def test_requeue_after(states: tuple, wait: float | None, expected: object) -> None:
    assert requeue_after(_outcomes(*states), None, wait) == expected


def quarantined(name: str, *versions: str, why: str = HUNG, version: str = NEW) -> TargetOutcome:
    """`name` serves `version` as its primary and quarantined `versions` (default: it)."""
    versions = versions or (version,)
    facts = serving(version, quarantined=dict.fromkeys(versions, why))
    return target_outcome(name, facts, "id", NEW, COMPLETE, set(versions) | {version})


def missing(name: str, *services: MissingService) -> TargetOutcome:
    return target_outcome(name, serving(missing_services=services), "id", NEW, COMPLETE, {NEW})


def ready(name: str) -> TargetOutcome:
    return target_outcome(name, serving(), "id", NEW, COMPLETE, {NEW})


def unreachable(name: str) -> TargetOutcome:
    facts = TargetFacts(False, "connection refused", "id", NEW, quarantined={NEW: HUNG})
    return target_outcome(name, facts, "id", NEW, COMPLETE, {NEW})


def deploying(name: str) -> TargetOutcome:
    return target_outcome(name, TargetFacts(True, has="x", serving=OLD), "id", NEW, COMPLETE)


Q1 = f"version bbbbbbbbbbbb is quarantined at e1: {HUNG}; e1 answers 502 for it"
M1 = missing_services_message("e1", (API,))


@pytest.mark.parametrize(
    ("outcomes", "ready", "reconciling", "stalled", "argocd"),
    [
        # Quarantined: only a new version helps, so Stalled (Argo CD Degraded)...
        (
            [quarantined("e1"), ready("e2")],
            ("False", "Quarantined", f"{Q1}; {FIX}"),
            "False",
            "True",
            "Degraded",
        ),
        # ... once nothing else moves.
        (
            [quarantined("e1"), deploying("e2")],
            ("False", "Quarantined", f"{Q1}; {FIX}"),
            "True",
            "False",
            "Progressing",
        ),
        (
            [quarantined("e1"), unreachable("e2")],
            ("False", "Quarantined", f"{Q1}; {FIX}"),
            "True",
            "False",
            "Progressing",
        ),
        # ServiceMissing: the other Worker may be on its way, as a route's WorkerNotFound.
        (
            [missing("e1", API), ready("e2")],
            ("False", "ServiceMissing", M1),
            "True",
            "False",
            "Progressing",
        ),
        # Quarantine before an unreachable location, before a missing service.
        (
            [missing("e1", API), quarantined("e2")],
            ("False", "Quarantined", None),
            "False",
            "True",
            "Degraded",
        ),
        (
            [missing("e1", API), unreachable("e2")],
            ("False", "TargetUnreachable", None),
            "True",
            "False",
            "Progressing",
        ),
        # Many locations: the first few in the message, status.targets has them all.
        (
            [missing(f"e{i}", API) for i in range(1, 6)],
            ("False", "ServiceMissing", None),
            "True",
            "False",
            "Progressing",
        ),
    ],
)
def test_conditions(
    outcomes: list[TargetOutcome],
    ready: tuple,
    reconciling: str,
    stalled: str,
    argocd: str,
) -> None:
    status, _ = worker_status(None, 4, NEW, outcomes, None, T0, COMPLETE)
    conds = {c.type: c for c in status.conditions}
    r = conds["Ready"]
    assert (r.status, r.reason) == ready[:2]
    if ready[2] is not None:
        assert r.message == ready[2]
    assert conds["Reconciling"].status == reconciling and conds["Stalled"].status == stalled
    assert status.ready_targets == f"{sum(o.state is S.READY for o in outcomes)}/{len(outcomes)}"
    assert status.ready_version is None  # never Ready everywhere
    obj = {"kind": "Worker", "metadata": {"generation": 4}, "status": status.to_wire()}
    shown = health("Worker", obj)
    assert shown["status"] == argocd and shown["message"].startswith(r.reason)


def test_many_locations_are_summed_up() -> None:
    status, _ = worker_status(
        None, 1, NEW, [missing(f"e{i}", API) for i in range(1, 6)], None, T0, COMPLETE
    )
    r = get_condition(status.conditions, "Ready")
    assert r is not None and r.message.count("service binding API") == 3
    assert r.message.endswith("; and at 2 more targets (see status.targets)")


def test_target_status_records_what_is_quarantined() -> None:
    status, _ = worker_status(
        None, 1, NEW, [quarantined("e1", NEW, CANARY), ready("e2")], None, T0, COMPLETE
    )
    e1, e2 = status.targets
    assert (e1.state, e1.version, e1.quarantined) == ("Quarantined", NEW, [NEW, CANARY])
    assert e1.message.startswith("versions bbbbbbbbbbbb (hung its cell")
    assert (e2.state, e2.quarantined) == ("Ready", None)
    assert "quarantined" not in status.to_wire()["targets"][1]  # not written when none
    # A location that stops answering keeps the record (so coming back is no news)...
    down, _ = worker_status(status, 1, NEW, [unreachable("e1"), ready("e2")], None, T0, COMPLETE)
    assert (down.targets[0].state, down.targets[0].quarantined) == ("Unreachable", [NEW, CANARY])
    # ... and one that answers without a quarantine clears it.
    back, _ = worker_status(down, 1, NEW, [ready("e1"), ready("e2")], None, T0, COMPLETE)
    assert back.targets[0].quarantined is None


def test_a_long_reason_fits_the_target_message() -> None:
    status, _ = worker_status(
        None, 1, NEW, [TargetOutcome("e1", S.QUARANTINED, NEW, "x" * 9000, (NEW,))], None, T0
    )
    assert len(status.targets[0].message) == 4096


def _events(*passes: list[TargetOutcome]) -> list[list[tuple[str, str, str]]]:
    """The Events of each status written in turn, as (type, reason, message)."""
    prev: WorkerStatus | None = None
    out = []
    for n, outcomes in enumerate(passes):
        prev, events = worker_status(
            prev, 1, NEW, outcomes, None, T0 + timedelta(seconds=n), COMPLETE
        )
        out.append([(e.type, e.reason, e.message) for e in events])
    return out


QUARANTINED_E1 = ("Warning", "Quarantined", f"{Q1}; {FIX}")
MISSING_E1 = ("Warning", "ServiceMissing", M1)
RECOVERED = ("Normal", "Recovered")


@pytest.mark.parametrize(
    ("passes", "expected"),
    [
        # Once per version and location: resyncs (the agent's text may change) say nothing.
        (
            [[quarantined("e1")], [quarantined("e1")], [quarantined("e1", why="hung 4 times")]],
            [[QUARANTINED_E1], [], []],
        ),
        # A second version quarantined at the same location, or the first at another.
        (
            [[quarantined("e1", NEW)], [quarantined("e1", NEW, CANARY)]],
            [[QUARANTINED_E1], [("Warning", "Quarantined")]],
        ),
        (
            [[quarantined("e1"), ready("e2")], [quarantined("e1"), quarantined("e2")]],
            [[QUARANTINED_E1], [("Warning", "Quarantined")]],
        ),
        # A new version quarantined in turn.
        (
            [[quarantined("e1", NEW)], [quarantined("e1", OLD, version=OLD)]],
            [[QUARANTINED_E1], [("Warning", "Quarantined")]],
        ),
        # Down for a while and back, still quarantined: no news.
        (
            [[quarantined("e1")], [unreachable("e1")], [quarantined("e1")]],
            [[QUARANTINED_E1], [("Warning", "Failed")], []],
        ),
        # Lifted, then quarantined again: news again.
        (
            [[quarantined("e1")], [ready("e1")], [quarantined("e1")]],
            [[QUARANTINED_E1], [RECOVERED], [QUARANTINED_E1]],
        ),
        # A missing service: once when it starts, again only when the bindings named change.
        (
            [[ready("e1")], [missing("e1", API)], [missing("e1", API)]],
            [[], [MISSING_E1], []],
        ),
        (
            [[missing("e1", API)], [missing("e1", API, AUTH)], [missing("e1", API)], [ready("e1")]],
            [[MISSING_E1], [("Warning", "ServiceMissing")], [MISSING_E1], [RECOVERED]],
        ),
        # Quarantine hides a missing service; once lifted, the missing service is news.
        ([[quarantined("e1")], [missing("e1", API)]], [[QUARANTINED_E1], [MISSING_E1]]),
    ],
)
def test_events(passes: list[list[TargetOutcome]], expected: list[list[tuple]]) -> None:
    got = _events(*passes)
    assert [len(g) for g in got] == [len(w) for w in expected], got
    # Each expected Event as far as the table spells it out (type, reason[, message]).
    trimmed = [
        [e[: len(x)] for e, x in zip(g, w, strict=True)] for g, w in zip(got, expected, strict=True)
    ]
    assert trimmed == expected
    # Never a Failed Event besides the per-location ones for these two reasons.
    for events in got:
        assert not any(
            e[1] == "Failed" and e[2].startswith(("Quarantined", "ServiceMissing")) for e in events
        )
