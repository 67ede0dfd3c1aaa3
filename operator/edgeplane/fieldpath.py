"""Where a validation error is, written as the apiserver writes field paths
(`spec.modules[0].sha256`), so the models, the agent's answers and `edgeplane import` name
a bad field the way `kubectl` does.

A pydantic error has a location (`('spec', 'modules', 0)`) and a message. A model-level
check cannot move its location, so its message starts with the field it is about
(`modules[].sha256: ...`, `[]` standing for the index the location already has); the two
are joined into one path here.
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Sequence

from pydantic import ValidationError

Segment = str | int | None  # a name, an index, or None: "[]", the index the location has

# A message that starts with a field path and ": " (e.g. "rollout.steps[].gate: set ...").
_LEADING_PATH = re.compile(r"^((?:[A-Za-z_$][\w$]*|\[\d*\])(?:\.[A-Za-z_$][\w$]*|\[\d*\])*): ")
_SEGMENT = re.compile(r"\[(\d*)\]|[^.\[\]]+")
_PYDANTIC_PREFIXES = ("Value error, ", "Assertion failed, ")


def render(segments: Sequence[Segment]) -> str:
    """`spec.modules[0].name` from ('spec', 'modules', 0, 'name')."""
    out = ""
    for s in segments:
        if s is None or isinstance(s, int):
            out += "[]" if s is None else f"[{s}]"
        else:
            out += f".{s}" if out else s
    return out


def parse(path: str) -> list[Segment]:
    """The segments of a written path: `modules[].sha256` -> ['modules', None, 'sha256']."""
    out: list[Segment] = []
    for m in _SEGMENT.finditer(path):
        if m.group(0).startswith("["):
            out.append(int(m.group(1)) if m.group(1) else None)
        else:
            out.append(m.group(0))
    return out


def _overlap(loc: Sequence[Segment], named: Sequence[Segment]) -> int:
    """How many of `named`'s first segments the end of `loc` already is."""
    for k in range(min(len(loc), len(named)), 0, -1):
        pairs = zip(loc[-k:], named[:k], strict=True)
        if all(a == b or (b is None and isinstance(a, int)) for a, b in pairs):
            return k
    return 0


def field_error(loc: Sequence[str | int], msg: str) -> tuple[str, str]:
    """(path, message) of one error: its location, continued by the field its message names
    first, and the rest of the message."""
    for prefix in _PYDANTIC_PREFIXES:
        msg = msg.removeprefix(prefix)
    segments: list[Segment] = list(loc)
    m = _LEADING_PATH.match(msg)
    if m:
        named = parse(m.group(1))
        segments += named[_overlap(segments, named):]
        msg = msg[m.end():]
    return render(segments), msg


def field_errors(e: ValidationError) -> list[tuple[str, str]]:
    """Every error of `e` as (path, message); the input values are left out on purpose
    (they may hold secrets)."""
    errors = e.errors(include_input=False)
    inner = [tuple(err["loc"]) for err in errors]
    # pydantic counts only the valid items of a list against min_length, so a list with one
    # bad item also reads as too short: noise once the item's own error is there.
    return [
        field_error(err["loc"], err["msg"])
        for err in errors
        if not (err["type"] == "too_short" and any(
            len(loc) > len(err["loc"]) and loc[: len(err["loc"])] == tuple(err["loc"])
            for loc in inner
        ))
    ]


def describe(e: ValidationError, limit: int = 5) -> str:
    """One line: `path: message; path: message` for the first `limit` errors."""
    found = field_errors(e)
    more = f" (and {len(found) - limit} more)" if len(found) > limit else ""
    return "; ".join(f"{p or 'body'}: {m}" for p, m in found[:limit]) + more


def duplicate(items: Sequence[Hashable], field: str, what: str) -> str | None:
    """The apiserver's words for the first repeated item of a list-type set or map
    (`bindings[1]: Duplicate value: ...`), naming the same index; None if all differ."""
    seen: dict[Hashable, int] = {}
    for i, item in enumerate(items):
        if item in seen:
            return (
                f"{field}[{i}]: Duplicate value: {what} {item!r} is already "
                f"{field}[{seen[item]}]; each may appear once"
            )
        seen[item] = i
    return None
