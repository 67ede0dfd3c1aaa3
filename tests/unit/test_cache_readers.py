"""Which Workers read each ConfigMap and Secret (reconcile.cache): what a spec names, and
the index kept as Workers come, change and go."""

from __future__ import annotations

from typing import Any

import pytest

from edgeplane.reconcile.cache import Cache, sources_read


def worker(name: str, ns: str = "apps", **spec: Any) -> dict[str, Any]:
    """A Worker the operator accepts: an inline module unless `spec` names modules."""
    base = {"compatibilityDate": "2025-01-01", "modules": [INLINE]}
    return {"metadata": {"namespace": ns, "name": name}, "spec": base | spec}


MODULE = {"name": "m.js", "configMapKeyRef": {"name": "code", "key": "m.js"}}
MODULE2 = {"name": "n.js", "configMapKeyRef": {"name": "code", "key": "n.js"}}
INLINE = {"name": "i.js", "inline": "export default {}"}
SECRET = {"name": "TOKEN", "secretKeyRef": {"name": "creds", "key": "token"}}
PLAIN = {"name": "PLAIN", "plainText": "x"}


@pytest.mark.parametrize(
    ("spec", "read"),
    [
        ({}, set()),
        ({"modules": [INLINE]}, set()),
        ({"modules": [INLINE, MODULE]}, {("ConfigMap", "apps", "code")}),
        ({"assets": {"configMap": {"name": "site"}}}, {("ConfigMap", "apps", "site")}),
        ({"bindings": [SECRET, PLAIN]}, {("Secret", "apps", "creds")}),
        ({"imagePullSecrets": [{"name": "pull"}]}, {("Secret", "apps", "pull")}),
        ({"modules": [MODULE, MODULE2], "bindings": [SECRET], "imagePullSecrets": [{"name": "p"}]},
         {("ConfigMap", "apps", "code"), ("Secret", "apps", "creds"), ("Secret", "apps", "p")}),
        # A spec the operator refuses reads nothing until it is fixed (a fix is an event).
        ({"modules": [MODULE, MODULE], "bindings": [SECRET]}, set()),
        ({"modules": None, "bindings": None, "assets": None}, set()),
    ],
)
def test_what_a_spec_reads(spec: dict[str, Any], read: set[tuple[str, str, str]]) -> None:
    assert sources_read(worker("w", **spec)) == read


CODE, CREDS = ("ConfigMap", "apps", "code"), ("Secret", "apps", "creds")

CASES = [
    # (Workers seen in order (None: deleted), readers of `code` and `creds` after)
    ([("a", {"modules": [MODULE]})], {CODE: {"a"}}),
    ([("a", {"modules": [MODULE]}), ("b", {"modules": [MODULE]})], {CODE: {"a", "b"}}),
    ([("a", {"modules": [MODULE]}), ("a", {"bindings": [SECRET]})], {CREDS: {"a"}}),
    ([("a", {"modules": [MODULE]}), ("a", None)], {}),
    ([("a", {"modules": [MODULE]}), ("b", {"modules": [MODULE]}), ("a", None)], {CODE: {"b"}}),
    ([("a", None)], {}),  # never seen
    ([("a", {"modules": [MODULE], "bindings": [SECRET]}), ("a", {"modules": [MODULE]})],
     {CODE: {"a"}}),
]


@pytest.mark.parametrize(("seen", "readers"), CASES)
def test_the_readers_follow_each_workers_spec(
    seen: list[tuple[str, dict[str, Any] | None]], readers: dict[Any, set[str]]
) -> None:
    cache = Cache()
    for name, spec in seen:
        cache.reads(("apps", name), None if spec is None else worker(name, **spec))
    assert cache.readers == {k: {("apps", n) for n in v} for k, v in readers.items()}


def test_a_source_of_the_same_name_in_another_namespace_has_its_own_readers() -> None:
    cache = Cache()
    cache.reads(("apps", "a"), worker("a", "apps", modules=[MODULE]))
    cache.reads(("other", "a"), worker("a", "other", modules=[MODULE]))
    assert cache.readers[CODE] == {("apps", "a")}
    assert cache.readers[("ConfigMap", "other", "code")] == {("other", "a")}
