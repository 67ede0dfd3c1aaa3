"""How `edgeplane tail` prints the merged live-log stream (report/tail.py)."""

from __future__ import annotations

import json

import pytest

from edgeplane.report.tail import render

EVENT = {
    "type": "event",
    "location": "edge-1",
    "worker": "ns.w",
    "version": "0123456789abcdef0123",
    "outcome": "exception",
    "status": None,
    "timestamp": 1795000000123,
    "request": {"method": "GET", "url": "https://a.example/boom", "headers": {}},
    "cron": None,
    "logs": [{"level": "log", "message": ["hello", 42, {"a": 1}]}],
    "exceptions": [
        {
            "name": "Error",
            "message": "kaboom",
            "stack": "Error: kaboom\n    at fetch (index.js:3:11)",
        }
    ],
}

PRETTY = [
    (
        EVENT,
        "[edge-1] 2026-11-18T11:06:40.123Z GET https://a.example/boom -> exception "
        "(version 0123456789ab)\n"
        '  (log) hello 42 {"a": 1}\n'
        "  ✗ Error: kaboom\n"
        "      at fetch (index.js:3:11)",
    ),
    (
        {**EVENT, "outcome": "ok", "status": 200, "logs": [], "exceptions": []},
        "[edge-1] 2026-11-18T11:06:40.123Z GET https://a.example/boom -> 200 ok "
        "(version 0123456789ab)",
    ),
    (
        {
            **EVENT,
            "request": None,
            "cron": "* * * * *",
            "outcome": "ok",
            "logs": [],
            "exceptions": [],
            "timestamp": None,
        },
        "[edge-1] - cron '* * * * *' -> ok (version 0123456789ab)",
    ),
    (
        {**EVENT, "logs": [], "exceptions": [], "truncated": 3},
        "[edge-1] 2026-11-18T11:06:40.123Z GET https://a.example/boom -> exception "
        "(version 0123456789ab)\n  … 3 more lines left out (too large)",
    ),
    (
        {"type": "ready", "locations": ["edge-1", "edge-2"]},
        "tailing at edge-1, edge-2; Ctrl-C to stop",
    ),
    (
        {"type": "dropped", "location": "edge-2", "dropped": 7},
        "[edge-2] 7 events dropped so far (sampled: too many)",
    ),
    (
        {"type": "error", "location": "edge-3", "error": "edge-3: agent unreachable"},
        "[edge-3] error: edge-3: agent unreachable",
    ),
    ({"type": "end", "error": "access ended: no"}, "the stream ended: access ended: no"),
    (
        {"type": "location", "location": "edge-4"},
        "[edge-4] the Worker runs here now; tailing it too",
    ),
    ({"type": "ping"}, None),
    ({"type": "something-new"}, None),  # a newer operator's line: skipped, not a crash
]


@pytest.mark.parametrize(("line", "want"), PRETTY)
def test_pretty(line: dict[str, object], want: str | None) -> None:
    assert render(line, "pretty") == want


@pytest.mark.parametrize(("line", "want"), [(EVENT, EVENT), ({"type": "ping"}, None)])
def test_json_is_the_line_as_received(line: dict[str, object], want: object) -> None:
    out = render(line, "json")
    assert (json.loads(out) if out is not None else None) == want
    assert out is None or "\n" not in out
