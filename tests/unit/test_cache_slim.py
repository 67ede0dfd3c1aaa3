"""The operator's cache keeps each object without what it never reads."""

from __future__ import annotations

from typing import Any

import pytest

from edgeplane.reconcile.cache import Cache, slim

LAST = "kubectl.kubernetes.io/last-applied-configuration"
FIELDS = [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}]


def body(**meta: Any) -> dict[str, Any]:
    return {"apiVersion": "edgeplane.io/v1alpha1", "kind": "Worker",
            "metadata": {"name": "w", "namespace": "n", "generation": 2, **meta},
            "spec": {"compatibilityDate": "2025-01-01"}, "status": {"readyVersion": "v"}}


@pytest.mark.parametrize(("given", "kept"), [
    (body(), body()),  # nothing to leave out: the same object
    (body(managedFields=FIELDS), body()),
    (body(annotations={LAST: "{...}"}), body(annotations={})),
    (body(managedFields=FIELDS, annotations={LAST: "{...}", "edgeplane.io/promote": "1"}),
     body(annotations={"edgeplane.io/promote": "1"})),  # the annotations it reads stay
    (body(annotations={"a": "b"}, finalizers=["edgeplane.io/worker"], resourceVersion="7"),
     body(annotations={"a": "b"}, finalizers=["edgeplane.io/worker"], resourceVersion="7")),
    ({"spec": {}}, {"spec": {}}),  # no metadata at all
])
def test_slim(given: dict[str, Any], kept: dict[str, Any]) -> None:
    before = repr(given)
    assert slim(given) == kept
    assert repr(given) == before  # the event's own body is not changed


@pytest.mark.parametrize("kind", ["workers", "routes", "claims"])
def test_the_cache_stores_every_kind_slim(kind: str) -> None:
    cache = Cache()
    getattr(cache, kind)["k"] = body(managedFields=FIELDS, annotations={LAST: "{...}"})
    assert getattr(cache, kind)["k"]["metadata"] == body(annotations={})["metadata"]
