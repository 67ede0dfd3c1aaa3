"""Target selection, push plans and the status they produce (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from edgeplane.api import LabelSelector, get_condition
from edgeplane.plan.rollout import pass_limit
from edgeplane.plan.routes import exclusions, route_conflicts
from edgeplane.plan.targets import (
    TargetView,
    actions,
    affected_workers,
    orphan_candidates,
    select,
)
from edgeplane.report.status import Stall, TargetOutcome, TargetState, worker_status

T0 = datetime(2026, 11, 1, tzinfo=UTC)
V1, V2 = "1" * 64, "2" * 64


def test_selector_picks_targets_by_labels_and_expressions() -> None:
    targets = [
        TargetView("fra", {"edgeplane.io/region": "eu"}),
        TargetView("ams", {"edgeplane.io/region": "eu", "tier": "canary"}),
        TargetView("iad", {"edgeplane.io/region": "us"}),
    ]
    eu = LabelSelector.model_validate({"matchLabels": {"edgeplane.io/region": "eu"}})
    assert [t.name for t in select(eu, targets)] == ["ams", "fra"]
    not_canary = LabelSelector.model_validate(
        {"matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]}
    )
    assert [t.name for t in select(not_canary, targets)] == ["fra", "iad"]
    assert len(select(LabelSelector(), targets)) == 3


def test_plan_pushes_only_where_the_identity_differs_and_cleans_unselected() -> None:
    targets = [
        TargetView("a", inventory={"ns.w": "same"}),
        TargetView("b", inventory={"ns.w": "old"}),
        TargetView("c", inventory=None),  # not asked yet: push, the agent dedupes
        TargetView("d", inventory={"ns.w": "old"}),  # no longer selected
        TargetView("e", inventory={}),  # unselected and empty: nothing to do
    ]
    p = actions("ns.w", {"a": "same", "b": "same", "c": "same"}, targets)
    assert p.push == ("b", "c")
    assert p.in_sync == ("a",)
    assert p.remove == ("d",)


def test_plan_for_a_deleted_worker_removes_it_everywhere_it_is_known() -> None:
    targets = [TargetView("a", inventory={"ns.w": "x"}), TargetView("b", inventory={})]
    p = actions("ns.w", {}, targets)
    assert p.push == () and p.remove == ("a",)


def ready(*names: str, version: str = V1) -> list[TargetOutcome]:
    return [TargetOutcome(n, TargetState.READY, version) for n in names]


def test_all_ready_is_ready_and_says_deployed_once() -> None:
    status, events = worker_status(None, 3, V1, ready("a", "b"), None, T0)
    cond = get_condition(status.conditions, "Ready")
    assert cond and cond.status == "True" and cond.reason == "Deployed"
    assert cond.observed_generation == 3
    assert status.ready_version == V1 and status.ready_targets == "2/2"
    assert [(e.type, e.reason) for e in events] == [("Normal", "Deployed")]
    again, events = worker_status(status, 3, V1, ready("a", "b"), None, T0 + timedelta(1))
    assert events == []
    assert again == status  # nothing changed: no status write, no new transition times


def test_unreachable_target_is_not_ready_but_still_reconciling_then_recovers() -> None:
    ok, _ = worker_status(None, 1, V1, ready("a", "b"), None, T0)
    outcomes = [
        TargetOutcome("a", TargetState.READY, V1),
        TargetOutcome("b", TargetState.UNREACHABLE, V1, "connection refused"),
    ]
    down, events = worker_status(ok, 1, V1, outcomes, None, T0 + timedelta(seconds=5))
    r = get_condition(down.conditions, "Ready")
    assert r and r.status == "False" and r.reason == "TargetUnreachable"
    assert "b" in r.message and "connection refused" in r.message
    assert get_condition(down.conditions, "Reconciling").status == "True"  # type: ignore[union-attr]
    assert get_condition(down.conditions, "Stalled").status == "False"  # type: ignore[union-attr]
    assert down.ready_targets == "1/2" and down.ready_version == V1
    assert [(e.type, e.reason) for e in events] == [("Warning", "Failed")]
    back, events = worker_status(down, 1, V1, ready("a", "b"), None, T0 + timedelta(seconds=9))
    assert [e.reason for e in events] == ["Recovered"]
    assert get_condition(back.conditions, "Ready").status == "True"  # type: ignore[union-attr]


def test_a_refused_script_stalls_while_the_last_good_version_stays_ready_version() -> None:
    ok, _ = worker_status(None, 1, V1, ready("a"), None, T0)
    outcomes = [TargetOutcome("a", TargetState.FAILED, V1, "Uncaught SyntaxError")]
    stall = Stall("ScriptInvalid", "a: Uncaught SyntaxError")
    bad, events = worker_status(ok, 2, V2, outcomes, stall, T0 + timedelta(seconds=1))
    assert get_condition(bad.conditions, "Stalled").reason == "ScriptInvalid"  # type: ignore[union-attr]
    assert get_condition(bad.conditions, "Reconciling").status == "False"  # type: ignore[union-attr]
    assert bad.latest_version == V2 and bad.ready_version == V1
    assert bad.targets[0].version == V1 and bad.targets[0].state == "Failed"
    assert [e.type for e in events] == ["Warning"]


def test_condition_transition_time_moves_only_when_status_changes() -> None:
    first, _ = worker_status(None, 1, V1, [TargetOutcome("a", TargetState.DEPLOYING, None)],
                             None, T0)
    later, _ = worker_status(first, 1, V1, [TargetOutcome("a", TargetState.DEPLOYING, None)],
                             None, T0 + timedelta(minutes=1))
    assert get_condition(later.conditions, "Ready").last_transition_time == T0  # type: ignore[union-attr]
    assert later.targets[0].last_transition_time == T0


WORKERS = [("apps", "a"), ("apps", "b"), ("shop", "c")]


@pytest.mark.parametrize(
    ("inventory", "desired", "flipped", "expected"),
    [
        # Reachability changed: every Worker reports it.
        ({}, {}, True, WORKERS),
        # In sync: nothing to do.
        ({"apps.a": "i1"}, {"apps.a": {"edge-1": "i1"}}, False, []),
        # The location lost apps.a (e.g. a restore): re-push it.
        ({}, {"apps.a": {"edge-1": "i1"}}, False, [("apps", "a")]),
        # It serves shop.c, which should not be there (or not that deployment).
        ({"shop.c": "i9"}, {"shop.c": {"edge-1": None}}, False, [("shop", "c")]),
        ({"shop.c": "i9"}, {"shop.c": {"edge-1": "i8"}}, False, [("shop", "c")]),
        # Desired elsewhere only, absent here: in sync.
        ({}, {"apps.b": {"edge-2": "i2"}}, False, []),
        # Inventory never read: only what should be there differs.
        (None, {"apps.a": {"edge-1": "i1"}}, False, [("apps", "a")]),
    ],
)
def test_affected_workers(
    inventory: dict | None, desired: dict, flipped: bool, expected: list
) -> None:
    assert affected_workers(WORKERS, desired, inventory, "edge-1", flipped) == expected


@pytest.mark.parametrize(
    ("inventory", "known", "namespaces", "expected"),
    [
        ({"apps.a": "i", "apps.gone": "i"}, {"apps.a"}, (), ["apps.gone"]),
        ({"apps.a": "i"}, {"apps.a"}, (), []),
        # Another operator's namespace: not ours to collect.
        ({"apps.gone": "i", "other.x": "i"}, set(), ("apps",), ["apps.gone"]),
        ({"b.x": "i", "a.y": "i"}, set(), (), ["a.y", "b.x"]),  # in name order
    ],
)
def test_orphan_candidates(
    inventory: dict, known: set, namespaces: tuple, expected: list
) -> None:
    assert orphan_candidates(inventory, known, namespaces) == expected


@pytest.mark.parametrize(
    ("patterns", "expected"),
    [
        ({("a", "r1"): "example.com/*"}, {}),
        (
            {("a", "r1"): "example.com/*", ("b", "r2"): "EXAMPLE.com/*"},
            {("a", "r1"): ["b/r2"], ("b", "r2"): ["a/r1"]},
        ),
        # Different schemes match different requests: no conflict.
        ({("a", "r1"): "http://example.com/*", ("a", "r2"): "https://example.com/*"}, {}),
        (
            {("a", "r1"): "x.io/a", ("a", "r2"): "x.io/a", ("a", "r3"): "x.io/a",
             ("a", "r4"): "x.io/b"},
            {("a", "r1"): ["a/r2", "a/r3"], ("a", "r2"): ["a/r1", "a/r3"],
             ("a", "r3"): ["a/r1", "a/r2"]},
        ),
    ],
)
def test_route_conflicts(patterns: dict, expected: dict) -> None:
    assert route_conflicts(patterns) == expected


@pytest.mark.parametrize(("steps", "limit"), [(1, 6), (2, 8), (5, 14)])
def test_pass_limit_allows_every_step_two_moves(steps: int, limit: int) -> None:
    assert pass_limit(steps) == limit >= 2 * steps + 1


@pytest.mark.parametrize(
    ("routes", "conflicts", "expected"),
    [
        ({("a", "r"): ("x.io/static/*", None)}, {}, {"a": ("x.io/static/*",)}),
        ({("a", "r"): ("x.io/*", "w")}, {}, {}),  # a route with a Worker excludes nothing
        # In name order within a namespace, one set per namespace.
        (
            {("a", "r2"): ("x.io/b", None), ("a", "r1"): ("x.io/a", None),
             ("b", "r"): ("y.io/", None)},
            {},
            {"a": ("x.io/a", "x.io/b"), "b": ("y.io/",)},
        ),
        # A conflicting route without a Worker is served by no one, like any other.
        ({("a", "r"): ("x.io/a", None), ("b", "r"): ("x.io/a", "w")},
         {("a", "r"): ["b/r"], ("b", "r"): ["a/r"]}, {}),
    ],
)
def test_exclusions(routes: dict, conflicts: dict, expected: dict) -> None:
    assert exclusions(routes, conflicts) == expected
