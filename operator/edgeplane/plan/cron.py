"""Cron triggers (pure): Cloudflare's expression dialect, the next occurrence, and which
location runs a Worker's schedule.

The dialect is the one workerd's bundled `/workerd/cron.js` reads (Cloudflare's, from its
parser saffron), and `tests/integration/test_cron_dialect.py` runs both side by side in the
real workerd to hold them together. It is not Vixie cron (nor croniter):

- five fields (minute, hour, day of month, month, day of week), always UTC;
- weekdays run 1-7 from Sunday (`1-5` is Sunday to Thursday), or `sun`..`sat`; months
  1-12 or `jan`..`dec`;
- day of month takes `L` (last day), `L-n` (n days before it), `nW` (the weekday nearest
  day n, never leaving the month), `LW`, `L-nW`; day of week takes `L` (Saturday), `nL`
  (the month's last such weekday) and `n#k` (its k-th);
- with both day fields restricted a day matches when either does;
- refused: a descending range (saffron wraps it one value too far), `*` inside a list,
  and an expression that never matches (e.g. 30 February).
"""

from __future__ import annotations

import calendar
import datetime as dt
import hashlib
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

# Per Worker. Cloudflare caps Cron Triggers per account (250 on the paid plan); a Worker's
# list is bounded so that one resource cannot make a location's scheduler unbounded.
MAX_CRONS = 20
MAX_CRON_TEXT = 100  # characters of one expression
# The calendar repeats every 400 Gregorian years, so a walk that long sees every
# (month, day, weekday) combination: nothing found in it is never found.
CYCLE_DAYS = 146_097
MINUTE_MS = 60_000
DAY_MINUTES = 1440
_EPOCH = dt.date(1970, 1, 1).toordinal()

# A day rule: (day of month, weekday with Sunday 0, last day of the month) -> matches.
DayRule = Callable[[int, int, int], bool]


class CronError(ValueError):
    """An expression Cloudflare would refuse; the message names it."""


@dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()


_MINUTE = _Field("minute", 0, 59)
_HOUR = _Field("hour", 0, 23)
_DOM = _Field("day of month", 1, 31)
_MONTH = _Field("month", 1, 12, ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep",
                                   "oct", "nov", "dec"))
_DOW = _Field("day of week", 1, 7, ("sun", "mon", "tue", "wed", "thu", "fri", "sat"))
_DIGITS = re.compile(r"\d+")
_LAST_OFFSET = re.compile(r"L-(\d+)(W?)")


@dataclass(frozen=True)
class Cron:
    """A parsed expression: the sets of minutes, hours and months it names, and its day
    rules (None for `*`)."""

    text: str
    minutes: frozenset[int]
    hours: frozenset[int]
    months: frozenset[int]
    dom: DayRule | None
    dow: DayRule | None


def _number(text: str) -> int | None:
    return int(text) if _DIGITS.fullmatch(text) else None


def _value(text: str, f: _Field) -> int:
    lowered = text.lower()
    v = f.low + f.names.index(lowered) if lowered in f.names else _number(text)
    if v is None:
        raise CronError(f"{f.name} field has {text}")
    if not f.low <= v <= f.high:
        raise CronError(f"{f.name} field has {v} outside {f.low}-{f.high}")
    return v


def _item(item: str, f: _Field) -> range:
    """One list item (`*`, `a`, `a-b`, any of them `/step`) as the values it names."""
    spec, *rest = item.split("/")
    step = 1 if not rest else _number(rest[0])
    if len(rest) > 1 or step is None or not 1 <= step <= f.high - f.low:
        raise CronError(f"{f.name} field has a bad step in {item}")
    if spec == "*":
        first, last = f.low, f.high
    else:
        bounds = spec.split("-")
        if len(bounds) > 2:
            raise CronError(f"{f.name} field has {spec}")
        first = _value(bounds[0], f)
        # `a/step` runs to the field's end, as in every cron.
        last = _value(bounds[1], f) if len(bounds) == 2 else (f.high if rest else first)
    if first > last:
        raise CronError(f"{f.name} field has a descending range in {item}")
    return range(first, last + 1, step)


def _values(text: str, f: _Field) -> frozenset[int]:
    items = text.split(",")
    if "*" in items and len(items) > 1:
        raise CronError(f"{f.name} field has * inside a list")
    return frozenset(v for item in items for v in _item(item, f))


def _nearest_weekday(target: int, target_weekday: int, last: int) -> int | None:
    """The day `W` picks for `target`: itself on a weekday, else the nearest weekday that
    stays in the month (Saturday the 1st moves to Monday the 3rd, a Sunday that ends the
    month to the Friday before). None when the target is not in the month."""
    if not 1 <= target <= last:
        return None
    if target_weekday == 6:
        return 3 if target == 1 else target - 1
    if target_weekday == 0:
        return target - 2 if target == last else target + 1
    return target


def _weekday_rule(target_of: Callable[[int], int]) -> DayRule:
    """A `W` rule whose target day is `target_of(last day of month)`."""

    def rule(day: int, weekday: int, last: int) -> bool:
        target = target_of(last)
        return _nearest_weekday(target, (weekday + target - day) % 7, last) == day

    return rule


def _day_of_month(text: str) -> DayRule | None:
    if text == "*":
        return None
    if text == "L":
        return lambda day, _w, last: day == last
    if text == "LW":
        return _weekday_rule(lambda last: last)
    offset = _LAST_OFFSET.fullmatch(text)
    if offset:
        n = int(offset[1])
        if not 1 <= n <= 30:
            raise CronError(f"day of month field has {text}")
        if offset[2]:
            return _weekday_rule(lambda last: last - n)
        return lambda day, _w, last: day == last - n
    if text.endswith("W"):
        target = _value(text[:-1], _DOM)
        return _weekday_rule(lambda _last: target)
    days = _values(text, _DOM)
    return lambda day, _w, _last: day in days


