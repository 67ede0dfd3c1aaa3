"""The types of the mapped keys (pure): a wrong one is refused naming its key, TOML dates
and times above all, wherever they are."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest

from edgeplane.wrangler.errors import WranglerImportError
from edgeplane.wrangler.shape import WORKER_KEYS, check_config, kind_of

# Every kind of date and time TOML has.
DATES = {
    "date": dt.date(2024, 9, 23),
    "offset-date-time": dt.datetime(2024, 9, 23, 7, 30, tzinfo=dt.UTC),
    "local-date-time": dt.datetime(2024, 9, 23, 7, 30),
    "local-time": dt.time(7, 30),
}


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        (None, "null"),  # JSON's null
        (True, "a boolean"),
        (1, "an integer"),
        (1.5, "a number"),
        ("s", "a string"),
        ([1], "an array"),
        ({}, "a table"),
        (DATES["date"], "a TOML date"),
        (DATES["offset-date-time"], "a TOML date-time"),
        (DATES["local-date-time"], "a TOML date-time"),
        (DATES["local-time"], "a TOML time"),
    ],
)
def test_kind_of(value: Any, kind: str) -> None:
    assert kind_of(value) == kind


Put = Callable[[Any], dict[str, Any]]

# Each place a mapped key reads a value, with the key a message names it by.
PLACES: list[tuple[str, Put]] = [
    *((key, lambda d, key=key: {key: d}) for key in WORKER_KEYS),
    ("compatibility_flags[0]", lambda d: {"compatibility_flags": [d]}),
    ("vars.A", lambda d: {"vars": {"A": d}}),
    ("vars.A.b", lambda d: {"vars": {"A": {"b": d}}}),
    ("vars.A[1]", lambda d: {"vars": {"A": ["x", d]}}),
    ("vars.A.b[0].c", lambda d: {"vars": {"A": {"b": [{"c": d}]}}}),
    ("secrets.required[0]", lambda d: {"secrets": {"required": [d]}}),
    ("secrets[0]", lambda d: {"secrets": [d]}),
    ("kv_namespaces[0]", lambda d: {"kv_namespaces": [d]}),
    ("kv_namespaces[0].binding", lambda d: {"kv_namespaces": [{"binding": d}]}),
    ("kv_namespaces[0].id", lambda d: {"kv_namespaces": [{"binding": "K", "id": d}]}),
    ("kv_namespaces[0].preview_id",
     lambda d: {"kv_namespaces": [{"binding": "K", "preview_id": d}]}),
    ("durable_objects.bindings", lambda d: {"durable_objects": {"bindings": d}}),
    *(
        (f"durable_objects.bindings[0].{f}",
         lambda d, f=f: {"durable_objects": {"bindings": [{"name": "D", "class_name": "C",
                                                            f: d}]}})
        for f in ("name", "class_name", "script_name", "environment")
    ),
    *(
        (f"services[0].{f}",
         lambda d, f=f: {"services": [{"binding": "S", "service": "s", f: d}]})
        for f in ("binding", "service", "environment", "entrypoint")
    ),
    ("rules[0].type", lambda d: {"rules": [{"type": d, "globs": ["*"]}]}),
    ("rules[0].globs[0]", lambda d: {"rules": [{"type": "Text", "globs": [d]}]}),
    ("rules[0].fallthrough",
     lambda d: {"rules": [{"type": "Text", "globs": ["*"], "fallthrough": d}]}),
    ("route.pattern", lambda d: {"route": {"pattern": d}}),
    ("routes[0]", lambda d: {"routes": [d]}),
    *(
        (f"routes[0].{f}", lambda d, f=f: {"routes": [{"pattern": "a.com/*", f: d}]})
        for f in ("zone_name", "zone_id", "custom_domain")
    ),
]


@pytest.mark.parametrize("kind", DATES)
@pytest.mark.parametrize(("key", "put"), PLACES, ids=[k for k, _ in PLACES])
@pytest.mark.parametrize("where", ["", "env.staging."])
def test_a_toml_date_in_any_mapped_key_is_refused_naming_it(
    key: str, put: Put, kind: str, where: str
) -> None:
    cfg = put(DATES[kind])
    top = {"env": {"staging": cfg}} if where else cfg
    with pytest.raises(WranglerImportError) as e:
        check_config(top)
    message = str(e.value)
    assert message.startswith(f"{where}{key}: "), message
    assert "\n" not in message
    assert kind_of(DATES[kind]) in message, message


@pytest.mark.parametrize(
    ("top", "message"),
    [
        ({"vars": {"D": DATES["date"]}},
         'vars.D: a TOML date is not a JSON value; quote it ("2024-09-23") for a string'),
        ({"env": {"prod": {"vars": {"T": {"at": DATES["local-time"]}}}}},
         'env.prod.vars.T.at: a TOML time is not a JSON value; quote it ("07:30:00")'),
        ({"compatibility_date": DATES["date"]},
         'compatibility_date: expected a string, got a TOML date; quote it: '
         'compatibility_date = "2024-09-23"'),
        # An array item has no key to write: the quoted value is the whole fix.
        ({"compatibility_flags": [DATES["date"]]},
         'compatibility_flags[0]: expected a string, got a TOML date; quote it: "2024-09-23"'),
        # TOML's nan and inf are no JSON values either.
        ({"vars": {"N": float("nan")}}, 'vars.N: nan is not a JSON value; quote it ("nan")'),
        ({"vars": {"C": {"max": float("-inf")}}}, "vars.C.max: -inf is not a JSON value"),
        # JSON's null where a table must be.
        ({"env": {"prod": None}}, "env.prod: expected a table, got null"),
    ],
)
def test_messages_say_what_to_write(top: dict[str, Any], message: str) -> None:
    with pytest.raises(WranglerImportError) as e:
        check_config(top)
    assert str(e.value).startswith(message), str(e.value)
