"""The watchdog's decisions (edgeplane.edge.watchdog): which version a hung cell was running,
taken from the front's requests in flight, and when a version that keeps hanging its cell
is quarantined."""

from __future__ import annotations

import errno

import pytest

from edgeplane.edge.watchdog import (
    HANGS_TO_QUARANTINE,
    WINDOW,
    Suspect,
    culprit,
    quarantine_reason,
    recent,
    says_nothing,
)

A, B, C = "a" * 64, "b" * 64, "c" * 64


def req(cell: str, worker: str, version: str, age: object, path: str | None = "/x") -> dict:
    """One request in flight, as the front's GET /inflight lists it."""
    r = {"cell": cell, "worker": worker, "version": version, "ageMs": age}
    if path is not None:
        r["path"] = path
    return r


@pytest.mark.parametrize(
    ("inflight", "cell", "expected"),
    [
        ([], "c0", None),
        # The cell hung on its own (a timer), or only other cells have requests in flight.
        ([req("c1", "ns.a", A, 9000)], "c0", None),
        ([req("c0", "ns.a", A, 10)], "c0", Suspect("ns.a", A, "/x")),
        # The oldest request the cell has not answered is the one it is stuck in.
        (
            [
                req("c0", "ns.a", A, 10),
                req("c0", "ns.b", B, 2500, "/loop"),
                req("c0", "ns.a", C, 30),
            ],
            "c0",
            Suspect("ns.b", B, "/loop"),
        ),
        # An older request on another cell is that cell's business.
        (
            [req("c1", "ns.c", C, 99999), req("c0", "ns.a", A, 5), req("c0", "ns.b", B, 7)],
            "c0",
            Suspect("ns.b", B, "/x"),
        ),
        (
            [req("do:ns.d", "ns.d", A, 3), req("c0", "ns.a", B, 4)],
            "do:ns.d",
            Suspect("ns.d", A, "/x"),
        ),
        # Ages as JSON may carry them; no path named: "".
        ([req("c0", "ns.a", A, "20"), req("c0", "ns.b", B, 19.5)], "c0", Suspect("ns.a", A, "/x")),
        ([req("c0", "ns.a", A, 1, path=None)], "c0", Suspect("ns.a", A, "")),
    ],
    ids=[
        "none",
        "other-cell",
        "one",
        "oldest",
        "ignores-other-cells",
        "own-cell",
        "ages",
        "no-path",
    ],
)
def test_culprit(inflight: list[dict], cell: str, expected: Suspect | None) -> None:
    assert culprit(inflight, cell) == expected


NOW = 10_000.0


@pytest.mark.parametrize(
    ("ago", "counted"),
    [
        ([], []),
        ([0], [0]),
        ([WINDOW + 100, WINDOW + 0.001, WINDOW, 599, 1, 0], [WINDOW, 599, 1, 0]),  # 600 s counts
        ([5000, 4000], []),
    ],
)
def test_recent(ago: list[float], counted: list[float]) -> None:
    assert recent([NOW - a for a in ago], NOW) == [NOW - a for a in counted]


HUNG = Suspect("ns.a", A, "/loop")
REASON = (
    "it hung its cell {n} times in 10 minutes (last: a request to {path}); a request to it did "
    "not finish, so every Worker of that cell stopped answering until the cell was replaced"
)


@pytest.mark.parametrize(
    ("ago", "last", "expected"),
    [
        ([], HUNG, None),
        ([0], HUNG, None),
        ([300, 0], HUNG, None),  # 2 hangs: not yet
        ([590, 300, 0], HUNG, REASON.format(n=3, path="/loop")),
        ([600, 1, 0], HUNG, REASON.format(n=3, path="/loop")),
        # Old hangs outside the window do not count.
        ([601, 300, 0], HUNG, None),
        ([5000, 4000, 3000, 300, 0], HUNG, None),
        ([5000, 500, 300, 0], HUNG, REASON.format(n=3, path="/loop")),
        ([500, 400, 300, 0], HUNG, REASON.format(n=4, path="/loop")),
        ([2, 1, 0], Suspect("ns.a", A, ""), REASON.format(n=3, path="/")),
    ],
    ids=[
        "none",
        "1",
        "2",
        "3",
        "3-at-edge",
        "old-not-counted",
        "many-old",
        "old-and-3",
        "4",
        "no-path",
    ],
)
def test_quarantine_reason(ago: list[float], last: Suspect, expected: str | None) -> None:
    assert quarantine_reason([NOW - a for a in ago], NOW, last) == expected


def test_quarantine_takes_three_hangs_in_ten_minutes() -> None:
    assert (HANGS_TO_QUARANTINE, WINDOW) == (3, 600.0)


@pytest.mark.parametrize(
    ("error_number", "expected"),
    [
        # The agent's own lack of fds or memory: the process may be fine, keep it.
        (errno.EMFILE, True),
        (errno.ENFILE, True),
        (errno.ENOBUFS, True),
        (errno.ENOMEM, True),
        # The process's side: nothing listens, or it reset the connection.
        (errno.ECONNREFUSED, False),
        (errno.ECONNRESET, False),
        (None, False),  # no errno: a protocol error, a bad answer
    ],
)
def test_says_nothing(error_number: int | None, expected: bool) -> None:
    assert says_nothing(error_number) is expected
