"""The agent's API on bad requests, against a real agent process: every one is a 4xx JSON
answer whose `error` names the field (as `errors` lists it, in the apiserver's path
notation) and that never holds the secret value the request carried."""

from __future__ import annotations

import copy
import gzip
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from edgeplane.wire import DECODED_LENGTH_HEADER, BundleBinding, BundleModule, ModuleType
from tests.integration.edge_fixtures import AgentProc, bundle, deployment, start_agent

pytestmark = pytest.mark.integration

SECRET = "s3cr3t-value-never-echoed"
MAX_BODY = 64 * 1024
WORKER = "/v1/workers/ns.w"
PROBE = "/v1/workers/ns.w/probe"
EXCLUDE = "/v1/exclusions/shop"
V = "0" * 64  # a version id no deployment has

Body = dict[str, Any]


def _good() -> Body:
    b = bundle(
        "ns.w",
        "export default { fetch(r, env) { return new Response(env.KEY); } };",
        bindings=(BundleBinding(name="KEY", secret=SECRET),),
    )
    return deployment(b, routes=("w.example/*",)).model_dump(
        mode="json", by_alias=True, exclude_none=True
    )


GOOD = _good()


def dep(change: Callable[[Body], object]) -> bytes:
    """The good deployment (with its secret binding) after `change` mutates a copy."""
    body = copy.deepcopy(GOOD)
    change(body)
    return json.dumps(body).encode()


def v0(body: Body) -> Body:
    """The deployment's first bundle."""
    return body["versions"][0]  # type: ignore[no-any-return]


def other_workers_bundle(body: Body) -> None:
    b = bundle("ns.other", "export default {};")
    body["versions"], body["primary"] = [b.model_dump(mode="json", by_alias=True)], b.version


def second_module_as_main(body: Body) -> None:
    extra = BundleModule(name="b.js", type=ModuleType.ES_MODULE, content="x")
    v0(body)["modules"].append(extra.model_dump(mode="json"))
    v0(body)["mainModule"] = "b.js"


def probe(**fields: Any) -> bytes:
    return json.dumps({"version": V, "path": "/healthz", **fields}).encode()


@dataclass(frozen=True)
class Bad:
    id: str
    path: str
    body: bytes | None
    field: str  # the path `errors` lists and `error` names
    status: int = 422
    method: str = "PUT"
    headers: tuple[tuple[str, str], ...] = ()