def _day_of_week(text: str) -> DayRule | None:
    if text == "*":
        return None
    if text == "L":  # saffron reads a bare L as day 7, Saturday
        return lambda _d, weekday, _last: weekday == 6
    if text.endswith("L"):
        want = _value(text[:-1], _DOW) - 1
        return lambda day, weekday, last: weekday == want and day > last - 7
    if "#" in text:
        day_text, *nth = text.split("#")
        want = _value(day_text, _DOW) - 1
        n = _number(nth[0]) if len(nth) == 1 else None
        if n is None or not 1 <= n <= 5:
            raise CronError(f"day of week field has {text}")
        return lambda day, weekday, _last: weekday == want and (day - 1) // 7 + 1 == n
    weekdays = _values(text, _DOW)
    return lambda _d, weekday, _last: weekday + 1 in weekdays


def parse(expression: str) -> Cron:
    """The expression parsed, or CronError with a message that quotes it."""
    text = expression.strip()
    try:
        fields = text.split()
        if not fields:
            raise CronError("it is empty")
        if len(fields) != 5:
            raise CronError(f"{len(fields)} fields, not 5")
        cron = Cron(text, _values(fields[0], _MINUTE), _values(fields[1], _HOUR),
                    _values(fields[3], _MONTH), _day_of_month(fields[2]), _day_of_week(fields[4]))
        if next_ms(cron, 0) is None:
            raise CronError("it never matches")
    except CronError as e:
        raise CronError(f'cron trigger "{text}": {e}') from None
    return cron


def problem(expression: str) -> str | None:
    """Why the expression is refused, or None."""
    try:
        parse(expression)
    except CronError as e:
        return str(e)
    return None


def _day_matches(cron: Cron, date: dt.date) -> bool:
    if cron.dom is None and cron.dow is None:
        return True
    args = (date.day, date.isoweekday() % 7, calendar.monthrange(date.year, date.month)[1])
    if cron.dom is not None and cron.dom(*args):
        return True
    return cron.dow is not None and cron.dow(*args)


def _first_time(cron: Cron, from_minute: int) -> int | None:
    """The first minute of the day at or after `from_minute` that the expression names."""
    for hour in sorted(h for h in cron.hours if h >= from_minute // 60):
        floor = from_minute % 60 if hour == from_minute // 60 else 0
        minutes = [m for m in cron.minutes if m >= floor]
        if minutes:
            return hour * 60 + min(minutes)
    return None


def next_ms(cron: Cron, after_ms: int) -> int | None:
    """The first occurrence strictly after `after_ms` (milliseconds since the epoch, UTC),
    as milliseconds, or None when none comes within a 400-year cycle."""
    start = after_ms // MINUTE_MS + 1
    day, from_minute = divmod(start, DAY_MINUTES)
    for offset in range(CYCLE_DAYS):
        date = dt.date.fromordinal(_EPOCH + day + offset)
        if date.month in cron.months and _day_matches(cron, date):
            t = _first_time(cron, from_minute if offset == 0 else 0)
            if t is not None:
                return ((day + offset) * DAY_MINUTES + t) * MINUTE_MS
    return None


def next_after(cron: Cron, after: dt.datetime) -> dt.datetime | None:
    """The first occurrence strictly after `after` (an aware datetime), in UTC."""
    at = next_ms(cron, math.floor(after.timestamp() * 1000))
    return None if at is None else dt.datetime.fromtimestamp(at / 1000, dt.UTC)


def next_of_all(crons: Iterable[Cron], after_ms: int) -> tuple[int, tuple[str, ...]] | None:
    """The soonest occurrence of any of `crons` after `after_ms`, with the expressions due
    then (several may fall on one minute), or None when none ever comes."""
    times = {c.text: next_ms(c, after_ms) for c in crons}
    due = [t for t in times.values() if t is not None]
    if not due:
        return None
    at = min(due)
    return at, tuple(text for text, t in times.items() if t == at)


def owner(key: str, locations: Iterable[str]) -> str | None:
    """The location that runs `key`'s (a Worker's `namespace/name`) schedule: rendezvous
    hashing, the location with the highest hash of (key, location). Stable: a Worker moves
    only when its owner leaves the set (or a new location outranks it, for ~1/n of them);
    spread: each location owns about 1/n of the Workers. None with no location."""
    best: tuple[bytes, str] | None = None
    for location in locations:
        score = hashlib.sha256(f"{key}\0{location}".encode()).digest()
        if best is None or (score, location) > best:
            best = (score, location)
    return None if best is None else best[1]


def grants(
    owners: Mapping[str, str | None],
    held: Mapping[str, Mapping[str, float]],
    location: str,
    now: float,
) -> set[str]:
    """The Workers whose schedules `location` is given now: those it owns that no other
    location may still run. `held`: per location, per Worker, until when (on the
    operator's clock) that location may hold a lease on it (no earlier than the agent's
    lease can end). A Worker that moves is therefore given to its new location only once
    the old one has been told to stop or its lease has run out: never two at once."""
    return {
        worker
        for worker, chosen in owners.items()
        if chosen == location
        and not any(
            by_worker.get(worker, 0.0) > now
            for other, by_worker in held.items()
            if other != location
        )
    }
