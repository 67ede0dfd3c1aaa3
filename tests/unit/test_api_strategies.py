"""Hypothesis strategies of valid API specs, drawn from the same patterns the models
declare, and the pure round-trip properties. The integration tests send the same
strategies to the real apiserver."""

from __future__ import annotations

import base64
import string
from datetime import date
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from edgeplane.api import EdgeTargetSpec, ModuleType, WorkerRouteSpec, WorkerSpec
from edgeplane.api.common import DATA_KEY_RE, DNS_LABEL_RE, LABEL_VALUE_RE
from edgeplane.api.worker import COMPAT_FLAG_RE
from edgeplane.routing import pattern_error
from edgeplane.wire import JS_IDENTIFIER_RE, MODULE_NAME_RE

# -- strategies: valid specs, drawn from the same patterns the models declare -------------

def _rx(pattern: str, max_len: int) -> st.SearchStrategy[str]:
    return st.from_regex(pattern, fullmatch=True).filter(lambda s: len(s) <= max_len)


def _valid(model: Any, raw: dict[str, Any]) -> Any:
    try:
        return model.model_validate(raw)
    except ValidationError:
        return None


dns_labels = _rx(DNS_LABEL_RE, 63)
subdomains = st.lists(dns_labels.filter(lambda s: len(s) <= 20), min_size=1, max_size=3).map(
    ".".join
)
data_keys = _rx(DATA_KEY_RE, 60)
hex64 = st.binary(min_size=32, max_size=32).map(bytes.hex)
texts = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=200)
# JSON values as the apiserver stores them: int64 integers, finite floats.
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | texts
    | st.floats(allow_nan=False, allow_infinity=False, width=32),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=10,
)


@st.composite
def modules(draw: st.DrawFn) -> dict[str, Any]:
    mtype = draw(st.sampled_from(list(ModuleType)))
    source = draw(st.sampled_from(["inline", "configMapKeyRef", "url"]))
    m: dict[str, Any] = {"name": draw(_rx(MODULE_NAME_RE, 80)), "type": mtype.value}
    if source == "inline":
        if mtype.is_binary:
            m["inline"] = base64.b64encode(draw(st.binary(max_size=64))).decode()
        else:
            m["inline"] = draw(texts)
    elif source == "configMapKeyRef":
        m["configMapKeyRef"] = {"name": draw(subdomains), "key": draw(data_keys)}
    else:
        path = draw(st.text(string.ascii_letters + string.digits + "/._-", max_size=40))
        m["url"] = f"https://{draw(subdomains)}/{path}"
        m["sha256"] = draw(hex64)
    return m


@st.composite
def bindings(draw: st.DrawFn) -> dict[str, Any]:
    b: dict[str, Any] = {"name": draw(_rx(JS_IDENTIFIER_RE, 64))}
    kind = draw(st.sampled_from(
        ["plainText", "json", "secretKeyRef", "service", "kvNamespace", "durableObjectNamespace"]
    ))
    if kind == "plainText":
        b[kind] = draw(texts)
    elif kind == "json":
        b[kind] = draw(st.dictionaries(texts, json_values, max_size=4))
    elif kind == "secretKeyRef":
        b[kind] = {"name": draw(subdomains), "key": draw(data_keys)}
    elif kind == "service":
        b[kind] = {"worker": draw(dns_labels)}
    elif kind == "kvNamespace":
        b[kind] = {"namespace": draw(_rx(r"^[A-Za-z0-9_.-]{1,63}$", 63))}
    else:
        b[kind] = {"className": draw(_rx(JS_IDENTIFIER_RE, 64))}
    return b