PUSHES = [
    Bad("malformed-json", WORKER, b'{"worker": ', "body"),
    Bad("empty-body", WORKER, b"", "body"),
    Bad("json-array", WORKER, b"[]", "body"),
    Bad("json-null", WORKER, b"null", "body"),
    Bad("not-utf8", WORKER, b'{"worker": "\xff"}', "body"),
    Bad("deeply-nested", WORKER, b"[" * 5000 + b"]" * 5000, "body"),
    Bad("worker-missing", WORKER, dep(lambda b: b.pop("worker")), "worker"),
    Bad("worker-integer", WORKER, dep(lambda b: b.update(worker=5)), "worker"),
    Bad("worker-not-its-bundles", WORKER, dep(lambda b: b.update(worker="ns.x")),
        "versions[0].worker"),
    Bad("deployment-of-another-worker", WORKER,
        dep(lambda b: (other_workers_bundle(b), b.update(worker="ns.other"))), "worker"),
    Bad("unknown-field", WORKER, dep(lambda b: b.update(replicas=3)), "replicas"),
    Bad("primary-not-hex", WORKER, dep(lambda b: b.update(primary="abc")), "primary"),
    Bad("primary-not-deployed", WORKER, dep(lambda b: b.update(primary=V)), "primary"),
    Bad("versions-empty", WORKER, dep(lambda b: b.update(versions=[])), "versions"),
    Bad("versions-object", WORKER, dep(lambda b: b.update(versions={})), "versions"),
    Bad("versions-17", WORKER, dep(lambda b: b.update(versions=b["versions"] * 17)), "versions"),
    Bad("versions-repeated", WORKER, dep(lambda b: b.update(versions=b["versions"] * 2)),
        "versions[1]"),
    Bad("version-id-missing", WORKER, dep(lambda b: v0(b).pop("version")),
        "versions[0].version"),
    Bad("version-id-not-the-content", WORKER,
        dep(lambda b: v0(b).update(compatibilityDate="2024-09-24")), "versions[0].version"),
    Bad("date-slashes", WORKER, dep(lambda b: v0(b).update(compatibilityDate="2024/09/23")),
        "versions[0].compatibilityDate"),
    Bad("flags-65", WORKER, dep(lambda b: v0(b).update(compatibilityFlags=["x"] * 65)),
        "versions[0].compatibilityFlags"),
    Bad("modules-empty", WORKER, dep(lambda b: v0(b).update(modules=[])), "versions[0].modules"),
    Bad("module-name-dotdot", WORKER, dep(lambda b: v0(b)["modules"][0].update(name="../x.js")),
        "versions[0].modules[0].name"),
    Bad("module-type-unknown", WORKER, dep(lambda b: v0(b)["modules"][0].update(type="ts")),
        "versions[0].modules[0].type"),
    Bad("module-content-integer", WORKER, dep(lambda b: v0(b)["modules"][0].update(content=5)),
        "versions[0].modules[0].content"),
    Bad("module-repeated", WORKER, dep(lambda b: v0(b).update(modules=v0(b)["modules"] * 2)),
        "versions[0].modules[1]"),
    Bad("main-module-missing", WORKER, dep(lambda b: v0(b).update(mainModule="nope.js")),
        "versions[0].mainModule"),
    Bad("main-module-not-first", WORKER, dep(second_module_as_main), "versions[0].modules[0]"),
    Bad("binding-two-kinds", WORKER, dep(lambda b: v0(b)["bindings"][0].update(text="x")),
        "versions[0].bindings[0]"),
    Bad("binding-no-kind", WORKER, dep(lambda b: v0(b)["bindings"][0].pop("secret")),
        "versions[0].bindings[0]"),
    Bad("binding-bad-name", WORKER, dep(lambda b: v0(b)["bindings"][0].update(name="my-key")),
        "versions[0].bindings[0].name"),
    Bad("binding-secret-integer", WORKER, dep(lambda b: v0(b)["bindings"][0].update(secret=5)),
        "versions[0].bindings[0].secret"),
    Bad("binding-unknown-kind", WORKER, dep(lambda b: v0(b)["bindings"][0].update(r2="b")),
        "versions[0].bindings[0].r2"),
    Bad("binding-json-invalid", WORKER,
        dep(lambda b: v0(b)["bindings"].append({"name": "CFG", "json": "{"})),
        "versions[0].bindings[1].json"),
    Bad("binding-service-one-label", WORKER,
        dep(lambda b: v0(b)["bindings"].append({"name": "S", "service": "other"})),
        "versions[0].bindings[1].service"),
    Bad("binding-kv-space", WORKER,
        dep(lambda b: v0(b)["bindings"].append({"name": "KV", "kvNamespace": "a b"})),
        "versions[0].bindings[1].kvNamespace"),
    Bad("binding-repeated", WORKER, dep(lambda b: v0(b).update(bindings=v0(b)["bindings"] * 2)),
        "versions[0].bindings[1]"),
    Bad("route-string", WORKER, dep(lambda b: b.update(routes=["w.example/*"])), "routes[0]"),
    Bad("route-query", WORKER, dep(lambda b: b["routes"][0].update(pattern="w.example/?a=1")),
        "routes[0].pattern"),
    Bad("route-traffic-50", WORKER,
        dep(lambda b: b["routes"][0].update(traffic=[{"version": b["primary"], "percent": 50}])),
        "routes[0].traffic"),
    Bad("route-traffic-101", WORKER,
        dep(lambda b: b["routes"][0].update(traffic=[{"version": b["primary"], "percent": 101}])),
        "routes[0].traffic[0].percent"),
    Bad("route-traffic-elsewhere", WORKER,
        dep(lambda b: b["routes"][0].update(traffic=[{"version": V, "percent": 100}])),
        "routes[0].traffic[0].version"),
    Bad("oversize", WORKER, dep(lambda b: v0(b)["modules"][0].update(content="x" * MAX_BODY)),
        "body", status=413),
    # Gzipped bodies are limited decoded, by what they announce or else by --max-body.
    Bad("gzip-bomb", WORKER, gzip.compress(b" " * 4 * MAX_BODY), "body", status=413,
        headers=(("Content-Encoding", "gzip"),)),
    Bad("gzip-over-announced", WORKER, gzip.compress(dep(lambda b: None)), "body", status=413,
        headers=(("Content-Encoding", "gzip"), (DECODED_LENGTH_HEADER, "100"))),
    Bad("gzip-announces-over-limit", WORKER, gzip.compress(dep(lambda b: None)), "body",
        status=413, headers=(("Content-Encoding", "gzip"), (DECODED_LENGTH_HEADER, "9" * 12))),
    Bad("url-one-label", "/v1/workers/w", dep(lambda b: None), "name"),
    Bad("url-uppercase", "/v1/workers/NS.W", dep(lambda b: None), "name"),
    Bad("url-trailing-newline", "/v1/workers/ns.w%0A", dep(lambda b: None), "name"),
    Bad("url-label-64", f"/v1/workers/ns.{'a' * 64}", dep(lambda b: None), "name"),
    Bad("delete-bad-name", "/v1/workers/ns..w", None, "name", method="DELETE"),
    Bad("get-bad-name", "/v1/workers/ns_w", None, "name", method="GET"),
]

