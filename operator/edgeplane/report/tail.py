"""How `edgeplane tail` prints the operator's merged live-log stream (pure).

`render(line, fmt)` turns one line of the stream (edgeplane/tailserver.py) into text, or
None for what a reader need not see (pings). `json` prints every line as received, one
JSON object a line, for jq; `pretty` is for people: one header line per request, its
console lines and exceptions (with their stack) indented under it.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from typing import Any

FORMATS = ("pretty", "json")


def _when(ms: object) -> str:
    if not isinstance(ms, int | float) or isinstance(ms, bool):
        return "-"
    t = dt.datetime.fromtimestamp(ms / 1000, dt.UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def _arg(v: object) -> str:
    return v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)


def _headline(e: Mapping[str, Any]) -> str:
    where = f"[{e.get('location', '?')}]"
    req = e.get("request")
    if isinstance(req, Mapping):
        what = f"{req.get('method', '?')} {req.get('url', '?')}"
    elif e.get("cron") is not None:
        what = f"cron {e['cron']!r}"
    else:
        what = "event"
    status = e.get("status")
    outcome = str(e.get("outcome", ""))
    result = f"{status} {outcome}" if status is not None else outcome
    version = str(e.get("version", ""))[:12]
    return f"{where} {_when(e.get('timestamp'))} {what} -> {result} (version {version})"


def _event(e: Mapping[str, Any]) -> str:
    out = [_headline(e)]
    for line in e.get("logs") or []:
        if not isinstance(line, Mapping):
            continue
        msg = line.get("message")
        args = msg if isinstance(msg, list) else [msg]
        out.append(f"  ({line.get('level', 'log')}) " + " ".join(_arg(a) for a in args))
    for x in e.get("exceptions") or []:
        if not isinstance(x, Mapping):
            continue
        out.append(f"  ✗ {x.get('name', 'Error')}: {x.get('message', '')}")
        stack = str(x.get("stack") or "").splitlines()[1:]  # its first line is the message
        out += [f"      {s.strip()}" for s in stack]
    if e.get("truncated"):
        out.append(f"  … {e['truncated']} more lines left out (too large)")
    return "\n".join(out)


def render(line: Mapping[str, Any], fmt: str) -> str | None:
    kind = line.get("type")
    if kind == "ping":
        return None
    if fmt == "json":
        return json.dumps(line, ensure_ascii=False, separators=(",", ":"))
    if kind == "event":
        return _event(line)
    where = f"[{line.get('location', '?')}]"
    if kind == "ready":
        at = ", ".join(line.get("locations") or []) or "no location"
        return f"tailing at {at}; Ctrl-C to stop"
    if kind == "dropped":
        return f"{where} {line.get('dropped', 0)} events dropped so far (sampled: too many)"
    if kind == "error":
        return f"{where} error: {line.get('error', '')}"
    if kind == "location":
        return f"{where} the Worker runs here now; tailing it too"
    if kind == "end":
        return f"the stream ended: {line.get('error', '')}"
    return None
