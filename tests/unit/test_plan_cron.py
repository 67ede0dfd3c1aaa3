"""Cron triggers (`plan/cron.py`): Cloudflare's dialect, the next occurrence, and which
location runs a Worker's schedule. tests/integration/test_cron_dialect.py checks the same
functions against workerd's own cron.js."""

from __future__ import annotations

import collections
import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgeplane.plan import cron


def t(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=dt.UTC)


# (expression, after, the next occurrence): 2024-02-03 is a Saturday.
NEXT = [
    ("* * * * *", t(2024, 2, 3, 10, 0, 0), t(2024, 2, 3, 10, 1)),
    ("* * * * *", t(2024, 2, 3, 10, 0, 59), t(2024, 2, 3, 10, 1)),  # strictly after
    ("*/15 * * * *", t(2024, 2, 3, 10, 15), t(2024, 2, 3, 10, 30)),
    ("5/20 * * * *", t(2024, 2, 3, 10, 46), t(2024, 2, 3, 11, 5)),  # a/step runs to 59
    ("0 0 * * 1-5", t(2024, 2, 2, 12), t(2024, 2, 4)),  # Sun-Thu: Friday is skipped
    ("0 0 * * MON-FRI", t(2024, 2, 3, 12), t(2024, 2, 5)),
    ("0 0 * * 7", t(2024, 2, 1), t(2024, 2, 3)),  # 7 is Saturday
    ("0 0 * * L", t(2024, 2, 1), t(2024, 2, 3)),  # a bare L too
    ("0 0 L * *", t(2024, 2, 3), t(2024, 2, 29)),  # leap year
    ("0 0 L * *", t(2023, 2, 3), t(2023, 2, 28)),
    ("0 0 L 2 *", t(2100, 1, 1), t(2100, 2, 28)),  # a century is not leap
    ("0 0 L-3 * *", t(2024, 4, 1), t(2024, 4, 27)),
    ("0 0 15W * *", t(2024, 6, 1), t(2024, 6, 14)),  # Sat 15th -> Fri 14th
    ("0 0 15W * *", t(2024, 9, 1), t(2024, 9, 16)),  # Sun 15th -> Mon 16th
    ("0 0 1W * *", t(2024, 5, 31), t(2024, 6, 3)),  # Sat 1st -> Mon 3rd, never May 31st
    ("0 0 30W * *", t(2024, 6, 1), t(2024, 6, 28)),  # Sun 30th, the last -> Fri 28th
    ("0 0 31W * *", t(2024, 4, 1), t(2024, 5, 31)),  # April has no 31st
    ("0 0 LW * *", t(2024, 3, 1), t(2024, 3, 29)),  # Sun 31st -> Fri 29th
    ("0 0 L-1W * *", t(2024, 8, 1), t(2024, 8, 30)),
    ("0 0 * * 6L", t(2024, 2, 1), t(2024, 2, 23)),  # last Friday
    ("0 0 * * 2#1", t(2024, 2, 3), t(2024, 2, 5)),  # first Monday
    ("0 0 * * 6#5", t(2024, 2, 1), t(2024, 3, 29)),  # no fifth Friday in Feb 2024
    ("0 0 13 * 6", t(2024, 2, 3), t(2024, 2, 9)),  # the 13th or a Friday
    ("0 0 29 2 *", t(2024, 3, 1), t(2028, 2, 29)),
    ("30 2 * jan,JUL *", t(2024, 2, 3), t(2024, 7, 1, 2, 30)),
    ("59 23 31 12 *", t(2024, 12, 31, 23, 59), t(2025, 12, 31, 23, 59)),
]


@pytest.mark.parametrize(("expression", "after", "expected"), NEXT)
def test_next_after(expression: str, after: dt.datetime, expected: dt.datetime) -> None:
    assert cron.next_after(cron.parse(expression), after) == expected


REFUSED = [
    ("* * * *", "4 fields, not 5"),
    ("* * * * * *", "6 fields, not 5"),
    ("   ", "it is empty"),
    ("60 * * * *", "minute field has 60 outside 0-59"),
    ("* 24 * * *", "hour field has 24 outside 0-23"),
    ("0 0 0 * *", "day of month field has 0 outside 1-31"),
    ("0 0 * 13 *", "month field has 13 outside 1-12"),
    ("0 0 * * 0", "day of week field has 0 outside 1-7"),  # not Vixie's Sunday 0
    ("0 0 * * SAT-SUN", "day of week field has a descending range in SAT-SUN"),
    ("*,5 * * * *", "minute field has * inside a list"),
    ("*/0 * * * *", "minute field has a bad step in */0"),
    ("*/60 * * * *", "minute field has a bad step in */60"),
    ("0 0 30 2 *", "it never matches"),
    ("0 0 L-31 * *", "day of month field has L-31"),
    ("0 0 * * 2#6", "day of week field has 2#6"),
    ("0 0 ? * *", "day of month field has ?"),
    ("a * * * *", "minute field has a"),
]


