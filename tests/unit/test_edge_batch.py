"""The agent's push decisions (edgeplane.edge.batch): tables of inputs and answers, no
servers. Rows name deployments by the keys of `D` and Workers by their short name (a for
ns.a); a row's `errors` name the deployment whose primary version failed validation."""

from __future__ import annotations

import pytest

from edgeplane.edge import batch
from edgeplane.edge.result import Result
from edgeplane.wire import Deployment
from tests.integration.edge_fixtures import deployment, text_worker

_a1, _a2 = text_worker("ns.a", "a1"), text_worker("ns.a", "a2")
D: dict[str, Deployment] = {
    "a1": deployment(_a1, routes=("a.test/*",)),
    "a2": deployment(_a2, routes=("a.test/*",)),
    "a12": deployment(_a1, _a2, routes=("a.test/*",)),
    "a1x": deployment(_a1, routes=("elsewhere.test/*",)),  # a1 on another route
    "b1": deployment(text_worker("ns.b", "b1"), routes=("b.test/*",)),
    "ba": deployment(text_worker("ns.b", "b2"), routes=("A.TEST/*",)),  # a's route
    "bp": deployment(text_worker("ns.b", "b3"), routes=("a.test/api/*",)),  # below a's
    "c": deployment(text_worker("ns.c", "c")),  # no routes
}


def deps(names: str) -> dict[str, Deployment]:
    """Worker -> deployment, for the space-separated deployment names."""
    return {D[n].worker: D[n] for n in names.split()}


def changes(**named: str | None) -> dict[str, Deployment | None]:
    """Worker -> the named deployment, None to delete."""
    return {f"ns.{w}": None if n is None else D[n] for w, n in named.items()}


def version(name: str) -> str:
    return D[name].primary


CLAIMED = "route pattern 'A.TEST/*' is already served by Worker ns.a"


@pytest.mark.parametrize(
    ("d", "others", "expected"),
    [
        ("b1", "a1", None),
        ("ba", "a1", CLAIMED),
        ("bp", "a1", None),  # a more specific route is no conflict
        ("a2", "a1", None),  # a Worker never conflicts with itself
        ("c", "a1 b1", None),
        ("ba", "", None),
    ],
)
def test_route_conflict(d: str, others: str, expected: str | None) -> None:
    assert batch.route_conflict(D[d], deps(others)) == expected


EXCLUDED_BY_X = "route pattern 'a.test/*' is excluded by a route without a Worker in namespace x"


@pytest.mark.parametrize(
    ("d", "excluded", "expected"),
    [
        ("a1", {"x": ("A.test/*",)}, EXCLUDED_BY_X),  # the same pattern
        ("a1", {"x": ("a.test/api/*",)}, None),  # more specific: excludes a part of it
        ("c", {"x": ("a.test/*",)}, None),
        ("a1", {}, None),
    ],
)
def test_route_conflict_with_exclusions(d: str, excluded: dict, expected: str | None) -> None:
    assert batch.route_conflict(D[d], {}, excluded) == expected


@pytest.mark.parametrize(
    ("namespace", "patterns", "served", "excluded", "expected"),
    [
        ("x", ("a.test/api/*",), "a1", {}, None),
        ("x", ("a.test/*",), "a1", {}, "route pattern 'a.test/*' is already served by Worker ns.a"),
        (
            "x",
            ("a.test/x",),
            "",
            {"y": ("a.test/x",)},
            "route pattern 'a.test/x' is excluded by a route without a Worker in namespace y",
        ),
        # A namespace's new set replaces its old one: no conflict with itself.
        ("x", ("a.test/x",), "", {"x": ("a.test/x",)}, None),
        ("x", (), "a1", {"y": ("a.test/*",)}, None),
    ],
)
def test_exclusion_conflict(
    namespace: str, patterns: tuple, served: str, excluded: dict, expected: str | None
) -> None:
    assert batch.exclusion_conflict(namespace, patterns, deps(served), excluded) == expected


