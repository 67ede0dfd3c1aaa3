"""Live-log events at the agent (pure): what a cell's `Tail` entrypoint sends (edge/host_js.py)
made safe to hand out, the filters a subscriber asks for, and its sampling.

An event is cleaned once, whoever tails: strings clipped, at most MAX_LINES console lines
and exceptions, credential headers replaced, and every secret value of the Worker replaced
wherever it appears (wire.redact, the rule for everything that leaves the agent).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from edgeplane.wire import redact

REDACTED = "[redacted]"
# Request headers that carry credentials: never shown, whatever their value.
SECRET_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key"}
)
MAX_STRING = 4096  # characters of one string (a console argument, a stack)
MAX_LINES = 100  # console lines, and exceptions, of one event
# The whole event as JSON, so that one line of a stream stays within a reader's line
# buffer (aiohttp's is 128 KiB): console lines beyond it are left out, counted in
# "truncated".
MAX_EVENT = 64 * 1024
STATUSES = ("ok", "error", "canceled")


def _clip(s: str) -> str:
    return s if len(s) <= MAX_STRING else s[:MAX_STRING] + "…[clipped]"


def _scrub(value: object, secrets: frozenset[str], depth: int = 0) -> object:
    """`value` (JSON) with every string clipped and redacted; nesting cut at depth 8."""
    if isinstance(value, str):
        return redact(_clip(value), secrets)
    if depth >= 8:
        return "…"
    if isinstance(value, list):
        return [_scrub(v, secrets, depth + 1) for v in value[:MAX_LINES]]
    if isinstance(value, dict):
        return {
            redact(str(k), secrets): _scrub(v, secrets, depth + 1)
            for k, v in list(value.items())[:MAX_LINES]
        }
    if value is None or isinstance(value, bool | int | float):
        return value
    return _scrub(str(value), secrets, depth)


def _headers(raw: object, secrets: frozenset[str]) -> dict[str, object]:
    if not isinstance(raw, Mapping):
        return {}
    out: dict[str, object] = {}
    for k, v in list(raw.items())[:MAX_LINES]:
        name = str(k).lower()
        out[name] = REDACTED if name in SECRET_HEADERS else _scrub(v, secrets)
    return out


def _fit(event: dict[str, object]) -> dict[str, object]:
    """`event` within MAX_EVENT: console lines dropped from the end, then exceptions."""
    size = len(json.dumps(event))
    for key in ("logs", "exceptions"):
        items: list[object] = event[key]  # type: ignore[assignment]
        while size > MAX_EVENT and items:
            size -= len(json.dumps(items.pop())) + 2
            event["truncated"] = int(event.get("truncated", 0)) + 1  # type: ignore[call-overload]
    return event


def clean(raw: Mapping[str, object], secrets: Iterable[str]) -> dict[str, object]:
    """The event a subscriber receives, from what a cell sent for one request."""
    s = frozenset(secrets)
    request = raw.get("request")
    req: dict[str, object] | None = None
    if isinstance(request, Mapping):
        req = {
            "method": _scrub(request.get("method"), s),
            "url": _scrub(request.get("url"), s),
            "headers": _headers(request.get("headers"), s),
        }
    logs, exceptions = raw.get("logs"), raw.get("exceptions")
    return _fit(
        {
            "type": "event",
            "worker": str(raw.get("worker", "")),
            "version": str(raw.get("version", "")),
            "outcome": str(raw.get("outcome", "")),
            "timestamp": raw.get("timestamp") if isinstance(raw.get("timestamp"), int) else None,
            "request": req,
            "status": raw.get("status") if isinstance(raw.get("status"), int) else None,
            "cron": _scrub(raw.get("cron"), s),
            "logs": _scrub(logs if isinstance(logs, list) else [], s),
            "exceptions": _scrub(exceptions if isinstance(exceptions, list) else [], s),
        }
    )


def status_of(event: Mapping[str, object]) -> str:
    """ok, error (an exception, an outcome other than ok, or a 5xx) or canceled."""
    outcome = event.get("outcome")
    if outcome == "canceled":
        return "canceled"
    status = event.get("status")
    failed = outcome != "ok" or bool(event.get("exceptions"))
    return "error" if failed or (isinstance(status, int) and status >= 500) else "ok"


def _text(event: Mapping[str, object]) -> str:
    """What --search looks in: the console lines and the exceptions."""
    parts: list[str] = []
    for line in event.get("logs") or []:  # type: ignore[attr-defined]
        msg = line.get("message") if isinstance(line, Mapping) else line
        parts += [str(m) for m in msg] if isinstance(msg, list) else [str(msg)]
    for x in event.get("exceptions") or []:  # type: ignore[attr-defined]
        if isinstance(x, Mapping):
            parts += [str(x.get("name", "")), str(x.get("message", "")), str(x.get("stack", ""))]
    return "\n".join(parts)


@dataclass(frozen=True)
class Filters:
    statuses: frozenset[str] = frozenset()  # empty: every status
    search: str = ""  # case-insensitive, in console lines and exceptions

    def wants(self, event: Mapping[str, object]) -> bool:
        if self.statuses and status_of(event) not in self.statuses:
            return False
        return not self.search or self.search.lower() in _text(event).lower()


def parse_filters(query: Mapping[str, str]) -> Filters:
    """`?status=error,ok&search=text`; ValueError naming the parameter and the fix."""
    unknown = sorted(set(query) - {"status", "search"})
    if unknown:
        raise ValueError(f"{unknown[0]}: unknown parameter; use status= and search=")
    statuses = frozenset(s.strip() for s in query.get("status", "").split(",") if s.strip())
    bad = sorted(statuses - set(STATUSES))
    if bad:
        raise ValueError(f"status: {bad[0]!r} is not one of {', '.join(STATUSES)}")
    search = query.get("search", "")
    if len(search) > 256:
        raise ValueError("search: longer than 256 characters")
    return Filters(statuses, search)


@dataclass
class TokenBucket:
    """Sampling for one subscriber: `rate` events a second on average, bursts of `burst`.
    `take(now)` says whether an event at `now` (seconds, monotonic) may be sent."""

    rate: float
    burst: float
    tokens: float = -1.0
    last: float = 0.0

    def take(self, now: float) -> bool:
        if self.tokens < 0:  # the first event
            self.tokens, self.last = self.burst, now
        self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False
