"""Bindings from a wrangler config (pure), one table a kind."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from edgeplane.wrangler.bindings import (
    binding_name,
    declared_secrets,
    durable_object_bindings,
    kv_bindings,
    secret_bindings,
    secret_names,
    service_bindings,
    var_bindings,
)
from edgeplane.wrangler.config import DevVars
from edgeplane.wrangler.errors import WranglerImportError


@pytest.mark.parametrize("name", ["API_TOKEN", "$x", "_", "x" * 64])
def test_binding_name(name: str) -> None:
    assert binding_name(name, "w: vars") == name


@pytest.mark.parametrize("name", ["not-an-identifier", "1st", None, 7, "x" * 65])
def test_binding_name_refuses_what_is_not_a_javascript_identifier(name: Any) -> None:
    with pytest.raises(WranglerImportError, match=r"w: vars: binding name .* is not a"):
        binding_name(name, "w: vars")


@pytest.mark.parametrize(
    ("value", "binding", "warning"),
    [
        ("Hello", {"plainText": "Hello"}, None),
        ({"a": [1]}, {"json": {"a": [1]}}, None),
        (20, {"plainText": "20"},
         "w: vars.V is a JSON int; edgeplane's json binding takes objects, so env.V is the "
         "string '20'"),
        (True, {"plainText": "true"}, "w: vars.V is a JSON bool;"),
        ([1, "a"], {"plainText": '[1, "a"]'}, "w: vars.V is a JSON list;"),
        (1.5, {"plainText": "1.5"}, "w: vars.V is a JSON float;"),
    ],
)
def test_var_bindings(value: Any, binding: dict[str, Any], warning: str | None) -> None:
    warn: list[str] = []
    assert var_bindings({"V": value}, "w", warn) == [{"name": "V", **binding}]
    assert [w[: len(warning)] for w in warn] == ([warning] if warning else [])


def test_var_longer_than_5_kib_is_refused() -> None:
    with pytest.raises(WranglerImportError, match=r"w: vars\.V is longer than 5 KiB"):
        var_bindings({"V": "x" * 5121}, "w", [])


@pytest.mark.parametrize(
    ("secrets_cfg", "expected"),
    [
        ({"required": ["A", "B"]}, ["A", "B"]),
        ({"required": []}, []),  # declared: none, and .dev.vars is not asked
        ({"required": None}, []),
        (["A", 1], ["A", "1"]),
        ({"other": 1}, None),
        (None, None),
        ("A", None),
    ],
)
def test_declared_secrets(secrets_cfg: Any, expected: list[str] | None) -> None:
    assert declared_secrets(secrets_cfg) == expected


DEV = DevVars(".dev.vars", b"A=1\nS=2\n")


@pytest.mark.parametrize(
    ("secrets_cfg", "dev_vars", "expected", "warned"),
    [
        ({"required": ["S"]}, DEV, ["S"], False),  # declared wins over .dev.vars
        (None, DEV, ["S"], True),  # A is a var: not a secret too
        (None, DevVars(".dev.vars", b"A=1\n"), [], False),
        (None, None, [], False),
    ],
)
def test_secret_names(
    secrets_cfg: Any, dev_vars: DevVars | None, expected: list[str], warned: bool
) -> None:
    warn: list[str] = []
    assert secret_names(secrets_cfg, dev_vars, {"A"}, "w", warn) == expected
    assert warn == (
        ["w: secret names taken from .dev.vars (names only; its values are not read into "
         "the output)"] if warned else []
    )


@pytest.mark.parametrize(
    ("names", "keys"),
    [(["S", "T"], ["S", "T"]), (["A", "S"], ["S"]), (["A"], [])],
)
def test_secret_bindings(names: list[str], keys: list[str]) -> None:
    assert secret_bindings(names, "w-secrets", {"A"}, "w") == (
        keys,
        [{"name": k, "secretKeyRef": {"name": "w-secrets", "key": k}} for k in keys],
    )


@pytest.mark.parametrize(
    ("kv", "namespace"),
    [({"binding": "K", "id": "abc"}, "abc"), ({"binding": "K", "preview_id": 7}, "7")],
)
def test_kv_bindings(kv: dict[str, Any], namespace: str) -> None:
    assert kv_bindings([kv], "w") == [{"name": "K", "kvNamespace": {"namespace": namespace}}]


@pytest.mark.parametrize(
    ("kv", "message"),
    [
        ({"binding": "K"}, "w: kv_namespaces binding K has no id"),
        ({"binding": "K", "id": ""}, "w: kv_namespaces binding K has no id"),
        ({"id": "abc"}, "w: kv_namespaces: binding name None"),
    ],
)
def test_kv_bindings_refuse(kv: dict[str, Any], message: str) -> None:
    with pytest.raises(WranglerImportError, match=message):
        kv_bindings([kv], "w")


DO = {"name": "D", "class_name": "C"}
SVC = {"binding": "S", "service": "api"}


@pytest.mark.parametrize(
    ("kind", "cfg", "binding", "unsupported"),
    [
        (durable_object_bindings, {"bindings": [DO]},
         {"name": "D", "durableObjectNamespace": {"className": "C"}}, []),
        (durable_object_bindings, {"bindings": [{**DO, "script_name": "w"}]},  # this Worker
         {"name": "D", "durableObjectNamespace": {"className": "C"}}, []),
        (durable_object_bindings, {"bindings": [{**DO, "script_name": "other"}]}, None,
         ["durable_objects.bindings[D].script_name=other"]),
        (service_bindings, [SVC], {"name": "S", "service": {"worker": "api"}}, []),
        (service_bindings, [{**SVC, "environment": "prod"}],
         {"name": "S", "service": {"worker": "api-prod"}}, []),
        (service_bindings, [{**SVC, "entrypoint": "E"}], None, ["services[S].entrypoint=E"]),
    ],
)
def test_bindings_to_other_code_or_left_out(
    kind: Callable[[Any, str, list[str]], list[dict[str, Any]]],
    cfg: Any,
    binding: dict[str, Any] | None,
    unsupported: list[str],
) -> None:
    """Durable Objects and services: bound, or listed as unsupported, never half-imported."""
    left_out: list[str] = []
    assert kind(cfg, "w", left_out) == ([binding] if binding else [])
    assert left_out == unsupported