PROBES = [
    Bad("probe-malformed-json", PROBE, b"{", "body", method="POST"),
    Bad("probe-no-version", PROBE, json.dumps({"path": "/"}).encode(), "version", method="POST"),
    Bad("probe-version-short", PROBE, probe(version="abc"), "version", method="POST"),
    Bad("probe-path-relative", PROBE, probe(path="healthz"), "path", method="POST"),
    Bad("probe-method-post", PROBE, probe(method="POST"), "method", method="POST"),
    Bad("probe-timeout-zero", PROBE, probe(timeoutSeconds=0), "timeoutSeconds", method="POST"),
    Bad("probe-timeout-31", PROBE, probe(timeoutSeconds=31), "timeoutSeconds", method="POST"),
    Bad("probe-timeout-words", PROBE, probe(timeoutSeconds="soon"), "timeoutSeconds",
        method="POST"),
    Bad("probe-host-space", PROBE, probe(host="a b"), "host", method="POST"),
    Bad("probe-unknown-field", PROBE, probe(headers={"X-Token": SECRET}), "headers",
        method="POST"),
    Bad("probe-bad-name", "/v1/workers/W/probe", probe(), "name", method="POST"),
]


def patterns(*items: object, key: str = "patterns") -> bytes:
    return json.dumps({key: list(items)}).encode()


EXCLUSIONS = [
    Bad("exclusions-malformed-json", EXCLUDE, b'{"patterns": [', "body"),
    Bad("exclusions-namespace-upper", "/v1/exclusions/Shop", patterns(), "namespace"),
    Bad("exclusions-namespace-dot", "/v1/exclusions/a.b", patterns(), "namespace"),
    Bad("exclusions-not-a-list", EXCLUDE, json.dumps({"patterns": "a.com/*"}).encode(),
        "patterns"),
    Bad("exclusions-query", EXCLUDE, patterns("a.com/?q"), "patterns[0]"),
    Bad("exclusions-integer", EXCLUDE, patterns(5), "patterns[0]"),
    Bad("exclusions-repeated", EXCLUDE, patterns("a.com/x", "A.COM/x"), "patterns[1]"),
    Bad("exclusions-1001", EXCLUDE, patterns(*(f"a.com/{i}" for i in range(1001))), "patterns"),
    Bad("exclusions-misspelt", EXCLUDE, patterns("a.com/*", key="pattern"), "pattern"),
]

KEY = "/v1/signing-key"
SIGNING_KEYS = [
    # A short key would make signatures guessable; the key itself is never echoed.
    Bad("signing-key-short", KEY, json.dumps({"key": SECRET[:20]}).encode(), "key"),
    Bad("signing-key-missing", KEY, b"{}", "key"),
    Bad("signing-key-number", KEY, json.dumps({"key": 12345}).encode(), "key"),
    Bad("signing-key-extra", KEY, json.dumps({"key": SECRET * 2, "old": SECRET}).encode(),
        "old"),
]

