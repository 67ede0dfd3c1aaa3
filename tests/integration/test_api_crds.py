"""The CRDs against the real apiserver: examples apply, invalid manifests are refused at
admission with the field named, models and schema agree, and `kubectl explain` documents."""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from edgeplane.localstack.cluster import REPO, Cluster
from edgeplane.localstack.traffic import eventually
from tests import route_cases
from tests.integration.conftest import CRD_DIR

pytestmark = pytest.mark.integration

EXAMPLES = REPO / "manifests" / "examples"
SHA = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
GV = "edgeplane.io/v1alpha1"
OCI_REF = f"registry.example:5000/acme/app@sha256:{SHA}"

Manifest = dict[str, Any]


def worker(name: str = "w", **spec: Any) -> Manifest:
    body: dict[str, Any] = {
        "compatibilityDate": "2024-09-23",
        "modules": [{"name": "index.js", "inline": "export default {}"}],
    }
    body.update(spec)
    return {"apiVersion": GV, "kind": "Worker", "metadata": {"name": name}, "spec": body}


def mod(**fields: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"name": "index.js"}
    out.update(fields)
    return out


def bindings(*items: dict[str, Any]) -> Manifest:
    return worker(bindings=list(items))


def route(**spec: Any) -> Manifest:
    body: dict[str, Any] = {"pattern": "example.com/*", "worker": "hello"}
    body.update(spec)
    return {"apiVersion": GV, "kind": "WorkerRoute", "metadata": {"name": "r"}, "spec": body}


def target(drop: tuple[str, ...] = (), **spec: Any) -> Manifest:
    body: dict[str, Any] = {
        "endpoint": "https://edge.example.net:8443",
        "credentialsSecretRef": {"namespace": "edgeplane-system", "name": "t", "key": "token"},
    }
    body.update(spec)
    for k in drop:
        body.pop(k)
    # Cluster-scoped: a unique name so parallel or repeated runs never collide.
    name = f"bad-{uuid.uuid4().hex[:8]}"
    return {"apiVersion": GV, "kind": "EdgeTarget", "metadata": {"name": name}, "spec": body}


def version(**spec: Any) -> Manifest:
    body: dict[str, Any] = {
        "worker": "w",
        "versionId": SHA,
        "created": "2024-09-23T10:00:00Z",
        "workerGeneration": 1,
        "mainModule": "index.js",
        "compatibilityDate": "2024-09-23",
        "modules": [{"name": "index.js", "type": "esModule", "sha256": SHA, "size": 17}],
        "source": worker()["spec"],
    }
    body.update(spec)
    return {"apiVersion": GV, "kind": "WorkerVersion", "metadata": {"name": "w-1"}, "spec": body}


def without(m: Manifest, key: str) -> Manifest:
    out = copy.deepcopy(m)
    out["spec"].pop(key)
    return out


def claim(**spec: Any) -> Manifest:
    body: dict[str, Any] = {"hosts": ["shop.example.com"], "namespaces": ["shop"]}
    body.update(spec)
    name = f"bad-{uuid.uuid4().hex[:8]}"  # cluster-scoped, like EdgeTargets
    return {"apiVersion": GV, "kind": "HostClaim", "metadata": {"name": name}, "spec": body}


def steps(*items: dict[str, Any]) -> Manifest:
    return worker(rollout={"strategy": "Progressive", "steps": list(items)})


def probe(**fields: Any) -> Manifest:
    return steps({"count": 1, "gate": {"probe": {"path": "/healthz", **fields}}})


MODS2 = [mod(inline="a"), mod(name="b.js", inline="x")]
URL = "https://cdn.example.com/a.js"