@pytest.mark.parametrize(
    ("accepted", "pending", "expected"),
    [
        ("", {}, ""),
        ("a1 b1", {}, "a1 b1"),
        ("a1 b1", changes(a="a2"), "a2 b1"),
        ("a1 b1", changes(a=None), "b1"),
        ("a1", changes(b="b1", c=None), "a1 b1"),
    ],
)
def test_desired(accepted: str, pending: dict, expected: str) -> None:
    assert batch.desired(deps(accepted), pending) == deps(expected)


SAME = batch.Early(Result(200, {"changed": False, "version": version("a1")}), "unchanged")
TAKEN = batch.Early(Result.error(409, CLAIMED), "conflict")


def gone(worker: str) -> batch.Early:
    return batch.Early(Result.error(404, f"Worker {worker} is not deployed here"), None)


@pytest.mark.parametrize(
    ("worker", "d", "accepted", "pending", "refused", "expected"),
    [
        ("ns.a", "a1", "a1", {}, {}, SAME),
        # A pending change of the Worker: pushing the accepted one again undoes it.
        ("ns.a", "a1", "a1", changes(a="a2"), {}, None),
        ("ns.a", "a2", "a1", {}, {}, None),
        ("ns.a", "a12", "a1", {}, {}, None),  # a version more is a change
        ("ns.a", "a1x", "a1", {}, {}, None),  # so is a route
        ("ns.b", "b1", "a1", {}, {}, None),
        ("ns.b", "ba", "a1", {}, {}, TAKEN),
        ("ns.b", "ba", "", changes(a="a1"), {}, TAKEN),  # by a pending push
        ("ns.b", "ba", "a1", changes(a=None), {}, None),  # the owner's delete is pending
        ("ns.b", None, "a1", {}, {}, gone("ns.b")),
        ("ns.a", None, "a1", {}, {}, None),
        ("ns.a", None, "", {}, {"ns.a": "did not load"}, None),  # to forget the refusal
        ("ns.a", None, "", changes(a="a1"), {}, None),
        ("ns.a", None, "a1", changes(a=None), {}, gone("ns.a")),
    ],
)
def test_precheck(
    worker: str,
    d: str | None,
    accepted: str,
    pending: dict,
    refused: dict[str, str],
    expected: batch.Early | None,
) -> None:
    push = None if d is None else D[d]
    assert batch.precheck(worker, push, deps(accepted), pending, refused, {}) == expected


@pytest.mark.parametrize(
    ("accepted", "pushes", "validated", "expected"),
    [
        ("", changes(a="a1", b="b1"), set(), "a1 b1"),
        ("a1", changes(a="a1"), set(), ""),  # unchanged
        ("a1", changes(a=None), set(), ""),
        ("a1", changes(a="a12"), {version("a1")}, "a2"),
        ("a1", changes(a="a1x"), {version("a1")}, ""),  # only routes change
        ("", changes(a="a1", b="b1"), {version("b1")}, "a1"),
    ],
)
def test_to_validate(accepted: str, pushes: dict, validated: set[str], expected: str) -> None:
    got = batch.to_validate(deps(accepted), pushes, validated)
    assert [b.version for b in got] == [version(n) for n in expected.split()]


def test_to_validate_names_a_bundle_once() -> None:
    got = batch.to_validate({}, changes(a="a12"), set())
    assert [b.version for b in got] == [_a1.version, _a2.version]


BROKEN = "service w:ns.a@…: Uncaught SyntaxError"


