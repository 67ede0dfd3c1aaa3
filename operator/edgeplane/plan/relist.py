"""Which cached objects a fresh list shows to be deleted. A watch that restarts after a gap
(its resourceVersion compacted, the apiserver restarted) lists again, and a list has no
DELETED events: what was deleted meanwhile would stay cached without this comparison."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping
from typing import Any, TypeVar

K = TypeVar("K", bound=Hashable)


def resource_version(body: Mapping[str, Any]) -> int:
    return int((body.get("metadata") or {}).get("resourceVersion") or 0)


def gone(
    cached: Mapping[K, Mapping[str, Any]],
    lists: Iterable[tuple[Iterable[Mapping[str, Any]], int]],
    key: Callable[[Mapping[str, Any]], K],
) -> list[K]:
    """Keys of `cached` missing from `lists` (each: its items and the resourceVersion it was
    read at). An entry newer than a list may have been created after it was read, so only
    entries older than every list count as deleted."""
    listed: set[K] = set()
    oldest: int | None = None
    for items, version in lists:
        listed.update(key(b) for b in items)
        oldest = version if oldest is None else min(oldest, version)
    if oldest is None:
        return []
    return sorted(
        (k for k, body in cached.items() if k not in listed and resource_version(body) < oldest),
        key=repr,
    )
