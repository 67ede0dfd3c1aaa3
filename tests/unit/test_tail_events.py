"""Live-log events at the agent (edge/tail_events.py): redaction, filters, sampling."""

from __future__ import annotations

import json

import pytest

from edgeplane.edge.tail_events import (
    MAX_EVENT,
    MAX_LINES,
    MAX_STRING,
    Filters,
    TokenBucket,
    clean,
    parse_filters,
    status_of,
)

SECRET = "hunter2-secret"


def raw(**kw: object) -> dict[str, object]:
    base: dict[str, object] = {
        "worker": "ns.w",
        "version": "v1",
        "outcome": "ok",
        "timestamp": 1,
        "status": 200,
        "request": {"method": "GET", "url": "https://a.example/", "headers": {}},
        "logs": [],
        "exceptions": [],
    }
    return {**base, **kw}


REDACTION = [
    # (what the cell sent, path into the cleaned event, expected)
    (
        raw(logs=[{"level": "log", "message": [f"k={SECRET}"]}]),
        ("logs", 0, "message", 0),
        "k=[redacted]",
    ),
    (
        raw(logs=[{"level": "log", "message": [{"nested": [SECRET]}]}]),
        ("logs", 0, "message", 0, "nested", 0),
        "[redacted]",
    ),
    (
        raw(exceptions=[{"name": "Error", "message": SECRET, "stack": f"Error: {SECRET}\n at x"}]),
        ("exceptions", 0, "stack"),
        "Error: [redacted]\n at x",
    ),
    (
        raw(request={"method": "GET", "url": f"https://a/?t={SECRET}", "headers": {}}),
        ("request", "url"),
        "https://a/?t=[redacted]",
    ),
    (
        raw(request={"url": "u", "headers": {"Authorization": "Bearer abc"}}),
        ("request", "headers", "authorization"),
        "[redacted]",
    ),
    (
        raw(request={"url": "u", "headers": {"cookie": "sid=1"}}),
        ("request", "headers", "cookie"),
        "[redacted]",
    ),
    (
        raw(request={"url": "u", "headers": {"x-token": f" {SECRET} "}}),
        ("request", "headers", "x-token"),
        " [redacted] ",
    ),
    (
        raw(request={"url": "u", "headers": {"accept": "text/html"}}),
        ("request", "headers", "accept"),
        "text/html",
    ),
    (
        raw(logs=[{"message": ["x" * (MAX_STRING + 10)]}]),
        ("logs", 0, "message", 0),
        "x" * MAX_STRING + "…[clipped]",
    ),
    (raw(status="500"), ("status",), None),  # not a number: dropped, not trusted
    (raw(logs="not a list"), ("logs",), []),
    (raw(request="nope"), ("request",), None),
]


@pytest.mark.parametrize(("event", "path", "want"), REDACTION)
def test_clean(event: dict[str, object], path: tuple[object, ...], want: object) -> None:
    got: object = clean(event, {SECRET})
    for p in path:
        got = got[p]  # type: ignore[index]
    assert got == want


def test_clean_fits_an_event_in_a_stream_line() -> None:
    big = raw(logs=[{"message": ["y" * MAX_STRING]}] * MAX_LINES)
    out = clean(big, ())
    assert len(json.dumps(out)) <= MAX_EVENT
    assert 0 < len(out["logs"]) < MAX_LINES  # type: ignore[arg-type]
    assert out["truncated"] == MAX_LINES - len(out["logs"])  # type: ignore[arg-type]
    assert "truncated" not in clean(raw(), ())


def test_clean_caps_lines_and_never_leaks() -> None:
    many = raw(logs=[{"message": [SECRET]}] * (MAX_LINES + 5))
    out = clean(many, [SECRET])
    assert len(out["logs"]) == MAX_LINES  # type: ignore[arg-type]
    assert SECRET not in json.dumps(out)


STATUS = [
    (raw(), "ok"),
    (raw(outcome="exception", status=None), "error"),
    (raw(exceptions=[{"name": "E"}]), "error"),
    (raw(status=503), "error"),
    (raw(status=404), "ok"),
    (raw(outcome="exceededCpu"), "error"),
    (raw(outcome="canceled"), "canceled"),
]


@pytest.mark.parametrize(("event", "want"), STATUS)
def test_status_of(event: dict[str, object], want: str) -> None:
    assert status_of(event) == want


FILTERS = [
    ({}, raw(), True),
    ({"status": "error"}, raw(), False),
    ({"status": "error"}, raw(outcome="exception"), True),
    ({"status": "ok,error"}, raw(outcome="exception"), True),
    ({"search": "HELLO"}, raw(logs=[{"message": ["hello world"]}]), True),
    ({"search": "kaboom"}, raw(exceptions=[{"name": "Error", "message": "kaboom"}]), True),
    ({"search": "absent"}, raw(logs=[{"message": ["hello"]}]), False),
    ({"search": "a.example"}, raw(), False),  # the URL is not searched, as wrangler does
]


@pytest.mark.parametrize(("query", "event", "want"), FILTERS)
def test_filters(query: dict[str, str], event: dict[str, object], want: bool) -> None:
    assert parse_filters(query).wants(clean(event, ())) is want


BAD = [
    ({"status": "failed"}, "status: 'failed' is not one of ok, error, canceled"),
    ({"format": "json"}, "format: unknown parameter"),
    ({"search": "x" * 257}, "search: longer than 256"),
]


@pytest.mark.parametrize(("query", "message"), BAD)
def test_bad_filters(query: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        parse_filters(query)


def test_default_filters_take_everything() -> None:
    assert parse_filters({}) == Filters()


BUCKET = [
    # (rate, burst, event times, which pass)
    (2.0, 2.0, [0, 0, 0, 0], [True, True, False, False]),
    (2.0, 2.0, [0, 0, 0, 0.5, 0.6, 1.1], [True, True, False, True, False, True]),
    (1.0, 1.0, [0, 10, 10], [True, True, False]),  # idle time refills up to the burst only
    (100.0, 100.0, [0] * 101, [True] * 100 + [False]),
]


@pytest.mark.parametrize(("rate", "burst", "times", "want"), BUCKET)
def test_token_bucket(rate: float, burst: float, times: list[float], want: list[bool]) -> None:
    b = TokenBucket(rate, burst)
    assert [b.take(t) for t in times] == want
