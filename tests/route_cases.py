"""`tests/data/route_cases.json`, the table of documented route cases, as the tests that run
it in each place read it: the Python matcher and the router's JavaScript under node (unit),
real workerd through the agent and admission on the real apiserver (integration)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

TABLE: dict[str, Any] = json.loads(
    (Path(__file__).parent / "data" / "route_cases.json").read_text(encoding="utf-8")
)
GROUPS: list[dict[str, Any]] = TABLE["groups"]
# (the group's index, one of its cases), for parametrize.
CASES: list[tuple[int, dict[str, Any]]] = [
    (gi, c) for gi, g in enumerate(GROUPS) for c in g["cases"]
]
VALID: list[str] = list(
    dict.fromkeys([p for g in GROUPS for p in g["patterns"]] + [r["pattern"] for r in
                                                                  TABLE["canonical"]])
)
INVALID: list[dict[str, str]] = TABLE["invalid"]
PATHS: list[str] = TABLE["paths"]


def split_url(url: str) -> tuple[str, str, str]:
    """(scheme, Host header, path and query exactly as written: no '/' added, an empty
    query kept) of a case URL; urlsplit would drop a bare '?'."""
    scheme, rest = url.split("://", 1)
    end = re.search(r"[/\\?#]", rest)
    cut = end.start() if end else len(rest)
    return scheme, rest[:cut], rest[cut:]


CASE_IDS: list[str] = [f"g{gi}:{c['url']}" for gi, c in CASES]