@pytest.mark.parametrize(
    ("accepted", "pushes", "errors", "statuses", "stored", "served"),
    [
        ("", changes(a="a1"), {}, dict(a=200), dict(a="a1"), "a1"),
        ("a1", changes(a="a2"), {}, dict(a=200), dict(a="a2"), "a2"),
        ("a1", changes(a="a1"), {}, dict(a=200), {}, "a1"),
        ("a1 b1", changes(a=None), {}, dict(a=200), dict(a=None), "b1"),
        ("", changes(a=None), {}, dict(a=200), {}, ""),  # nothing to delete
        ("a1", changes(a="a2"), {"a2": BROKEN}, dict(a=422), {}, "a1"),
        ("a1", changes(b="ba"), {}, dict(b=409), {}, "a1"),
        # The first Worker of the batch to claim a route gets it...
        ("", changes(a="a1", b="ba"), {}, dict(a=200, b=409), dict(a="a1"), "a1"),
        ("", changes(b="ba", a="a1"), {}, dict(a=409, b=200), dict(b="ba"), "ba"),
        # ...unless it is refused.
        ("", changes(a="a2", b="ba"), {"a2": BROKEN}, dict(a=422, b=200), dict(b="ba"), "ba"),
        # A Worker deleted in the same batch still holds its routes while the batch decides.
        ("a1", changes(a=None, b="ba"), {}, dict(a=200, b=409), dict(a=None), ""),
        ("a1", changes(b="b1", c="c"), {}, dict(b=200, c=200), dict(b="b1", c="c"), "a1 b1 c"),
    ],
)
def test_decide(
    accepted: str,
    pushes: dict,
    errors: dict[str, str],
    statuses: dict[str, int],
    stored: dict[str, str | None],
    served: str,
) -> None:
    got = batch.decide(deps(accepted), pushes, {version(n): m for n, m in errors.items()}, {})
    assert {w: r.status for w, r in got.results.items()} == {
        f"ns.{w}": s for w, s in statuses.items()
    }
    assert got.changes == changes(**stored)
    assert got.candidate == deps(served)
    # Every 422 of a batch is a validation refusal, remembered with its message.
    assert got.refused == {w: BROKEN for w, r in got.results.items() if r.status == 422}


@pytest.mark.parametrize(
    ("pushes", "errors", "expected"),
    [
        (changes(a=None), {}, {"deleted": True, "worker": "ns.a"}),
        (changes(a="a2"), {}, {"changed": True, "version": version("a2")}),
        (changes(a="a1"), {}, {"changed": False, "version": version("a1")}),
        (changes(a="a2"), {"a2": BROKEN}, {"error": BROKEN, "worker": "ns.a"}),
        (changes(b="ba"), {}, {"error": CLAIMED, "worker": "ns.b"}),
    ],
)
def test_decide_answers(pushes: dict, errors: dict[str, str], expected: dict) -> None:
    got = batch.decide(deps("a1"), pushes, {version(n): m for n, m in errors.items()}, {})
    (result,) = got.results.values()
    assert result.body == expected


@pytest.mark.parametrize(
    ("named", "expected"),
    [
        (changes(), set()),
        (changes(a=None), set()),
        (changes(a="a12", b="b1", c=None), {_a1.version, _a2.version, version("b1")}),
    ],
)
def test_versions_of(named: dict, expected: set[str]) -> None:
    assert batch.versions_of(named) == expected


UNCHECKED = "this location cannot check new versions now, retry: no fds"


@pytest.mark.parametrize(
    ("accepted", "pushes", "errors", "unavailable", "statuses", "stored", "served"),
    [
        # A version the validator could not check is neither refused nor served: 503.
        ("a1", changes(a="a2"), {}, {"a2"}, dict(a=503), {}, "a1"),
        ("", changes(a="a1", b="b1"), {}, {"a1"}, dict(a=503, b=200), dict(b="b1"), "b1"),
        # One version refused outright is enough for a 422, whatever else was unchecked.
        ("", changes(a="a12"), {"a1": BROKEN}, {"a2"}, dict(a=422), {}, ""),
        ("", changes(a="a12"), {"a2": BROKEN}, {"a1"}, dict(a=422), {}, ""),
        # A Worker not changing, or deleted, needs no check.
        ("a1", changes(a="a1"), {}, {"a1"}, dict(a=200), {}, "a1"),
        ("a1", changes(a=None), {}, {"a1"}, dict(a=200), dict(a=None), ""),
        # Its route is not taken while it waits: a later Worker of the batch may claim it.
        ("", changes(a="a1", b="ba"), {}, {"a1"}, dict(a=503, b=200), dict(b="ba"), "ba"),
    ],
)
def test_decide_unavailable(
    accepted: str,
    pushes: dict,
    errors: dict[str, str],
    unavailable: set[str],
    statuses: dict[str, int],
    stored: dict[str, str | None],
    served: str,
) -> None:
    got = batch.decide(
        deps(accepted),
        pushes,
        {version(n): m for n, m in errors.items()},
        {},
        {version(n): UNCHECKED for n in unavailable},
    )
    assert {w: r.status for w, r in got.results.items()} == {
        f"ns.{w}": s for w, s in statuses.items()
    }
    assert got.changes == changes(**stored)
    assert got.candidate == deps(served)
    # A 503 is never remembered as a refusal: the operator pushes it again.
    assert set(got.refused) == {w for w, r in got.results.items() if r.status == 422}
    assert all(r.body["error"] == UNCHECKED for r in got.results.values() if r.status == 503)