@pytest.mark.parametrize(("expression", "message"), REFUSED)
def test_refused_with_the_expression_named(expression: str, message: str) -> None:
    with pytest.raises(cron.CronError) as e:
        cron.parse(expression)
    assert str(e.value) == f'cron trigger "{expression.strip()}": {message}'
    assert cron.problem(expression) == str(e.value)


def test_next_of_all_gives_every_expression_due_that_minute() -> None:
    crons = [cron.parse(e) for e in ("0 * * * *", "*/30 * * * *", "0 0 1 1 *")]
    at = int(t(2024, 2, 3, 10, 20).timestamp() * 1000)
    assert cron.next_of_all(crons, at) == (at + 10 * 60_000, ("*/30 * * * *",))
    assert cron.next_of_all(crons, at + 10 * 60_000) == (at + 40 * 60_000,
                                                          ("0 * * * *", "*/30 * * * *"))
    assert cron.next_of_all([], at) is None


# (Worker, locations, owner): fixed answers, so a change of hash is a visible change.
OWNERS = [
    ("ns/a", [], None),
    ("ns/a", ["x"], "x"),
    ("default/hello", ["loc-a", "loc-b", "loc-c"], "loc-c"),
    ("default/hello", ["loc-a", "loc-b"], "loc-b"),
    ("team/w2", ["loc-a", "loc-b", "loc-c"], "loc-b"),
    ("team/w2", ["loc-b", "loc-c", "loc-a"], "loc-b"),
]


@pytest.mark.parametrize(("key", "locations", "expected"), OWNERS)
def test_owner_table(key: str, locations: list[str], expected: str | None) -> None:
    assert cron.owner(key, locations) == expected


@given(st.lists(st.text(min_size=1, max_size=8), min_size=2, max_size=8, unique=True),
       st.text(max_size=12))
def test_owner_is_stable_and_moves_only_when_it_leaves(locations: list[str], key: str) -> None:
    first = cron.owner(key, locations)
    assert first in locations
    assert cron.owner(key, list(reversed(locations))) == first  # order does not matter
    others = [loc for loc in locations if loc != first]
    assert cron.owner(key, [*others]) != first
    gone = others[0]
    assert cron.owner(key, [loc for loc in locations if loc != gone]) == first


def test_owner_spreads_workers_over_locations() -> None:
    locations = ["ams", "fra", "sjc", "nrt"]
    counts = collections.Counter(cron.owner(f"ns/w{i}", locations) for i in range(4000))
    assert set(counts) == set(locations)
    assert all(800 <= n <= 1200 for n in counts.values()), counts


# (owners, held: location -> worker -> until, location, now, granted): the lease hand-over.
GRANTS = [
    ({"ns.a": "x"}, {}, "x", 100.0, {"ns.a"}),  # owned, nobody else holds it
    ({"ns.a": "x"}, {}, "y", 100.0, set()),  # not its own
    ({"ns.a": None}, {}, "x", 100.0, set()),  # no Ready location
    ({"ns.a": "x"}, {"y": {"ns.a": 120.0}}, "x", 100.0, set()),  # y may still run it
    ({"ns.a": "x"}, {"y": {"ns.a": 100.0}}, "x", 100.0, {"ns.a"}),  # y's lease is over
    ({"ns.a": "x"}, {"x": {"ns.a": 120.0}}, "x", 100.0, {"ns.a"}),  # its own lease renewed
    ({"ns.a": "x", "ns.b": "x"}, {"y": {"ns.b": 150.0}}, "x", 100.0, {"ns.a"}),
    ({"ns.a": "y"}, {"x": {"ns.a": 120.0}}, "x", 100.0, set()),  # moved away: x stops
]


@pytest.mark.parametrize(("owners", "held", "location", "now", "expected"), GRANTS)
def test_grants(owners: dict[str, str | None], held: dict[str, dict[str, float]],
                location: str, now: float, expected: set[str]) -> None:
    assert cron.grants(owners, held, location, now) == expected
