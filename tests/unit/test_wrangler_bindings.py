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
    secret_source,
    service_bindings,
    unique_bindings,
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
        (None, DEV, ["A", "S"], True),  # every name: secret_bindings sorts out the vars
        (None, DevVars(".dev.vars", b"# none\n"), [], False),
        (None, None, [], False),
    ],
)
def test_secret_names(
    secrets_cfg: Any, dev_vars: DevVars | None, expected: list[str], warned: bool
) -> None:
    warn: list[str] = []
    assert secret_names(secrets_cfg, dev_vars, "w", warn) == expected
    assert warn == (
        ["w: secret names taken from .dev.vars (names only; its values are not read into "
         "the output)"] if warned else []
    )


@pytest.mark.parametrize(
    ("secrets_cfg", "dev_vars", "source"),
    [
        ({"required": ["S"]}, DEV, "secrets.required"),
        (["S"], DEV, "secrets"),
        (None, DEV, ".dev.vars"),
        ({"other": 1}, DevVars(".dev.vars.prod", b""), ".dev.vars.prod"),
        (None, None, "secrets"),
    ],
)
def test_secret_source(secrets_cfg: Any, dev_vars: DevVars | None, source: str) -> None:
    assert secret_source(secrets_cfg, dev_vars) == source


LOCAL = " (in wrangler dev, .dev.vars only overrides it locally)"


@pytest.mark.parametrize(
    ("names", "source", "keys", "warnings"),
    [
        (["S", "T"], ".dev.vars", ["S", "T"], []),
        (["A", "S"], ".dev.vars", ["S"],
         ["w: .dev.vars: A is also in vars; imported as the var, not as a secret" + LOCAL]),
        (["A"], "secrets.required", [],
         ["w: secrets.required: A is also in vars; imported as the var, not as a secret"]),
    ],
)
def test_secret_bindings(
    names: list[str], source: str, keys: list[str], warnings: list[str]
) -> None:
    warn: list[str] = []
    assert secret_bindings(names, "w-secrets", {"A"}, "w", source, warn) == (
        keys,
        [{"name": k, "secretKeyRef": {"name": "w-secrets", "key": k}} for k in keys],
    )
    assert warn == warnings


def test_secret_bindings_name_the_file_a_bad_name_is_from() -> None:
    with pytest.raises(WranglerImportError, match=r"w: \.dev\.vars: binding name 'a-b'"):
        secret_bindings(["a-b"], "w-secrets", set(), "w", ".dev.vars", [])


def _b(name: str) -> dict[str, Any]:
    return {"name": name}


@pytest.mark.parametrize(
    ("groups", "message"),
    [
        ([("vars", [_b("A")]), (".dev.vars", [_b("B")]), ("kv_namespaces", [_b("C")])], None),
        ([(".dev.vars", [_b("KV")]), ("kv_namespaces", [_b("KV")])],
         "w: kv_namespaces: KV is also bound by .dev.vars; a name binds once: rename one of "
         "them"),
        ([("vars", [_b("X")]), ("services", [_b("X")])], "w: services: X is also bound by vars"),
        ([("secrets.required", [_b("D")]), ("durable_objects.bindings", [_b("D")])],
         "w: durable_objects.bindings: D is also bound by secrets.required"),
        ([("kv_namespaces", [_b("K"), _b("K")])], "w: kv_namespaces: K is bound twice"),
    ],
)
def test_unique_bindings(
    groups: list[tuple[str, list[dict[str, Any]]]], message: str | None
) -> None:
    if message is None:
        assert unique_bindings(groups, "w") == [b for _, bs in groups for b in bs]
    else:
        with pytest.raises(WranglerImportError) as e:
            unique_bindings(groups, "w")
        assert str(e.value).startswith(message)


NO_ID = (
    "w: kv_namespaces binding {0} has no id (wrangler would provision one); imported as KV "
    "namespace '{1}', the name wrangler gives the one it provisions; set id to choose another"
)


@pytest.mark.parametrize(
    ("kv", "namespace", "warnings"),
    [
        ({"binding": "K", "id": "abc"}, "abc", []),
        ({"binding": "K", "preview_id": 7}, "7", []),
        # No id: wrangler provisions one, named <worker>-<binding>; so is this one.
        ({"binding": "CACHE"}, "w-cache", [NO_ID.format("CACHE", "w-cache")]),
        ({"binding": "MY_KV", "id": ""}, "w-my-kv", [NO_ID.format("MY_KV", "w-my-kv")]),
    ],
)
def test_kv_bindings(kv: dict[str, Any], namespace: str, warnings: list[str]) -> None:
    warn: list[str] = []
    assert kv_bindings([kv], "w", warn) == [
        {"name": kv["binding"], "kvNamespace": {"namespace": namespace}}
    ]
    assert warn == warnings


@pytest.mark.parametrize(
    ("kv", "message"),
    [
        ({"binding": "$KV"}, r"w: kv_namespaces binding \$KV has no id, and 'w-\$kv' is no KV "
                             r"namespace name \(letters, digits, '_', '.', '-'; at most 63\): "
                             "set id"),
        ({"binding": "K" * 62}, "is no KV namespace name"),
        ({"id": "abc"}, "w: kv_namespaces: binding name None"),
    ],
)
def test_kv_bindings_refuse(kv: dict[str, Any], message: str) -> None:
    with pytest.raises(WranglerImportError, match=message):
        kv_bindings([kv], "w", [])


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