label_keys = st.builds(
    lambda prefix, name: f"{prefix}/{name}" if prefix else name,
    st.none() | subdomains,
    _rx(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$", 63),
)
label_values = _rx(LABEL_VALUE_RE, 63)


@st.composite
def selectors(draw: st.DrawFn) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if draw(st.booleans()):
        out["matchLabels"] = draw(st.dictionaries(label_keys, label_values, max_size=3))
    if draw(st.booleans()):
        exprs = []
        for _ in range(draw(st.integers(0, 3))):
            op = draw(st.sampled_from(["In", "NotIn", "Exists", "DoesNotExist"]))
            e: dict[str, Any] = {"key": draw(label_keys), "operator": op}
            if op in ("In", "NotIn"):
                e["values"] = draw(st.lists(label_values, min_size=1, max_size=3))
            exprs.append(e)
        out["matchExpressions"] = exprs
    return out


@st.composite
def _worker_spec(draw: st.DrawFn) -> WorkerSpec | None:
    mods = draw(st.lists(modules(), min_size=1, max_size=4, unique_by=lambda m: m["name"]))
    raw: dict[str, Any] = {
        "modules": mods,
        "compatibilityDate": draw(st.dates(date(2000, 1, 1), date(2099, 12, 31))).isoformat(),
    }
    if draw(st.booleans()):
        raw["mainModule"] = draw(st.sampled_from([m["name"] for m in mods]))
    if draw(st.booleans()):
        raw["compatibilityFlags"] = draw(st.lists(_rx(COMPAT_FLAG_RE, 40), max_size=3,
                                                  unique=True))
    if draw(st.booleans()):
        raw["bindings"] = draw(st.lists(bindings(), max_size=5, unique_by=lambda b: b["name"]))
    if draw(st.booleans()):
        raw["targets"] = draw(selectors())
    if draw(st.booleans()):
        raw["rollout"] = {"strategy": "AllAtOnce"}
    return _valid(WorkerSpec, raw)


def worker_specs() -> st.SearchStrategy[WorkerSpec]:
    return _worker_spec().filter(lambda s: s is not None)


@st.composite
def _route_spec(draw: st.DrawFn) -> WorkerRouteSpec | None:
    scheme = draw(st.sampled_from(["", "http://", "https://"]))
    host = draw(subdomains)
    host = draw(st.sampled_from([host, f"*{host}", f"*.{host}", "*"]))
    path = draw(st.text(string.ascii_letters + string.digits + "/._-~%\\^|é", max_size=30))
    star = draw(st.sampled_from(["", "*"]))
    # No path is the implied '/'; a path is kept as written (normalised only to match).
    pattern = draw(st.sampled_from([f"{scheme}{host}/{path}{star}", f"{scheme}{host}"]))
    raw: dict[str, Any] = {"pattern": pattern, "worker": draw(dns_labels)}
    if draw(st.booleans()):
        n = draw(st.integers(1, 4))
        cuts = sorted(draw(st.lists(st.integers(0, 100), min_size=n - 1, max_size=n - 1)))
        percents = [b - a for a, b in zip([0, *cuts], [*cuts, 100], strict=True)]
        versions = draw(st.lists(
            hex64.map(lambda h: h[: draw(st.integers(8, 64))]) | st.just("latest"),
            min_size=n, max_size=n, unique=True,
        ))
        raw["traffic"] = [
            {"version": v, "percent": p} for v, p in zip(versions, percents, strict=True)
        ]
    return _valid(WorkerRouteSpec, raw)


def route_specs() -> st.SearchStrategy[WorkerRouteSpec]:
    return _route_spec().filter(lambda s: s is not None)


@st.composite
def _target_spec(draw: st.DrawFn) -> EdgeTargetSpec | None:
    scheme = draw(st.sampled_from(["http", "https"]))
    # Plain http only to the loopback; https anywhere.
    loopback = st.sampled_from(["localhost", "[::1]"]) | st.ip_addresses(
        network="127.0.0.0/8").map(str)
    anywhere = subdomains | st.ip_addresses(v=4).map(str)
    host = draw(loopback if scheme == "http" else loopback | anywhere)
    port = draw(st.none() | st.integers(1, 65535))
    path = draw(st.sampled_from(["", "/", "/agent", "/edge/v1"]))
    raw: dict[str, Any] = {
        "endpoint": f"{scheme}://{host}{'' if port is None else f':{port}'}{path}",
        "credentialsSecretRef": {
            "namespace": draw(dns_labels), "name": draw(subdomains), "key": draw(data_keys)
        },
    }
    if scheme == "https" and draw(st.booleans()):
        raw["caBundle"] = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    if scheme == "https" and draw(st.booleans()):
        raw["clientCertificateSecretRef"] = {
            "namespace": draw(dns_labels), "name": draw(subdomains)
        }
    return _valid(EdgeTargetSpec, raw)


def target_specs() -> st.SearchStrategy[EdgeTargetSpec]:
    return _target_spec().filter(lambda s: s is not None)


# -- tests -----------------------------------------------------------------------------

@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(spec=worker_specs())
def test_worker_spec_round_trips_through_the_wire_form(spec: WorkerSpec) -> None:
    assert WorkerSpec.model_validate(spec.to_wire()) == spec


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(spec=route_specs())
def test_route_spec_round_trips(spec: WorkerRouteSpec) -> None:
    assert WorkerRouteSpec.model_validate(spec.to_wire()) == spec
    assert pattern_error(spec.pattern) is None


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(spec=target_specs())
def test_target_spec_round_trips(spec: EdgeTargetSpec) -> None:
    assert EdgeTargetSpec.model_validate(spec.to_wire()) == spec