# (id, manifest, texts the apiserver's error must contain: the field path first). The
# models name the same field path (tests/unit/test_api_models.py).
INVALID: list[tuple[str, Manifest, tuple[str, ...]]] = [
    # Worker: metadata and top-level fields
    ("name-with-dot", worker(name="my.worker"), ("metadata.name", "should match", "Cloudflare")),
    ("name-too-long", worker(name="a" * 64), ("metadata.name", "Too long")),
    ("no-modules", worker(modules=[]), ("spec.modules", "should have at least 1 items")),
    ("modules-missing", without(worker(), "modules"), ("spec.modules", "Required value")),
    ("date-missing", without(worker(), "compatibilityDate"), ("spec.compatibilityDate",)),
    ("date-bad-month", worker(compatibilityDate="2024-13-01"), ("spec.compatibilityDate",)),
    ("flag-bad", worker(compatibilityFlags=["Node-Compat"]), ("spec.compatibilityFlags[0]",)),
    (
        "flag-duplicate",
        worker(compatibilityFlags=["nodejs_compat", "nodejs_compat"]),
        ("spec.compatibilityFlags[1]", "Duplicate value"),
    ),
    ("unknown-field", worker(modulez=[]), ("spec.modulez", "unknown field")),
    ("name-uppercase", worker(name="Hello"), ("metadata.name", "should match")),
    ("date-words", worker(compatibilityDate="yesterday"), ("spec.compatibilityDate",)),
    ("date-day-32", worker(compatibilityDate="2024-01-32"), ("spec.compatibilityDate",)),
    (
        "flags-not-a-list",
        worker(compatibilityFlags="nodejs_compat"),
        ("spec.compatibilityFlags", "array"),
    ),
    (
        "too-many-modules",
        worker(modules=[mod(name=f"m{i}.js", inline="x") for i in range(65)]),
        ("spec.modules", "must have at most 64 items"),
    ),
    ("modules-not-a-list", worker(modules="index.js"), ("spec.modules", "array")),
    # Worker: modules
    (
        "module-two-sources",
        worker(modules=[mod(inline="x", configMapKeyRef={"name": "c", "key": "k"})]),
        ("spec.modules[0]", "exactly one source"),
    ),
    ("module-no-source", worker(modules=[mod()]), ("spec.modules[0]", "exactly one source")),
    (
        "module-url-http",
        worker(modules=[mod(url="http://cdn.example.com/a.js", sha256=SHA)]),
        ("spec.modules[0].url", "https://"),
    ),
    (
        "module-url-no-sha",
        worker(modules=[mod(url="https://cdn.example.com/a.js")]),
        ("spec.modules[0].sha256", "needs sha256"),
    ),
    (
        "module-sha-without-url",
        worker(modules=[mod(inline="x", sha256=SHA)]),
        ("spec.modules[0].sha256", "only a url source"),
    ),
    (
        "module-sha-uppercase",
        worker(modules=[mod(url="https://cdn.example.com/a.js", sha256=SHA.upper())]),
        ("spec.modules[0].sha256", "should match"),
    ),
    (
        "module-type-unknown",
        worker(modules=[mod(inline="x", type="typescript")]),
        ("spec.modules[0].type", "Unsupported value"),
    ),
    (
        "module-name-duplicate",
        worker(modules=[mod(inline="x"), mod(inline="y")]),
        ("spec.modules[1]", "Duplicate value"),
    ),
    (
        "module-name-dotdot",
        worker(modules=[mod(name="lib/../index.js", inline="x")]),
        ("spec.modules[0].name", "'..'"),
    ),
    (
        "module-name-absolute",
        worker(modules=[mod(name="/index.js", inline="x")]),
        ("spec.modules[0].name", "should match"),
    ),
    (
        "module-configmap-bad-name",
        worker(modules=[mod(configMapKeyRef={"name": "Bad_Name", "key": "k"})]),
        ("spec.modules[0].configMapKeyRef.name",),
    ),
    (
        "module-name-empty-segment",
        worker(modules=[mod(name="lib//a.js", inline="x")]),
        ("spec.modules[0].name", "must not be empty"),
    ),
    (
        "module-name-trailing-slash",
        worker(modules=[mod(name="lib/", inline="x")]),
        ("spec.modules[0].name", "must not be empty"),
    ),
    ("module-name-missing", worker(modules=[{"inline": "x"}]), ("spec.modules[0].name",)),
    (
        "module-url-no-host",
        worker(modules=[mod(url="https:///a.js", sha256=SHA)]),
        ("spec.modules[0].url", "https://"),
    ),
    (
        "module-url-not-a-url",
        worker(modules=[mod(url="cdn.example.com/a.js", sha256=SHA)]),
        ("spec.modules[0].url", "https://"),
    ),
    (
        "module-sha-short",
        worker(modules=[mod(url=URL, sha256=SHA[:63])]),
        ("spec.modules[0].sha256", "should match"),
    ),
    (
        "module-url-and-inline",
        worker(modules=[mod(url=URL, sha256=SHA, inline="x")]),
        ("spec.modules[0]", "exactly one source"),
    ),
    (
        "module-oci-tag",
        worker(modules=[mod(oci={"ref": "ghcr.io/acme/app:v1", "file": "index.js"})]),
        ("spec.modules[0].oci.ref", "<host>/<repository>@sha256:", "a digest, not a tag"),
    ),
    (
        "module-oci-no-file",
        worker(modules=[mod(oci={"ref": OCI_REF})]),
        ("spec.modules[0].oci.file", "Required value"),
    ),
    (
        "module-oci-and-inline",
        worker(modules=[mod(oci={"ref": OCI_REF, "file": "index.js"}, inline="x")]),
        ("spec.modules[0]", "exactly one source: inline, configMapKeyRef, url with sha256, or oci"),
    ),
    (
        "module-oci-with-sha256",
        worker(modules=[mod(oci={"ref": OCI_REF, "file": "index.js"}, sha256=SHA)]),
        ("spec.modules[0].sha256", "only a url source"),
    ),
    (
        "pull-secret-duplicate",
        worker(imagePullSecrets=[{"name": "a"}, {"name": "a"}]),
        ("spec.imagePullSecrets[1]", "Duplicate value"),
    ),
    (
        "module-configmap-no-key",
        worker(modules=[mod(configMapKeyRef={"name": "c"})]),
        ("spec.modules[0].configMapKeyRef.key", "Required value"),
    ),
    (
        "module-configmap-bad-key",
        worker(modules=[mod(configMapKeyRef={"name": "c", "key": "a/b"})]),
        ("spec.modules[0].configMapKeyRef.key", "should match"),
    ),
    (
        "main-module-absolute",
        worker(modules=MODS2, mainModule="/index.js"),
        ("spec.mainModule", "should match"),
    ),
    (
        "main-module-missing",
        worker(modules=MODS2, mainModule="main.js"),
        ("spec.mainModule", "must name one of spec.modules[].name"),
    ),
    # Worker: bindings
    (
        "binding-name-not-identifier",
        bindings({"name": "my-var", "plainText": "x"}),
        ("spec.bindings[0].name", "should match"),
    ),
    (
        "binding-two-kinds",
        bindings({"name": "A", "plainText": "x", "service": {"worker": "other"}}),
        ("spec.bindings[0]", "exactly one of plainText"),
    ),
    ("binding-no-kind", bindings({"name": "A"}), ("spec.bindings[0]", "exactly one of")),
    (
        "binding-name-duplicate",
        bindings({"name": "A", "plainText": "x"}, {"name": "A", "plainText": "y"}),
        ("spec.bindings[1]", "Duplicate value"),
    ),
    (
        "binding-secret-no-key",
        bindings({"name": "A", "secretKeyRef": {"name": "s"}}),
        ("spec.bindings[0].secretKeyRef.key", "Required value"),
    ),
    (
        "binding-service-bad-worker",
        bindings({"name": "A", "service": {"worker": "Other_Worker"}}),
        ("spec.bindings[0].service.worker",),
    ),
    (
        "binding-plaintext-too-long",
        bindings({"name": "A", "plainText": "x" * 6000}),
        ("spec.bindings[0].plainText", "Too long"),
    ),
    (
        "binding-json-not-object",
        bindings({"name": "A", "json": [1, 2]}),
        ("spec.bindings[0].json", "object"),
    ),
    (
        "binding-name-too-long",
        bindings({"name": "A" * 65, "plainText": "x"}),
        ("spec.bindings[0].name",),
    ),
    (
        "binding-unknown-kind",
        bindings({"name": "A", "r2Bucket": {"bucket": "b"}}),
        ("spec.bindings[0].r2Bucket", "unknown field"),
    ),
    (
        "binding-plaintext-not-string",
        bindings({"name": "A", "plainText": 5}),
        ("spec.bindings[0].plainText", "string"),
    ),
    (
        "binding-secret-bad-name",
        bindings({"name": "A", "secretKeyRef": {"name": "Api_Keys", "key": "k"}}),
        ("spec.bindings[0].secretKeyRef.name", "should match"),
    ),
    (
        "binding-service-no-worker",
        bindings({"name": "A", "service": {}}),
        ("spec.bindings[0].service.worker", "Required value"),
    ),
    (
        "binding-kv-no-namespace",
        bindings({"name": "A", "kvNamespace": {}}),
        ("spec.bindings[0].kvNamespace.namespace", "Required value"),
    ),
    (
        "binding-do-no-class",
        bindings({"name": "A", "durableObjectNamespace": {}}),
        ("spec.bindings[0].durableObjectNamespace.className", "Required value"),
    ),
    (
        "binding-do-bad-class",
        bindings({"name": "A", "durableObjectNamespace": {"className": "1Counter"}}),
        ("spec.bindings[0].durableObjectNamespace.className",),
    ),
    (
        "binding-kv-bad-namespace",
        bindings({"name": "A", "kvNamespace": {"namespace": "has space"}}),
        ("spec.bindings[0].kvNamespace.namespace",),
    ),
    # Worker: targets and rollout
    (
        "selector-in-without-values",
        worker(targets={"matchExpressions": [{"key": "edgeplane.io/region", "operator": "In"}]}),
        ("spec.targets.matchExpressions[0].values", "need at least one value"),
    ),
    (
        "selector-exists-with-values",
        worker(targets={"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]}),
        ("spec.targets.matchExpressions[0].values", "take none"),
    ),
    (
        "selector-notin-without-values",
        worker(targets={"matchExpressions": [{"key": "a", "operator": "NotIn", "values": []}]}),
        ("spec.targets.matchExpressions[0].values", "need at least one value"),
    ),
    (
        "selector-bad-key",
        worker(targets={"matchExpressions": [{"key": "a b", "operator": "Exists"}]}),
        ("spec.targets.matchExpressions[0].key", "should match"),
    ),
    (
        "selector-no-operator",
        worker(targets={"matchExpressions": [{"key": "a"}]}),
        ("spec.targets.matchExpressions[0].operator", "Required value"),
    ),
    (
        "selector-bad-operator",
        worker(targets={"matchExpressions": [{"key": "a", "operator": "Equals", "values": ["x"]}]}),
        ("spec.targets.matchExpressions[0].operator", "Unsupported value"),
    ),
    (
        "selector-bad-label-value",
        worker(targets={"matchLabels": {"edgeplane.io/region": "eu central"}}),
        ("spec.targets.matchLabels.edgeplane.io/region",),
    ),
    (
        "rollout-unknown-strategy",
        worker(rollout={"strategy": "Canary"}),
        ("spec.rollout.strategy", "Unsupported value"),
    ),
    (
        "rollout-steps-with-all-at-once",
        worker(rollout={"strategy": "AllAtOnce", "steps": [{"percent": 100}]}),
        ("spec.rollout.steps", "takes no steps"),
    ),
    (
        "rollout-progressive-without-steps",
        worker(rollout={"strategy": "Progressive"}),
        ("spec.rollout.steps", "at least one step"),
    ),
    (
        "rollout-step-two-selections",
        worker(rollout={"strategy": "Progressive", "steps": [{"count": 1, "percent": 50}]}),
        ("spec.rollout.steps[0]", "exactly one of count, percent or selector"),
    ),
    (
        "rollout-empty-gate",
        worker(rollout={"strategy": "Progressive", "steps": [{"count": 1, "gate": {}}]}),
        ("spec.rollout.steps[0].gate", "set probe, maxErrorPercent, or both"),
    ),
    (
        "rollout-probe-relative-path",
        worker(rollout={"strategy": "Progressive",
                        "steps": [{"count": 1, "gate": {"probe": {"path": "healthz"}}}]}),
        ("spec.rollout.steps[0].gate.probe.path",),
    ),
    (
        "rollout-error-percent-over-100",
        worker(rollout={"strategy": "Progressive",
                        "steps": [{"count": 1, "gate": {"maxErrorPercent": 150}}]}),
        ("spec.rollout.steps[0].gate.maxErrorPercent",),
    ),
    ("rollout-step-empty", steps({"holdSeconds": 10}), ("spec.rollout.steps[0]", "exactly one of")),
    ("rollout-step-count-zero", steps({"count": 0}), ("spec.rollout.steps[0].count",)),
    ("rollout-step-percent-101", steps({"percent": 101}), ("spec.rollout.steps[0].percent",)),
    (
        "rollout-hold-negative",
        steps({"count": 1, "holdSeconds": -1}),
        ("spec.rollout.steps[0].holdSeconds",),
    ),
    (
        "rollout-hold-over-a-day",
        steps({"count": 1, "holdSeconds": 86401}),
        ("spec.rollout.steps[0].holdSeconds",),
    ),
    (
        "rollout-min-requests-zero",
        steps({"count": 1, "gate": {"maxErrorPercent": 1, "minRequests": 0}}),
        ("spec.rollout.steps[0].gate.minRequests",),
    ),
    (
        "rollout-error-percent-negative",
        steps({"count": 1, "gate": {"maxErrorPercent": -1}}),
        ("spec.rollout.steps[0].gate.maxErrorPercent",),
    ),
    (
        "probe-status-99",
        probe(expectStatus=99),
        ("spec.rollout.steps[0].gate.probe.expectStatus",),
    ),
    (
        "probe-timeout-31",
        probe(timeoutSeconds=31),
        ("spec.rollout.steps[0].gate.probe.timeoutSeconds",),
    ),
    (
        "probe-host-with-space",
        probe(host="edge example.com"),
        ("spec.rollout.steps[0].gate.probe.host", "should match"),
    ),
    (
        "probe-empty-body-contains",
        probe(bodyContains=""),
        ("spec.rollout.steps[0].gate.probe.bodyContains",),
    ),
    (
        "probe-path-with-space",
        probe(path="/health check"),
        ("spec.rollout.steps[0].gate.probe.path", "should match"),
    ),
    ("pin-short-prefix", worker(version="abc123"), ("spec.version",)),
    ("pin-uppercase", worker(version=SHA.upper()), ("spec.version", "should match")),
    ("rollout-not-an-object", worker(rollout="Progressive"), ("spec.rollout", "object")),
    # WorkerRoute
    (
        "route-query-string",
        route(pattern="example.com/search?q=*"),
        ("spec.pattern", "query string"),
    ),
    ("route-infix-path-wildcard", route(pattern="example.com/*/api"), ("spec.pattern", "'*'")),
    ("route-infix-host-wildcard", route(pattern="api.*.example.com/*"), ("spec.pattern", "'*'")),
    ("route-port", route(pattern="example.com:8080/*"), ("spec.pattern", "'*'")),
    ("route-bad-scheme", route(pattern="ftp://example.com/*"), ("spec.pattern",)),
    (
        "route-traffic-sum",
        route(traffic=[{"version": SHA, "percent": 50}, {"version": "latest", "percent": 40}]),
        ("spec.traffic", "sum to 100"),
    ),
    (
        "route-traffic-duplicate",
        route(traffic=[{"version": "latest", "percent": 50}, {"version": "latest", "percent": 50}]),
        ("spec.traffic[1]", "Duplicate value"),
    ),
    (
        "route-traffic-over-100",
        route(traffic=[{"version": "latest", "percent": 101}]),
        ("spec.traffic[0].percent",),
    ),
    (
        "route-traffic-bad-version",
        route(traffic=[{"version": "v1", "percent": 100}]),
        ("spec.traffic[0].version", "should match"),
    ),
    (
        "route-traffic-without-worker",
        without(route(traffic=[{"version": "latest", "percent": 100}]), "worker"),
        ("spec.traffic", "a route without a worker excludes its pattern and sends no traffic"),
    ),
    ("route-empty-pattern", route(pattern=""), ("spec.pattern",)),
    ("route-pattern-missing", without(route(), "pattern"), ("spec.pattern", "Required value")),
    ("route-fragment", route(pattern="example.com/#top"), ("spec.pattern", "query string")),
    ("route-space", route(pattern="example.com/a b"), ("spec.pattern", "'*'")),
    ("route-bad-worker", route(worker="Hello"), ("spec.worker", "should match")),
    (
        "route-traffic-negative",
        route(traffic=[{"version": "latest", "percent": -1}]),
        ("spec.traffic[0].percent",),
    ),
    (
        "route-traffic-no-version",
        route(traffic=[{"percent": 100}]),
        ("spec.traffic[0].version", "Required value"),
    ),
    (
        "route-traffic-too-many",
        route(traffic=[{"version": f"{i:08x}", "percent": 0} for i in range(17)]),
        ("spec.traffic", "must have at most 16 items"),
    ),
    ("route-unknown-field", route(host="example.com"), ("spec.host", "unknown field")),
    # EdgeTarget
    ("target-endpoint-ftp", target(endpoint="ftp://edge.example.net"), ("spec.endpoint",)),
    ("target-endpoint-not-url", target(endpoint="edge-1"), ("spec.endpoint", "absolute")),
    (
        "target-no-credentials",
        target(drop=("credentialsSecretRef",)),
        ("spec.credentialsSecretRef", "Required value"),
    ),
    (
        "target-ca-with-http",
        target(endpoint="http://127.0.0.1:9000", caBundle="-----BEGIN CERTIFICATE-----\nx"),
        ("spec.caBundle", "https"),
    ),
    ("target-ca-not-pem", target(caBundle="not a certificate"), ("spec.caBundle", "PEM")),
    (
        "target-secret-bad-namespace",
        target(credentialsSecretRef={"namespace": "Edge", "name": "t", "key": "token"}),
        ("spec.credentialsSecretRef.namespace",),
    ),
    (
        "target-endpoint-query",
        target(endpoint="https://edge.example.net/?token=x"),
        ("spec.endpoint", "without a query"),
    ),
    ("target-endpoint-no-host", target(endpoint="https://"), ("spec.endpoint", "absolute")),
    ("target-no-endpoint", target(drop=("endpoint",)), ("spec.endpoint", "Required value")),
    (
        "target-secret-no-key",
        target(credentialsSecretRef={"namespace": "edgeplane-system", "name": "t"}),
        ("spec.credentialsSecretRef.key", "Required value"),
    ),
    (
        "target-secret-bad-key",
        target(credentialsSecretRef={"namespace": "edgeplane-system", "name": "t", "key": "a b"}),
        ("spec.credentialsSecretRef.key", "should match"),
    ),
    ("target-unknown-field", target(insecure=True), ("spec.insecure", "unknown field")),
    # HostClaim
    ("claim-no-hosts", claim(hosts=[]), ("spec.hosts", "at least 1 items")),
    ("claim-hosts-missing", without(claim(), "hosts"), ("spec.hosts", "Required value")),
    ("claim-host-uppercase", claim(hosts=["Shop.example.com"]), ("spec.hosts[0]", "should match")),
    ("claim-host-two-wildcards", claim(hosts=["*.*.example.com"]), ("spec.hosts[0]",)),
    ("claim-host-with-port", claim(hosts=["shop.example.com:443"]), ("spec.hosts[0]",)),
    ("claim-host-with-path", claim(hosts=["shop.example.com/api"]), ("spec.hosts[0]",)),
    (
        "claim-host-duplicate",
        claim(hosts=["a.example.com", "a.example.com"]),
        ("spec.hosts[1]", "Duplicate value"),
    ),
    ("claim-no-namespaces", claim(namespaces=[]), ("spec.namespaces", "at least 1 items")),
    ("claim-namespace-bad", claim(namespaces=["Shop"]), ("spec.namespaces[0]", "should match")),
    (
        "claim-namespace-duplicate",
        claim(namespaces=["shop", "shop"]),
        ("spec.namespaces[1]", "Duplicate value"),
    ),
    (
        "target-http-not-loopback",
        target(endpoint="http://edge.example.net:8443"),
        ("spec.endpoint", "http:// is allowed only to an agent on the operator's own machine",
         "use https://"),
    ),
    (
        "target-http-service",
        target(endpoint="http://edge-agent.edgeplane-system.svc:8443"),
        ("spec.endpoint", "127.0.0.0/8, ::1, localhost", "--tls-cert"),
    ),
    (
        "target-http-private-ip",
        target(endpoint="http://10.0.0.7:9443"),
        ("spec.endpoint", "http:// is allowed only"),
    ),
    (
        "target-http-mapped-loopback",
        target(endpoint="http://[::ffff:127.0.0.1]:9443"),
        ("spec.endpoint", "http:// is allowed only"),
    ),
    (
        "target-client-cert-with-http",
        target(endpoint="http://127.0.0.1:9000",
               clientCertificateSecretRef={"namespace": "edgeplane-system", "name": "c"}),
        ("spec.clientCertificateSecretRef", "only used with an https:// endpoint"),
    ),
    (
        "target-client-cert-bad-namespace",
        target(clientCertificateSecretRef={"namespace": "Edge", "name": "c"}),
        ("spec.clientCertificateSecretRef.namespace",),
    ),
    # spec.assets
    (
        "assets-two-sources",
        worker(assets={"configMap": {"name": "s"},
                       "archive": {"url": "https://h/s.tgz", "sha256": SHA}}),
        ("spec.assets", "set exactly one source"),
    ),
    ("assets-no-source", worker(assets={"binding": "ASSETS"}), ("spec.assets", "exactly one")),
    (
        "assets-path-dotdot",
        worker(assets={"configMap": {"name": "s", "items": [{"key": "a", "path": "x/../y"}]}}),
        ("spec.assets.configMap.items[0].path", "'.' or '..'"),
    ),
    (
        "assets-path-absolute",
        worker(assets={"configMap": {"name": "s", "items": [{"key": "a", "path": "/y"}]}}),
        ("spec.assets.configMap.items[0].path", "should match"),
    ),
    (
        "assets-not-found-handling",
        worker(assets={"configMap": {"name": "s"}, "notFoundHandling": "spa"}),
        ("spec.assets.notFoundHandling", "Unsupported value"),
    ),
    (
        "assets-run-worker-first-string",
        worker(assets={"configMap": {"name": "s"}, "runWorkerFirst": True}),
        ("spec.assets.runWorkerFirst", "must be of type array"),
    ),
    (
        "assets-run-worker-first-relative",
        worker(assets={"configMap": {"name": "s"}, "runWorkerFirst": ["api/*"]}),
        ("spec.assets.runWorkerFirst[0]", "should match"),
    ),
    (
        "assets-archive-http",
        worker(assets={"archive": {"url": "http://h/s.tgz", "sha256": SHA}}),
        ("spec.assets.archive.url", "https://"),
    ),
    # WorkerVersion
    ("version-bad-id", version(versionId="abc"), ("spec.versionId", "should match")),
    (
        "version-invalid-source",
        version(source=worker(modules=[mod()])["spec"]),
        ("spec.source.modules[0]", "exactly one source"),
    ),
    ("version-bad-worker", version(worker="W"), ("spec.worker", "should match")),
    ("version-created-not-a-time", version(created="yesterday"), ("spec.created",)),
    ("version-generation-negative", version(workerGeneration=-1), ("spec.workerGeneration",)),
    (
        "version-module-bad-type",
        version(modules=[{"name": "index.js", "type": "ts", "sha256": SHA, "size": 1}]),
        ("spec.modules[0].type", "Unsupported value"),
    ),
    (
        "version-binding-bad-kind",
        version(bindings=[{"name": "A", "kind": "r2Bucket"}]),
        ("spec.bindings[0].kind", "Unsupported value"),
    ),
    ("version-no-modules", version(modules=[]), ("spec.modules", "at least 1 items")),
    ("version-archive-parts-101", version(archiveParts=101), ("spec.archiveParts",)),
    (
        "version-artifact-tag-not-digest",
        version(artifact={"ref": "reg.example/v/apps/shop:v-1"}),
        ("spec.artifact.ref", "artifact.ref: must be <host>/<repository>@sha256:"),
    ),
    (
        "version-artifact-assets-not-a-digest",
        version(artifact={"ref": f"reg.example/v/apps/shop@sha256:{SHA}", "assets": SHA}),
        ("spec.artifact.assets", "should match"),
    ),
    # Cron triggers: the shape at admission, naming the expression.
    (
        "cron-four-fields",
        worker(triggers={"crons": ["* * * *"]}),
        ("spec.triggers.crons[0]", 'cron trigger "* * * *"', "5 fields"),
    ),
    (
        "cron-question-mark",
        worker(triggers={"crons": ["0 0 ? * MON"]}),
        ("spec.triggers.crons[0]", 'cron trigger "0 0 ? * MON"'),
    ),
    (
        "cron-too-many",
        worker(triggers={"crons": [f"{i} * * * *" for i in range(21)]}),
        ("spec.triggers.crons", "must have at most 20 items"),
    ),
    (
        "cron-duplicate",
        worker(triggers={"crons": ["* * * * *", "* * * * *"]}),
        ("spec.triggers.crons[1]", "Duplicate value"),
    ),
]


def kubectl_create(cluster: Cluster, namespace: str, m: Manifest) -> Any:
    args = ["create", "-f", "-"]
    if m["kind"] != "EdgeTarget":
        args += ["-n", namespace]
    return cluster.kubectl(*args, input=json.dumps(m), check=False)


@pytest.mark.parametrize(
    ("manifest", "expected"), [pytest.param(m, e, id=i) for i, m, e in INVALID]
)
def test_invalid_manifest_is_rejected_naming_the_field(
    cluster: Cluster, crds_installed: list[str], namespace: str,
    manifest: Manifest, expected: tuple[str, ...],
) -> None:
    res = kubectl_create(cluster, namespace, manifest)
    if res.returncode == 0 and manifest["kind"] == "EdgeTarget":
        cluster.kubectl("delete", "edgetarget", manifest["metadata"]["name"], check=False)
    assert res.returncode != 0, f"accepted: {json.dumps(manifest)[:300]}"
    for text in expected:
        assert text in res.stderr, f"{text!r} not in error:\n{res.stderr}"


def test_invalid_table_is_large_enough() -> None:
    assert len(INVALID) >= 100
    assert len({i for i, _, _ in INVALID}) == len(INVALID)


CLUSTER_SCOPED = ("EdgeTarget", "HostClaim")


def example_docs(path: Path) -> list[Manifest]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_example_applies_cleanly(
    cluster: Cluster, crds_installed: list[str], namespace: str, path: Path
) -> None:
    from edgeplane.api import RESOURCES

    kinds = {r.KIND: r for r in RESOURCES}
    # Files that name their own namespaces (EdgeTargets and their Secrets) apply as-is.
    scoped = all("namespace" not in d["metadata"] for d in example_docs(path))
    ns_args = ["-n", namespace] if scoped else []
    res = cluster.kubectl("apply", "--server-side", *ns_args, "-f", str(path))
    try:
        assert "serverside-applied" in res.stdout
        for doc in example_docs(path):
            if doc["kind"] not in kinds:
                continue
            res = cluster.kubectl("get", *ns_args, doc["kind"].lower(),
                                  doc["metadata"]["name"], "-o", "json")
            got = json.loads(res.stdout)
            parsed = kinds[doc["kind"]].model_validate(got)
            # What was written is what is stored: nothing pruned, nothing defaulted.
            assert parsed.spec == kinds[doc["kind"]].model_validate(doc).spec
            assert got["spec"] == doc["spec"]
    finally:
        # Cluster-scoped objects outlive the test's namespace: the examples' EdgeTargets
        # carry the e2e agents' region labels, and left behind, every Worker of a later
        # test would select two locations that do not exist.
        for doc in example_docs(path):
            if doc["kind"] in CLUSTER_SCOPED:
                cluster.kubectl("delete", "--ignore-not-found", "--wait=false",
                                doc["kind"].lower(), doc["metadata"]["name"], check=False)


def test_kubectl_explain_documents_spec_and_status(
    cluster: Cluster, crds_installed: list[str]
) -> None:
    out = cluster.kubectl("explain", "worker.spec.bindings").stdout
    assert "Names on the Worker's `env`" in out
    assert "secretKeyRef" in out and "A secret string read from a Secret key" in out
    out = cluster.kubectl("explain", "worker.status.conditions").stdout
    assert "kstatus-compatible" in out and "lastTransitionTime" in out
    out = cluster.kubectl("explain", "edgetarget.spec.credentialsSecretRef").stdout
    assert "bearer token" in out


def test_short_names_and_category_resolve_without_collisions(
    cluster: Cluster, crds_installed: list[str], namespace: str
) -> None:
    from edgeplane.api import RESOURCES

    rows = [line.split() for line in cluster.kubectl(
        "api-resources", "--no-headers", "-o", "wide").stdout.splitlines()]
    ours = {s for r in RESOURCES for s in r.SHORT_NAMES}
    # A short name column exists only for rows with five or more fields; collect them all.
    counts: dict[str, int] = {}
    for row in rows:
        if len(row) >= 6 and not row[1].startswith(("v1", "edgeplane.io")) and "/" not in row[1]:
            for s in row[1].split(","):
                counts[s] = counts.get(s, 0) + 1
    for s in ours:
        assert counts.get(s) == 1, f"short name {s} used {counts.get(s, 0)} times"
        cluster.kubectl("get", s, "-n", namespace)
    cluster.kubectl("get", "edgeplane", "-n", namespace)


def test_printer_columns(cluster: Cluster, crds_installed: list[str], namespace: str) -> None:
    cluster.kubectl("apply", "-n", namespace, "-f", str(EXAMPLES / "hello-worker.yaml"))
    header = cluster.kubectl("get", "workers", "-n", namespace).stdout.splitlines()[0].split()
    assert header == ["NAME", "READY", "TARGETS", "ROLLOUT", "STEP", "AGE"]
    wide = cluster.kubectl("get", "workers", "-n", namespace, "-o", "wide").stdout
    assert wide.splitlines()[0].split()[-2:] == ["VERSION", "REASON"]
    et = target()
    cluster.kubectl("create", "-f", "-", input=json.dumps(et))
    try:
        out = cluster.kubectl("get", "edgetarget", et["metadata"]["name"]).stdout.splitlines()
        assert out[0].split() == ["NAME", "READY", "ENDPOINT", "WORKERS", "AGE"]
        assert "https://edge.example.net:8443" in out[1]
    finally:
        cluster.kubectl("delete", "edgetarget", et["metadata"]["name"])


def test_workerversion_spec_is_immutable(
    cluster: Cluster, crds_installed: list[str], namespace: str
) -> None:
    cluster.kubectl("create", "-n", namespace, "-f", "-", input=json.dumps(version()))
    res = cluster.kubectl(
        "patch", "-n", namespace, "workerversion", "w-1", "--type", "merge",
        "-p", '{"spec":{"workerGeneration":2}}', check=False,
    )
    assert res.returncode != 0
    assert "spec" in res.stderr and "immutable" in res.stderr
    # Status stays writable.
    cluster.kubectl(
        "patch", "-n", namespace, "workerversion", "w-1", "--subresource", "status",
        "--type", "merge", "-p", json.dumps({"status": {"conditions": [READY_CONDITION]}}),
    )


READY_CONDITION = {"type": "Ready", "status": "True", "reason": "Recorded", "message": "",
                   "lastTransitionTime": "2024-09-23T10:00:00Z"}


def test_a_workerversion_an_earlier_release_counted_still_reads_and_writes(
    cluster: Cluster, crds_installed: list[str], namespace: str
) -> None:
    """status.servingTargets left the schema (the Worker's status.targets says where each
    version serves). A version an earlier release counted keeps it in etcd: the apiserver
    drops it when it reads the object (structural pruning), so the operator's model, for
    which an unknown field is an error, still reads it, and its status is still writable."""
    from edgeplane.api import WorkerVersion

    def get() -> Manifest:
        out = cluster.kubectl("get", "-n", namespace, "workerversion", "w-1", "-o", "json")
        return dict(json.loads(out.stdout))

    path = CRD_DIR / "workerversions.edgeplane.io.yaml"
    earlier = yaml.safe_load(path.read_text())
    for v in earlier["spec"]["versions"]:
        status = v["schema"]["openAPIV3Schema"]["properties"]["status"]
        status["properties"]["servingTargets"] = {"type": "integer", "minimum": 0}
    apply = ("apply", "--server-side", "--force-conflicts", "-f", "-")
    cluster.kubectl(*apply, input=json.dumps(earlier))
    try:
        cluster.kubectl("create", "-n", namespace, "-f", "-", input=json.dumps(version()))

        def counted() -> bool:  # once the apiserver serves the earlier schema
            cluster.kubectl(
                "patch", "-n", namespace, "workerversion", "w-1", "--subresource", "status",
                "--type", "merge", "-p", '{"status":{"servingTargets":2}}', check=False,
            )
            return (get().get("status") or {}).get("servingTargets") == 2

        eventually(counted, timeout=60)
    finally:
        cluster.kubectl(*apply, input=path.read_text())
    read = eventually(lambda: "servingTargets" not in (get().get("status") or {}) and get(),
                      timeout=60)
    assert WorkerVersion.model_validate(read).spec.version_id == SHA
    cluster.kubectl(
        "patch", "-n", namespace, "workerversion", "w-1", "--subresource", "status",
        "--type", "merge", "-p", json.dumps({"status": {"conditions": [READY_CONDITION]}}),
    )
    assert get()["status"] == {"conditions": [READY_CONDITION]}


def test_workerversions_as_the_operator_writes_them_are_accepted(
    cluster: Cluster, crds_installed: list[str], namespace: str
) -> None:
    """The operator leaves a WorkerVersion's fields at their defaults out (etcd keeps every
    retained version): the CEL rules of the spec it records must hold without them, for
    each example Worker and rollouts with steps, gates and pauses."""
    from edgeplane.api import WorkerVersion

    sources = [
        d["spec"] for p in sorted(EXAMPLES.glob("*.yaml")) for d in example_docs(p)
        if d["kind"] == "Worker"
    ]
    sources += [
        probe(expectStatus=200)["spec"],
        steps({"percent": 10, "holdSeconds": 0, "gate": {"maxErrorPercent": 0}},
              {"count": 2, "pause": {}})["spec"],
    ]
    assert len(sources) >= 4
    for i, source in enumerate(sources):
        doc = version(source=source)
        doc["metadata"]["name"] = f"w-{i}"
        wire = WorkerVersion.model_validate(doc).to_wire()
        cluster.kubectl("create", "-n", namespace, "-f", "-", input=json.dumps(wire))


def _status_roundtrip(
    cluster: Cluster, api: Any, plural: str, namespace: str | None, body: Manifest,
    status: dict[str, Any],
) -> dict[str, Any]:
    from kubernetes import client

    custom = client.CustomObjectsApi(api)
    if namespace is None:
        custom.create_cluster_custom_object("edgeplane.io", "v1alpha1", plural, body)
        got = custom.patch_cluster_custom_object_status(
            "edgeplane.io", "v1alpha1", plural, body["metadata"]["name"], {"status": status})
        custom.delete_cluster_custom_object("edgeplane.io", "v1alpha1", plural,
                                            body["metadata"]["name"])
    else:
        custom.create_namespaced_custom_object("edgeplane.io", "v1alpha1", namespace, plural,
                                               body)
        got = custom.patch_namespaced_custom_object_status(
            "edgeplane.io", "v1alpha1", namespace, plural, body["metadata"]["name"],
            {"status": status})
    return got  # type: ignore[no-any-return]


def test_status_written_by_the_operator_is_kept_whole(
    cluster: Cluster, crds_installed: list[str], namespace: str, api_client: Any
) -> None:
    from datetime import UTC, datetime

    from edgeplane.api import (
        EdgeTarget,
        EdgeTargetStatus,
        TargetStatus,
        Worker,
        WorkerStatus,
        set_condition,
    )

    at = datetime(2024, 9, 23, 10, 0, 0, tzinfo=UTC)
    conds = set_condition([], "Ready", True, "Deployed", "2/2 targets serve", 3, at)
    conds = set_condition(conds, "Reconciling", False, "Done", "", 3, at)
    ws = WorkerStatus(
        observed_generation=3, conditions=conds, latest_version=SHA, ready_version=SHA,
        targets=[TargetStatus(name="fra1", version=SHA, state="Ready", message="ok",
                              last_transition_time=at)],
        ready_targets="1/1",
    )
    got = _status_roundtrip(cluster, api_client, "workers", namespace, worker(), ws.to_wire())
    assert Worker.model_validate(got).status == ws

    ts = EdgeTargetStatus(observed_generation=1, conditions=conds, last_heartbeat=at,
                          agent_version="0.1.0", runtime_version="1.20250101.0", workers=4)
    got = _status_roundtrip(cluster, api_client, "edgetargets", None, target(), ts.to_wire())
    assert EdgeTarget.model_validate(got).status == ts


def test_status_with_a_bad_condition_is_rejected(
    cluster: Cluster, crds_installed: list[str], namespace: str, api_client: Any
) -> None:
    from kubernetes.client.rest import ApiException

    bad = {"conditions": [{"type": "Ready", "status": "Maybe", "reason": "X", "message": "",
                           "lastTransitionTime": "2024-09-23T10:00:00Z"}]}
    with pytest.raises(ApiException) as e:
        _status_roundtrip(cluster, api_client, "workers", namespace, worker(), bad)
    assert "status.conditions[0].status" in str(e.value.body)


# -- models and apiserver agree: specs generated from the models are accepted as-is ------

def _create_and_read(api: Any, kind: str, namespace: str, spec: dict[str, Any]) -> Manifest:
    from kubernetes import client

    from edgeplane.api import RESOURCES

    res = next(r for r in RESOURCES if r.KIND == kind)
    custom = client.CustomObjectsApi(api)
    name = f"p{uuid.uuid4().hex[:12]}"
    body = {"apiVersion": GV, "kind": kind, "metadata": {"name": name}, "spec": spec}
    if res.SCOPE == "Cluster":
        got = custom.create_cluster_custom_object("edgeplane.io", "v1alpha1", res.PLURAL, body)
        custom.delete_cluster_custom_object("edgeplane.io", "v1alpha1", res.PLURAL, name)
    else:
        got = custom.create_namespaced_custom_object(
            "edgeplane.io", "v1alpha1", namespace, res.PLURAL, body)
        custom.delete_namespaced_custom_object(
            "edgeplane.io", "v1alpha1", namespace, res.PLURAL, name)
    return got  # type: ignore[no-any-return]


# -- route patterns: every pattern of the table of documented cases, at admission ---------

@pytest.mark.parametrize("pattern", route_cases.VALID)
def test_route_pattern_of_the_table_is_admitted(
    crds_installed: list[str], namespace: str, api_client: Any, pattern: str
) -> None:
    got = _create_and_read(api_client, "WorkerRoute", namespace, {"pattern": pattern,
                                                                  "worker": "w"})
    assert got["spec"]["pattern"] == pattern  # stored as written; matching normalises


@pytest.mark.parametrize("row", route_cases.INVALID, ids=lambda r: r["pattern"])
def test_route_pattern_of_the_table_is_refused_with_the_grammar_message(
    crds_installed: list[str], namespace: str, api_client: Any, row: dict[str, str]
) -> None:
    from kubernetes.client.rest import ApiException

    from edgeplane.routing import pattern_error

    with pytest.raises(ApiException) as e:
        _create_and_read(api_client, "WorkerRoute", namespace, {"pattern": row["pattern"],
                                                                "worker": "w"})
    message = json.loads(e.value.body)["message"]
    assert "spec.pattern" in message and row["error"] in message, message
    assert pattern_error(row["pattern"]) in message, message  # the same words as the models


def _as_js(value: Any) -> Any:
    """Numbers as the Worker sees them (IEEE doubles): the apiserver writes an integral
    float such as 5.2e16 back as the integer 52182740249870340, the same double in JS."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, list):
        return [_as_js(v) for v in value]
    return {k: _as_js(v) for k, v in value.items()}


def _property(kind: str, strategy_name: str) -> Callable[..., None]:
    from hypothesis import HealthCheck, given, settings

    from tests.unit import test_api_strategies as strategies

    strategy = getattr(strategies, strategy_name)()

    @settings(max_examples=30, deadline=None, derandomize=False,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                     HealthCheck.data_too_large, HealthCheck.filter_too_much])
    @given(spec=strategy)
    def check(crds_installed: list[str], namespace: str, api_client: Any, spec: Any) -> None:
        from edgeplane.api import RESOURCES

        res = next(r for r in RESOURCES if r.KIND == kind)
        wire = spec.to_wire()
        got = _create_and_read(api_client, kind, namespace, wire)
        assert _as_js(res.model_validate(got).spec.to_wire()) == _as_js(wire)
        assert _as_js(got["spec"]) == _as_js(json.loads(json.dumps(wire)))

    return check


test_generated_worker_specs_are_accepted = _property("Worker", "worker_specs")
test_generated_route_specs_are_accepted = _property("WorkerRoute", "route_specs")
test_generated_target_specs_are_accepted = _property("EdgeTarget", "target_specs")


def test_a_rollout_pause_and_a_paused_status_are_kept(
    cluster: Cluster, crds_installed: list[str], namespace: str, api_client: Any
) -> None:
    """`pause: {}` is an object without properties: the apiserver must keep it (pruning
    an empty object away would silently drop the pause), and the Paused status whole."""
    from datetime import UTC, datetime

    from edgeplane.api import Worker, WorkerStatus

    body = steps({"count": 1, "pause": {}}, {"count": 2, "holdSeconds": 5, "pause": {}})
    body["metadata"]["name"] = "paused"
    cluster.kubectl("apply", "--server-side", "-n", namespace, "-f", "-",
                    input=json.dumps(body))
    got = json.loads(cluster.kubectl("get", "-n", namespace, "worker", "paused",
                                     "-o", "json").stdout)
    assert [s.get("pause") for s in got["spec"]["rollout"]["steps"]] == [{}, {}]
    assert Worker.model_validate(got).spec.rollout.steps[1].pause is not None

    at = datetime(2026, 11, 1, 10, 0, 0, tzinfo=UTC)
    record = {"action": "Abort", "value": "deadbeef", "step": 1, "applied": False,
              "message": "names version 'deadbeef'", "time": at}
    ws = WorkerStatus.model_validate({"rollout": {
        "version": SHA, "fromVersion": SHA, "phase": "Paused", "step": 1, "steps": 2,
        "progress": "1/2", "pausedSince": at, "actions": [record],
    }})
    got = _status_roundtrip(cluster, api_client, "workers", namespace, worker("paused-st"),
                            ws.to_wire())
    assert Worker.model_validate(got).status == ws
    assert got["status"]["rollout"]["pausedSince"] == "2026-11-01T10:00:00Z"
