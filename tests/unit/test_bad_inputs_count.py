"""The promise, counted: at least 100 distinct bad inputs, over admission (with the models),
the agent's API and `edgeplane import`, each checked for a message naming the field. The
tables live beside the tests that run them; this only counts them."""

from __future__ import annotations

from tests.integration.test_agent_bad_inputs import BAD_REQUESTS
from tests.integration.test_api_crds import INVALID
from tests.unit.test_wrangler_bad_inputs import CASES

SURFACES: dict[str, list[str]] = {
    "admission": [i for i, _, _ in INVALID],
    "agent API": [b.id for b in BAD_REQUESTS],
    "edgeplane import": [c.id for c in CASES],
}


def test_at_least_100_distinct_bad_inputs_across_the_surfaces() -> None:
    for surface, ids in SURFACES.items():
        assert len(set(ids)) == len(ids), f"{surface}: an id is used twice"
        assert len(ids) >= 30, f"{surface}: only {len(ids)} bad inputs"
    assert sum(len(ids) for ids in SURFACES.values()) >= 100
