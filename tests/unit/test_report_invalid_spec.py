"""report.status.invalid_spec: a Worker the apiserver took and the operator's model refuses."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from edgeplane.api import WorkerStatus, get_condition
from edgeplane.api.common import set_condition
from edgeplane.report.status import invalid_spec

NOW = datetime(2026, 11, 28, 0, 30, tzinfo=UTC)
WHY = "spec.triggers.crons[0]: '0 0 30 2 *' never runs: February has no day 30"


def _ready(reason: str, message: str, status: bool = True) -> WorkerStatus:
    conds = set_condition([], "Ready", status, reason, message, observed_generation=1, at=NOW)
    return WorkerStatus(
        observed_generation=1, conditions=conds, latest_version="a" * 64,
        ready_version="a" * 64, ready_targets="3/3",
    )


TEXT = f"spec: {WHY}; fix the spec (the last good version keeps serving)"


@pytest.mark.parametrize(
    ("prev", "events"),
    [
        (WorkerStatus(), 1),  # a new Worker: never deployed
        (_ready("Deployed", "serving everywhere"), 1),  # was Ready: a Warning
        (_ready("InvalidSpec", TEXT, status=False), 0),  # the same refusal again: no Event
        (_ready("InvalidSpec", "spec: other; fix", status=False), 1),  # another refusal
    ],
    ids=["new", "was-ready", "same-again", "other-message"],
)
def test_invalid_spec(prev: WorkerStatus, events: int) -> None:
    status, evs = invalid_spec(prev, 2, WHY, NOW)
    assert status.observed_generation == 2
    for type_, value in (("Ready", "False"), ("Reconciling", "False"), ("Stalled", "True")):
        cond = get_condition(status.conditions, type_)
        assert cond is not None and cond.status == value and cond.reason == "InvalidSpec"
        assert cond.message == TEXT and cond.observed_generation == 2
    # What the locations serve is not the spec's to change here: kept as reported.
    assert (status.ready_version, status.ready_targets) == (prev.ready_version, prev.ready_targets)
    warning = ("Warning", "InvalidSpec", TEXT)
    assert [(e.type, e.reason, e.message) for e in evs] == [warning] * events
