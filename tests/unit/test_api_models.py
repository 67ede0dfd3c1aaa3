"""The API models on their own: parsing the examples and raw bodies, status helpers, the
pure rules, and agreement with the apiserver's invalid-manifest table."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from edgeplane.api import (
    RESOURCES,
    ConditionStatus,
    EdgeTarget,
    EdgeTargetSpec,
    LabelSelector,
    ModuleType,
    Worker,
    WorkerBinding,
    WorkerRoute,
    WorkerRouteSpec,
    WorkerSpec,
    get_condition,
    set_condition,
)
from edgeplane.api.target import endpoint_refusal
from edgeplane.fieldpath import field_errors
from edgeplane.routing.pattern import MSG_QUERY, MSG_SYNTAX, pattern_error
from tests.integration.test_api_crds import INVALID

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "manifests" / "examples"
SHA = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def _kind(name: str) -> Any:
    return next(r for r in RESOURCES if r.KIND == name)


@pytest.mark.parametrize(
    ("manifest", "expected"), [pytest.param(m, e, id=i) for i, m, e in INVALID]
)
def test_models_reject_what_the_apiserver_rejects(
    manifest: dict[str, Any], expected: tuple[str, ...]
) -> None:
    with pytest.raises(ValidationError) as e:
        _kind(manifest["kind"]).model_validate(copy.deepcopy(manifest))
    # The same field path as the apiserver's error (its first expected text), with words.
    found = dict(field_errors(e.value))
    assert expected[0] in found, f"{expected[0]} not among {found}"
    assert found[expected[0]].strip(), found


# The apiserver's own words (not a rule's message), too common to tell two rules apart.
GENERIC = ("should match", "Required value", "Duplicate value", "Unsupported value", "Too long",
           "unknown field", "array", "object", "string", "must have at most", "at least 1 items")


def _rules(node: Any) -> list[dict[str, str]]:
    if isinstance(node, dict):
        own = node.get("x-kubernetes-validations", [])
        return [*own, *(r for v in node.values() for r in _rules(v))]
    if isinstance(node, list):
        return [r for v in node for r in _rules(v)]
    return []


def test_every_cel_rule_has_a_bad_manifest_in_the_table() -> None:
    messages = {
        r["message"]
        for path in sorted((REPO / "crds").glob("*.yaml"))
        for r in _rules(yaml.safe_load(path.read_text()))
        # A transition rule needs an update, not a create: test_workerversion_spec_is_immutable.
        if r["rule"] != "self == oldSelf"
    }
    texts = [t for _, _, expected in INVALID for t in expected[1:] if t not in GENERIC]
    missed = [m for m in sorted(messages) if not any(t in m for t in texts)]
    assert missed == [], "CEL rules no INVALID case checks the message of"


@pytest.mark.parametrize(("expression", "message"), [
    ("0 0 30 2 *", 'cron trigger "0 0 30 2 *": it never matches'),
    ("0 0 * * 0", 'cron trigger "0 0 * * 0": day of week field has 0 outside 1-7'),
    ("0 0 * * SAT-SUN", "descending range in SAT-SUN"),
])
def test_cron_triggers_the_apiserver_admits_are_refused_by_the_model(
    expression: str, message: str
) -> None:
    """Past the CEL shape check: a Worker with these is Stalled, naming the expression."""
    body = {"modules": [{"name": "a.js", "inline": "x"}], "compatibilityDate": "2024-01-01",
            "triggers": {"crons": ["*/5 * * * *", expression]}}
    with pytest.raises(ValidationError) as e:
        WorkerSpec.model_validate(body)
    (path, text), = field_errors(e.value)
    assert path == "triggers.crons[1]"
    assert message in text
    ok = WorkerSpec.model_validate({**body, "triggers": {"crons": ["0 9 * * MON-FRI"]}})
    assert ok.triggers is not None and ok.triggers.crons == ["0 9 * * MON-FRI"]


def test_examples_parse_with_the_models() -> None:
    seen = set()
    for path in sorted(EXAMPLES.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc["apiVersion"] == "edgeplane.io/v1alpha1":
                obj = _kind(doc["kind"]).model_validate(doc)
                # Aliases reproduce exactly what the user wrote.
                assert obj.model_dump(mode="json", by_alias=True, exclude_unset=True)[
                    "spec"
                ] == doc["spec"]
                assert type(obj).model_validate(obj.to_wire()) == obj
                seen.add(doc["kind"])
    assert seen == {"Worker", "WorkerRoute", "EdgeTarget", "HostClaim"}


def test_parsing_a_worker_body_gives_typed_spec_and_defaults() -> None:
    body = {
        "apiVersion": "edgeplane.io/v1alpha1",
        "kind": "Worker",
        "metadata": {"name": "api", "namespace": "shop", "generation": 4, "uid": "u"},
        "spec": {
            "compatibilityDate": "2024-09-23",
            "modules": [
                {"name": "a.mjs", "inline": "export default {}"},
                {"name": "b.wasm", "type": "wasm", "configMapKeyRef": {"name": "c", "key": "k"}},
            ],
            "bindings": [{"name": "TOKEN", "secretKeyRef": {"name": "s", "key": "t"}}],
        },
        "status": {"observedGeneration": 3, "readyTargets": "1/2"},
    }
    w = Worker.model_validate(body)
    assert w.full_name == "shop.api"
    assert w.metadata.generation == 4
    assert w.spec.main == "a.mjs"
    assert w.spec.modules[0].type is ModuleType.ES_MODULE
    assert w.spec.bindings[0].kind == "secretKeyRef"
    assert w.spec.targets.matches({"anything": "x"})
    assert w.spec.rollout.strategy == "AllAtOnce"
    assert w.status is not None and w.status.ready_targets == "1/2"


def test_binary_inline_module_must_be_base64() -> None:
    with pytest.raises(ValidationError, match="base64"):
        WorkerSpec.model_validate({
            "compatibilityDate": "2024-09-23",
            "modules": [{"name": "m.wasm", "type": "wasm", "inline": "not base64!"}],
        })


def test_binding_kind_names_the_wire_field() -> None:
    assert WorkerBinding.model_validate({"name": "X", "json": {"a": 1}}).kind == "json"
    assert WorkerBinding.model_validate({"name": "X", "plainText": ""}).kind == "plainText"


@pytest.mark.parametrize("pattern", [
    "example.com/*", "*.example.com/api/*", "*example.com/", "https://example.com/a/b",
    "http://*/x*", "*/*", "shop.example.co.uk/checkout", "example.com", "https://example.com",
    "example.com/a^b",
])
def test_valid_route_patterns(pattern: str) -> None:
    assert pattern_error(pattern) is None
    WorkerRouteSpec(pattern=pattern, worker="w")


@pytest.mark.parametrize(("pattern", "message"), [
    ("example.com/a?b=1", MSG_QUERY),
    ("example.com/#top", MSG_QUERY),
    ("/api/*", MSG_SYNTAX),
    ("example.com/*/x", MSG_SYNTAX),
    ("ex*ample.com/*", MSG_SYNTAX),
    ("**.example.com/*", MSG_SYNTAX),
    ("ftp://example.com/*", MSG_SYNTAX),
    ("example.com:8080/*", MSG_SYNTAX),
    ("example.com/a b", MSG_SYNTAX),
])
def test_invalid_route_patterns(pattern: str, message: str) -> None:
    assert pattern_error(pattern) == message
    with pytest.raises(ValidationError, match="pattern"):
        WorkerRouteSpec(pattern=pattern, worker="w")


def test_traffic_must_sum_to_100() -> None:
    ok = {"pattern": "a.com/*", "worker": "w",
          "traffic": [{"version": SHA, "percent": 90}, {"version": "latest", "percent": 10}]}
    WorkerRouteSpec.model_validate(ok)
    ok["traffic"][0]["percent"] = 80
    with pytest.raises(ValidationError, match="sum to 100"):
        WorkerRouteSpec.model_validate(ok)


def test_label_selector_matches_like_kubernetes() -> None:
    sel = LabelSelector.model_validate({
        "matchLabels": {"tier": "edge"},
        "matchExpressions": [
            {"key": "edgeplane.io/region", "operator": "In", "values": ["eu", "us"]},
            {"key": "draining", "operator": "DoesNotExist"},
        ],
    })
    assert sel.matches({"tier": "edge", "edgeplane.io/region": "eu"})
    assert not sel.matches({"tier": "edge", "edgeplane.io/region": "ap"})
    assert not sel.matches({"tier": "edge", "edgeplane.io/region": "eu", "draining": "1"})
    assert not sel.matches({"edgeplane.io/region": "eu"})
    assert LabelSelector().matches({})


def test_set_condition_moves_transition_time_only_on_status_change() -> None:
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    t1 = t0 + timedelta(minutes=5)
    conds = set_condition([], "Ready", False, "Deploying", "0/2", 1, t0)
    conds = set_condition(conds, "Ready", False, "Deploying", "1/2", 2, t1)
    ready = get_condition(conds, "Ready")
    assert ready is not None
    assert ready.last_transition_time == t0 and ready.message == "1/2"
    assert ready.observed_generation == 2
    conds = set_condition(conds, "Ready", True, "Deployed", "2/2", 2, t1)
    ready = get_condition(conds, "Ready")
    assert ready is not None and ready.status is ConditionStatus.TRUE
    assert ready.last_transition_time == t1
    assert len(conds) == 1


def test_status_to_wire_uses_camel_case_and_rfc3339() -> None:
    conds = set_condition([], "Ready", True, "Deployed", at=datetime(2024, 1, 1, tzinfo=UTC))
    from edgeplane.api import WorkerStatus

    wire = WorkerStatus(observed_generation=1, conditions=conds, ready_targets="1/1").to_wire()
    assert wire == {
        "observedGeneration": 1,
        "conditions": [{
            "type": "Ready", "status": "True", "reason": "Deployed", "message": "",
            "lastTransitionTime": "2024-01-01T00:00:00Z",
        }],
        "targets": [],
        "failedVersions": [],
        "readyTargets": "1/1",
    }


def test_kinds_and_resources_parse() -> None:
    r = WorkerRoute.model_validate({"kind": "WorkerRoute", "metadata": {"name": "r"},
                                    "spec": {"pattern": "a.com/*", "worker": "w"}})
    assert r.spec.traffic == []
    with pytest.raises(ValidationError, match="kind"):
        EdgeTarget.model_validate({"kind": "Worker", "spec": {
            "endpoint": "http://127.0.0.1:1",
            "credentialsSecretRef": {"namespace": "n", "name": "s", "key": "k"},
        }})


@pytest.mark.parametrize(
    ("endpoint", "refused"),
    [
        ("https://edge-fra.example.net:8443", False),
        ("https://10.0.0.7", False),
        ("http://127.0.0.1:9443", False),
        ("http://127.255.0.9", False),  # all of 127.0.0.0/8
        ("http://[::1]:9443", False),
        ("http://localhost:9443", False),
        ("http://localhost/agent", False),
        ("http://LOCALHOST", True),  # one spelling, as admission checks it
        ("http://127.999.0.1", True),
        ("http://user@127.0.0.1", True),
        ("http://[0:0:0:0:0:0:0:1]", True),
        ("http://edge-fra.example.net:8443", True),
        ("http://10.0.0.7:9443", True),
        ("http://128.0.0.1", True),
        ("http://[::ffff:127.0.0.1]", True),  # CEL's ip() refuses IPv4-mapped forms too
        ("http://localhost.example.net", True),
        ("http://127.0.0.1.nip.io", True),
        ("http://edge-agent.edgeplane-system.svc:8443", True),  # a Service: over the network
    ],
)
def test_endpoint_refusal(endpoint: str, refused: bool) -> None:
    message = endpoint_refusal(endpoint)
    assert (message is not None) is refused
    spec = {"endpoint": endpoint,
            "credentialsSecretRef": {"namespace": "n", "name": "s", "key": "k"}}
    if message is None:
        EdgeTargetSpec.model_validate(spec)
        return
    assert message.startswith("spec.endpoint: ")
    assert "https://" in message and "--tls-cert" in message
    with pytest.raises(ValidationError, match="http:// is allowed only to an agent"):
        EdgeTargetSpec.model_validate(spec)


def test_client_certificate_needs_https() -> None:
    spec = {"endpoint": "http://127.0.0.1:9443",
            "credentialsSecretRef": {"namespace": "n", "name": "s", "key": "k"},
            "clientCertificateSecretRef": {"namespace": "n", "name": "client"}}
    with pytest.raises(ValidationError, match="clientCertificateSecretRef: only used with"):
        EdgeTargetSpec.model_validate(spec)
    spec["endpoint"] = "https://127.0.0.1:9443"
    ref = EdgeTargetSpec.model_validate(spec).client_certificate_secret_ref
    assert ref is not None and (ref.namespace, ref.name) == ("n", "client")
