"""The chaos soak's short form on the session stack (bench/soak.py says what it does and
checks): 75 s of SIGKILLs of the operator, agents, workerds and the apiserver while
Workers are created, updated, rolled out, pinned and deleted under load. EDGEPLANE_SOAK_SEED
replays one run; EDGEPLANE_SOAK_SECONDS makes it longer."""

from __future__ import annotations

import os

import pytest
from bench.soak import soak

from edgeplane.localstack.stack import Stack

pytestmark = pytest.mark.integration


def test_chaos_soak_loses_nothing(stack: Stack) -> None:
    seed = os.environ.get("EDGEPLANE_SOAK_SEED")
    try:
        result = soak(stack, float(os.environ.get("EDGEPLANE_SOAK_SECONDS", "75")),
                      int(seed) if seed else None)
    finally:
        # The apiserver and etcd are the session's: running again before the next test.
        assert stack.cluster is not None
        stack.cluster.wait_ready()
    print(result.report())
    # Each kind once per round: 75 s make at least one round.
    assert set(result.faults) == {"operator", "agent", "location", "workerd", "apiserver"}
    assert result.ok, result.report()
