"""Target selection, push plans and the status they produce (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from edgeplane.api import LabelSelector, get_condition
from edgeplane.plan.rollout import pass_limit
from edgeplane.plan.routes import (
    Grant,
    RouteFacts,
    Standing,
    exclusions,
    host_granted,
    route_conflicts,
    standing,
)
from edgeplane.plan.targets import (
    Refusal,
    TargetView,
    actions,
    affected_workers,
    credentials_refusal,
    orphan_candidates,
    orphan_scan,
    refusal,
    select,
    workers_with_news,
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


@pytest.mark.parametrize(
    ("reachable", "has", "want", "push", "remove", "in_sync", "down"),
    [
        # Marked down: nothing is sent there, whether it needs a push or a removal.
        (False, None, "new", (), (), (), ("t",)),
        (False, "old", "new", (), (), (), ("t",)),
        (False, "old", None, (), (), (), ("t",)),
        # Down but already in sync, or with nothing to remove: nothing to wait for.
        (False, "new", "new", (), (), ("t",), ()),
        (False, None, None, (), (), (), ()),
        # Up, or not asked yet: as usual.
        (True, "old", "new", ("t",), (), (), ()),
        (None, None, "new", ("t",), (), (), ()),
        (True, "old", None, (), ("t",), (), ()),
    ],
)
def test_plan_sends_nothing_to_a_target_marked_down(
    reachable: bool | None,
    has: str | None,
    want: str | None,
    push: tuple[str, ...],
    remove: tuple[str, ...],
    in_sync: tuple[str, ...],
    down: tuple[str, ...],
) -> None:
    inventory = {} if has is None else {"ns.w": has}
    target = TargetView("t", reachable=reachable, inventory=inventory)
    p = actions("ns.w", {"t": want} if want else {}, [target])
    assert (p.push, p.remove, p.in_sync, p.down) == (push, remove, in_sync, down)


def test_plan_for_a_deleted_worker_removes_it_everywhere_it_is_known() -> None:
    targets = [TargetView("a", inventory={"ns.w": "x"}), TargetView("b", inventory={})]
    p = actions("ns.w", {}, targets)
    assert p.push == () and p.remove == ("a",)


def ready(*names: str, version: str = V1) -> list[TargetOutcome]:
    return [TargetOutcome(n, TargetState.READY, version) for n in names]


def test_all_ready_is_ready_and_says_deployed_once_for_an_update() -> None:
    status, events = worker_status(None, 3, V1, ready("a", "b"), None, T0)
    cond = get_condition(status.conditions, "Ready")
    assert cond and cond.status == "True" and cond.reason == "Deployed"
    assert cond.observed_generation == 3
    assert status.ready_version == V1 and status.ready_targets == "2/2"
    # The first rollout: its status says it, an Event would say it again (a write per Worker).
    assert events == []
    again, events = worker_status(status, 3, V1, ready("a", "b"), None, T0 + timedelta(1))
    assert events == []
    assert again == status  # nothing changed: no status write, no new transition times
    # An update replaces a version that served: that is news.
    new, events = worker_status(status, 4, V2, ready("a", "b", version=V2), None, T0)
    assert new.ready_version == V2
    assert [(e.type, e.reason) for e in events] == [("Normal", "Deployed")]
    _, events = worker_status(new, 4, V2, ready("a", "b", version=V2), None, T0 + timedelta(1))
    assert events == []


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


def test_a_route_conflict_is_reconciling_not_stalled() -> None:
    outcomes = [TargetOutcome("a", TargetState.DEPLOYING, V1)]
    stall = Stall("RouteConflict", "a: route shop.example.com/* is held by apps.old", retry=True)
    st, events = worker_status(None, 1, V2, outcomes, stall, T0)
    conds = {c.type: (c.status, c.reason) for c in st.conditions}
    assert conds == {
        "Ready": ("False", "RouteConflict"),
        "Reconciling": ("True", "RouteConflict"),  # retried with backoff by the operator
        "Stalled": ("False", "RouteConflict"),
    }
    assert [(e.type, e.reason) for e in events] == [("Warning", "Failed")]


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
        # Reachability changed: the Workers that select it (their status names it) or that
        # it serves (to be removed once it answers), not the others.
        ({}, {}, True, []),
        (
            {"shop.c": "i9"},
            {"apps.a": {"edge-1": "i1"}, "apps.b": {"edge-2": "i2"}},
            True,
            [("apps", "a"), ("shop", "c")],
        ),
        # Selected, but not served there in this rollout step: its status names it too.
        ({}, {"apps.b": {"edge-1": None, "edge-2": "i2"}}, True, [("apps", "b")]),
        (None, {"apps.a": {"edge-2": "i1"}}, True, []),
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


HUNG = {V1: "hung its cell 3 times in 10 minutes"}


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        # A health check that says nothing new: nobody to reconcile.
        ({}, {}, []),
        ({"apps.a": (HUNG, None)}, {"apps.a": (HUNG, None)}, []),
        # A quarantine comes, goes, or names another version; a missing service likewise.
        ({}, {"apps.a": (HUNG, None)}, [("apps", "a")]),
        ({"apps.a": (HUNG, None)}, {}, [("apps", "a")]),
        ({"apps.a": (HUNG, None)}, {"apps.a": ({V2: "x"}, None)}, [("apps", "a")]),
        ({"apps.b": (None, ("API",))}, {"apps.b": (None, ())}, [("apps", "b")]),
        # Only the Worker it is about; and one the operator does not know is nobody's.
        ({}, {"apps.a": (HUNG, None), "shop.c": (None, ("API",)), "gone.x": (HUNG, None)},
         [("apps", "a"), ("shop", "c")]),
    ],
)
def test_workers_with_news(before: dict, after: dict, expected: list) -> None:
    assert workers_with_news(WORKERS, before, after) == expected


@pytest.mark.parametrize(
    ("inventory", "known", "namespaces", "expected"),
    [
        ({"apps.a": "i", "apps.gone": "i"}, {"apps.a"}, (), ["apps.gone"]),
        ({"apps.a": "i"}, {"apps.a"}, (), []),
        ({"apps.a.b": "i", "apps.c": "i"}, {"apps.a.b"}, (), ["apps.c"]),  # a dot in a name
        # Another operator's namespace: not ours to collect.
        ({"apps.gone": "i", "other.x": "i"}, set(), ("apps",), ["apps.gone"]),
        ({"b.x": "i", "a.y": "i"}, set(), (), ["a.y", "b.x"]),  # in name order
    ],
)
def test_orphan_candidates(
    inventory: dict, known: set, namespaces: tuple, expected: list
) -> None:
    # Known as a cached Worker or as one being deployed (not cached yet): either way not
    # an orphan.
    cached = {tuple(k.split(".", 1)) for k in known}
    assert orphan_candidates(inventory, cached, set(), namespaces) == expected
    assert orphan_candidates(inventory, set(), known, namespaces) == expected


@pytest.mark.parametrize(
    ("among", "expected"),
    [
        (None, ["apps.gone", "apps.old"]),  # all the location serves
        ({"apps.gone", "apps.a"}, ["apps.gone"]),  # only those looked at
        ({"apps.never"}, []),  # not served there (removed meanwhile): nothing to remove
        (set(), []),
    ],
)
def test_orphan_candidates_among(among: set | None, expected: list) -> None:
    inventory = {"apps.a": "i", "apps.gone": "i", "apps.old": "i"}
    assert orphan_candidates(inventory, {("apps", "a")}, set(), (), among) == expected


@pytest.mark.parametrize(
    ("complete", "came_back", "since_full", "expected"),
    [
        (False, False, 5.0, {"apps.new"}),  # only what the answer changed
        (True, False, 5.0, None),  # a new agent: everything it serves is news
        (False, True, 5.0, None),  # back after being away: deletions meanwhile show only so
        (False, False, 30.0, None),  # the periodic full look
        (False, False, float("inf"), None),  # never looked at all yet
    ],
)
def test_orphan_scan(
    complete: bool, came_back: bool, since_full: float, expected: set | None
) -> None:
    assert orphan_scan({"apps.new"}, complete, came_back, since_full, 30.0) == expected


def _facts(pattern: str, worker: str | None = "w", created: str = "2026-01-01T00:00:00Z"):
    return RouteFacts(pattern, worker, created)


T1, T2 = "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z"


@pytest.mark.parametrize(
    ("routes", "expected"),
    [
        ({("a", "r1"): _facts("example.com/*")}, {}),
        # The older holds the pattern (by canonical form); the newer names it.
        ({("b", "r2"): _facts("EXAMPLE.com/*", created=T2), ("a", "r1"): _facts("example.com/*")},
         {("b", "r2"): "a/r1"}),
        ({("b", "r2"): _facts("example.com/*", created=T1), ("a", "r1"): _facts("example.com/*")},
         {("b", "r2"): "a/r1"}),  # the same time: by name
        # Different schemes match different requests: no conflict.
        ({("a", "r1"): _facts("http://example.com/*"), ("a", "r2"): _facts("https://example.com/*")},
         {}),
        # `example.com` is `example.com/`; three claimants, one holder.
        ({("a", "r3"): _facts("x.io", created=T2), ("a", "r2"): _facts("x.io/", created=T2),
          ("a", "r1"): _facts("x.io/", created=T1), ("a", "r4"): _facts("x.io/b")},
         {("a", "r2"): "a/r1", ("a", "r3"): "a/r1"}),
    ],
)
def test_route_conflicts(routes: dict, expected: dict) -> None:
    assert route_conflicts(routes) == expected


@pytest.mark.parametrize(
    ("host", "claimed", "granted"),
    [
        ("shop.example.com", "shop.example.com", True),
        ("shop.example.com", "*.example.com", True),
        ("a.shop.example.com", "*.example.com", True),
        ("example.com", "*.example.com", False),  # `*.` is the subdomains only
        ("shop.example.com", "example.com", False),
        ("*.example.com", "*.example.com", True),
        ("*.shop.example.com", "*.example.com", True),
        ("*.example.com", "example.com", False),
        ("*.example.com", "shop.example.com", False),
        ("*example.com", "*.example.com", False),  # also matches myexample.com
        ("*example.com", "*", True),
        ("*", "*.example.com", False),  # `*/*`: every host
        ("*", "*", True),
        ("evilexample.com", "*.example.com", False),
    ],
)
def test_host_granted(host: str, claimed: str, granted: bool) -> None:
    assert host_granted(host, claimed) is granted


SHOP = Grant(("*.shop.example.com", "shop.example.com"), frozenset({"shop"}))
ALL = Grant(("*",), frozenset({"edge-admin"}))


@pytest.mark.parametrize(
    ("routes", "grants", "unclaimed", "conflicts"),
    [
        # No claim, no route.
        ({("shop", "r"): _facts("shop.example.com/*")}, [], {("shop", "r"): "shop.example.com"},
         {}),
        ({("shop", "r"): _facts("shop.example.com/*")}, [SHOP], {}, {}),
        # Another namespace cannot take over a granted host, however specific its route.
        ({("shop", "r"): _facts("shop.example.com/*"),
          ("evil", "r"): _facts("shop.example.com/login", created="2020-01-01T00:00:00Z")},
         [SHOP], {("evil", "r"): "shop.example.com"}, {}),
        # An ungranted route blocks no one, even an older one with the same pattern.
        ({("shop", "r"): _facts("shop.example.com/*", created=T2),
          ("evil", "r"): _facts("shop.example.com/*", created=T1)},
         [SHOP], {("evil", "r"): "shop.example.com"}, {}),
        # Catch-alls need `*`.
        ({("shop", "r"): _facts("*/*")}, [SHOP], {("shop", "r"): "*"}, {}),
        ({("edge-admin", "r"): _facts("*/*")}, [ALL], {}, {}),
        ({("shop", "r"): _facts("*shop.example.com/*")}, [SHOP],
         {("shop", "r"): "*shop.example.com"}, {}),
    ],
)
def test_standing(routes: dict, grants: list, unclaimed: dict, conflicts: dict) -> None:
    got = standing(routes, grants)
    assert (got.unclaimed, got.conflicts) == (unclaimed, conflicts)
    assert {r for r in routes if got.served(r)} == set(routes) - set(unclaimed) - set(conflicts)


@pytest.mark.parametrize(("steps", "limit"), [(1, 6), (2, 8), (5, 14)])
def test_pass_limit_allows_every_step_two_moves(steps: int, limit: int) -> None:
    assert pass_limit(steps) == limit >= 2 * steps + 1


@pytest.mark.parametrize(
    ("routes", "blocked", "expected"),
    [
        ({("a", "r"): _facts("x.io/static/*", None)}, Standing(), {"a": ("x.io/static/*",)}),
        ({("a", "r"): _facts("x.io/*")}, Standing(), {}),  # a route with a Worker excludes nothing
        # In name order within a namespace, one set per namespace.
        (
            {("a", "r2"): _facts("x.io/b", None), ("a", "r1"): _facts("x.io/a", None),
             ("b", "r"): _facts("y.io/", None)},
            Standing(),
            {"a": ("x.io/a", "x.io/b"), "b": ("y.io/",)},
        ),
        # A route without a Worker that is not served (no claim, or held by another) excludes
        # nothing, like any other route.
        ({("a", "r"): _facts("x.io/a", None)}, Standing(unclaimed={("a", "r"): "x.io"}), {}),
        ({("a", "r"): _facts("x.io/a", None)}, Standing(conflicts={("a", "r"): "b/r"}), {}),
    ],
)
def test_exclusions(routes: dict, blocked: Standing, expected: dict) -> None:
    assert exclusions(routes, blocked) == expected


@pytest.mark.parametrize(
    ("namespace", "allowed", "field", "refused"),
    [
        ("edgeplane-system", ("edgeplane-system",), "spec.credentialsSecretRef", False),
        ("team-a", ("edgeplane-system",), "spec.credentialsSecretRef", True),
        ("edge-creds", ("edgeplane-system", "edge-creds"), "spec.credentialsSecretRef", False),
        ("team-a", ("edgeplane-system",), "spec.clientCertificateSecretRef", True),
        ("edgeplane-system", ("edgeplane-system",), "spec.clientCertificateSecretRef", False),
    ],
)
def test_credentials_refusal(namespace: str, allowed: tuple, field: str, refused: bool) -> None:
    message = credentials_refusal(namespace, allowed, field)
    assert (message is not None) is refused
    if message:
        assert message.startswith(f"{field}.namespace: ")
        assert namespace in message and allowed[0] in message


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        # The location's credentials: it is unreachable until the Secret is fixed.
        (401, ("CredentialsRejected", Refusal.CREDENTIALS)),
        (403, ("CredentialsRejected", Refusal.CREDENTIALS)),
        # Another Worker holds the route: it may let go, so the push is retried.
        (409, ("RouteConflict", Refusal.RETRY)),
        # The bytes pushed: the same deployment is refused again, until the Worker changes.
        (413, ("ScriptTooLarge", Refusal.FINAL)),
        (422, ("ScriptInvalid", Refusal.FINAL)),
        (400, ("ScriptInvalid", Refusal.FINAL)),
    ],
)
def test_what_an_agents_refusal_means(status: int, expected: tuple[str, Refusal]) -> None:
    assert refusal(status) == expected
