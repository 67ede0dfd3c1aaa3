"""The assets' files the operator holds for pushes: each Worker's last two sites, a file
shared by several Workers' sites kept while one of them holds it."""

from __future__ import annotations

import pytest

from edgeplane.distribute.client import AgentClient

A, B, C = b"a", b"b", b"c"

CASES = [
    # (steps: (worker, files held, or None to drop the Worker), files left)
    ([("w1", {"a": A})], {"a"}),
    ([("w1", {"a": A}), ("w1", {"b": B})], {"a", "b"}),  # two sites: a rollout's
    ([("w1", {"a": A}), ("w1", {"b": B}), ("w1", {"c": C})], {"b", "c"}),
    ([("w1", {"a": A}), ("w1", {"b": B}), ("w1", {"a": A})], {"a", "b"}),  # back to a
    ([("w1", {"a": A}), ("w1", {})], {"a"}),  # a version without assets keeps the last
    ([("w1", {"a": A}), ("w1", None)], set()),
    ([("w1", {"a": A}), ("w2", {"a": A}), ("w1", None)], {"a"}),  # w2 still holds it
    ([("w1", {"a": A}), ("w2", {"a": A}), ("w1", None), ("w2", None)], set()),
    ([("w1", {"a": A, "b": B}), ("w2", {"b": B}), ("w1", {"c": C}), ("w1", {"a": A})],
     {"a", "b", "c"}),
    ([("w1", {"a": A, "b": B}), ("w2", {"b": B}), ("w1", {"c": C}), ("w1", {"c": C}),
      ("w1", {"a": A}), ("w1", {"c": C})], {"a", "b", "c"}),
    ([("w1", {"a": A}), ("w1", {"b": B}), ("w1", {"c": C}), ("w2", None)], {"b", "c"}),
    ([("w1", None)], set()),  # a Worker never held: nothing to let go
]


@pytest.mark.parametrize(("steps", "left"), CASES)
def test_files_are_held_while_a_site_of_some_worker_holds_them(
    steps: list[tuple[str, dict[str, bytes] | None]], left: set[str]
) -> None:
    client = AgentClient()
    for worker, files in steps:
        if files is None:
            client.drop_blobs(worker)
        else:
            client.hold_blobs(worker, files)
    assert set(client.blobs) == left
    assert all(client.blobs[sha] == sha.encode() for sha in left)