@pytest.mark.parametrize(
    ("kind", "alone", "expected"),
    [
        (batch.CHECK_OK, False, "ok"),
        (batch.CHECK_OK, True, "ok"),
        # workerd loaded it and said what is wrong: its own fault, beside others or not.
        (batch.CHECK_REFUSED, False, "blame"),
        (batch.CHECK_REFUSED, True, "blame"),
        # A process that hung or died with others in it: any of them may have done it.
        (batch.CHECK_TIMED_OUT, False, "again"),
        (batch.CHECK_TIMED_OUT, True, "blame"),
        (batch.CHECK_CRASHED, False, "again"),
        (batch.CHECK_CRASHED, True, "blame"),
        # No validator to ask (did not start, no fds, no disk): nobody's fault, retry.
        (batch.CHECK_UNAVAILABLE, False, "unavailable"),
        (batch.CHECK_UNAVAILABLE, True, "unavailable"),
    ],
)
def test_check_verdict(kind: str, alone: bool, expected: str) -> None:
    assert batch.check_verdict(kind, alone) == expected


@pytest.mark.parametrize(
    ("err", "status", "says"),
    [
        (OSError(28, "No space left on device"), 507, "out of disk space"),
        (OSError(122, "Disk quota exceeded"), 507, "out of disk space"),
        (OSError(24, "Too many open files"), 503, "cannot write its store"),
        (OSError(5, "Input/output error"), 503, "cannot write its store"),
    ],
)
def test_store_failed(err: OSError, status: int, says: str) -> None:
    got, message = batch.store_failed(err)
    assert got == status
    assert says in message and str(err.strerror) in message
    assert "nothing of this change was stored or served" in message


@pytest.mark.parametrize(
    ("retryable", "status", "prefix"),
    [
        (True, 503, "the Worker's cell did not start here, retry: "),
        (False, 422, "workerd refused the Worker: "),
    ],
)
def test_own_cell_failure(retryable: bool, status: int, prefix: str) -> None:
    assert batch.own_cell_failure("ns.a", "why", retryable) == Result(
        status, {"error": prefix + "why", "worker": "ns.a"}
    )


OOM = (
    "<--- Last few GCs --->\n[1:0x5] 1433 ms: Mark-Compact (reduce) 1404.0\n\n"
    "workerd/jsg/setup.c++:44: fatal: V8 fatal error; location = Reached heap limit\n"
    "*** Received signal #6: Aborted\nstack: /lib/libc.so.6@0x8aeeb workerd@0x47b\n"
)


@pytest.mark.parametrize(
    ("stderr", "expected"),
    [
        (OOM, "workerd/jsg/setup.c++:44: fatal: V8 fatal error; location = Reached heap limit"),
        ("some line\nlast words\n*** Received signal #11\nstack: x@0x1", "last words"),
        ("*** Received signal #9\n", "it exited without a word"),
        ("", "it exited without a word"),
    ],
)
def test_crash_reason(stderr: str, expected: str) -> None:
    assert batch.crash_reason(stderr) == expected