CRON = "/v1/cron"


def lease(ttl: object = 15, **schedules: object) -> bytes:
    return json.dumps({"ttlSeconds": ttl, "schedules": schedules}).encode()


CRON_LEASES = [
    Bad("cron-no-ttl", CRON, json.dumps({"schedules": {}}).encode(), "ttlSeconds"),
    Bad("cron-ttl-zero", CRON, lease(0), "ttlSeconds"),
    Bad("cron-ttl-long", CRON, lease(301), "ttlSeconds"),
    Bad("cron-worker-name", CRON, json.dumps({"ttlSeconds": 5, "schedules": {"W": ["* * * * *"]}}
                                               ).encode(), "schedules.W.[key]"),
    Bad("cron-sunday-zero", CRON, lease(**{"ns.w": ["0 0 * * 0"]}), "schedules.ns.w[0]"),
    Bad("cron-six-fields", CRON, lease(**{"ns.w": ["* * * * * *"]}), "schedules.ns.w[0]"),
    Bad("cron-none", CRON, lease(**{"ns.w": []}), "schedules.ns.w"),
    Bad("cron-21", CRON, lease(**{"ns.w": [f"{i} * * * *" for i in range(21)]}),
        "schedules.ns.w"),
    Bad("cron-misspelt", CRON, json.dumps({"ttl": 5, "schedules": {}}).encode(), "ttl"),
    Bad("cron-seq-negative", CRON, json.dumps({"ttlSeconds": 5, "seq": -1}).encode(), "seq"),
]

AUTH = [
    Bad("no-token", WORKER, dep(lambda b: None), "bearer token", status=401,
        headers=(("Authorization", ""),)),
    Bad("wrong-token", WORKER, dep(lambda b: None), "bearer token", status=401,
        headers=(("Authorization", f"Bearer {SECRET}"),)),
]

BAD_REQUESTS: list[Bad] = [*PUSHES, *PROBES, *EXCLUSIONS, *SIGNING_KEYS, *CRON_LEASES, *AUTH]


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProc]:
    a = start_agent(tmp_path_factory.mktemp("bad") / "agent",
                    extra_args=("--max-body", str(MAX_BODY)))
    try:
        yield a
    finally:
        a.stop()


async def _send(agent: AgentProc, bad: Bad) -> tuple[int, str, str]:
    headers = {**agent.headers(), "Content-Type": "application/json", **dict(bad.headers)}
    async with aiohttp.ClientSession() as s, s.request(
        bad.method, agent.api_url + bad.path, data=bad.body, headers=headers
    ) as r:
        return r.status, r.headers.get("Content-Type", ""), await r.text()


@pytest.mark.parametrize("bad", BAD_REQUESTS, ids=lambda b: b.id)
async def test_bad_request_is_a_4xx_naming_the_field(agent: AgentProc, bad: Bad) -> None:
    status, content_type, text = await _send(agent, bad)
    assert status == bad.status, text
    assert content_type.startswith("application/json"), text
    answer = json.loads(text)
    assert SECRET not in text
    assert bad.field in answer["error"], answer
    if status != 401:
        assert bad.field in answer["errors"], answer
        assert answer["error"].startswith(answer["errors"][0]), answer


async def test_an_oversize_body_without_a_length_is_refused(agent: AgentProc) -> None:
    async def chunks() -> Any:
        for _ in range(4):
            yield b"x" * MAX_BODY

    async with aiohttp.ClientSession() as s, s.put(
        agent.api_url + WORKER, data=chunks(), headers=agent.headers()
    ) as r:
        assert r.status == 413 and (await r.json())["errors"] == ["body"]


async def test_the_agent_still_deploys_after_every_bad_request(agent: AgentProc) -> None:
    status, _, text = await _send(agent, Bad("good", WORKER, json.dumps(GOOD).encode(), ""))
    assert status == 200, text


def test_the_table_is_large_and_its_ids_distinct() -> None:
    assert len(BAD_REQUESTS) >= 60
    assert len({b.id for b in BAD_REQUESTS}) == len(BAD_REQUESTS)


def test_log_holds_no_secret(agent: AgentProc) -> None:
    assert SECRET not in Path(agent.log).read_text(errors="replace")
