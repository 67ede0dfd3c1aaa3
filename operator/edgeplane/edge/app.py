"""`edgeplane agent`: the edge agent's HTTP API (aiohttp) in front of workerd.

API (JSON; bearer token on everything but /healthz and /readyz, and with --tls-client-ca a
client certificate signed by that CA too; see edge/access.py):
  PUT    /v1/workers/{name}   body: bundle.Deployment → 200 {"changed", "version"} once serving;
                              422 schema/load error, 409 route owned by another Worker,
                              424 {"missing": [sha256, ...]}: blobs it needs, not here (its
                              modules by reference, wire.BundleModule.sha256; assets' files);
                              the modules of a version that names a `repository` are pulled
                              from it first (edge/pull.py, --registry-credentials,
                              --registry-ca), and when that fails the 424 also says
                              {"reason": "ArtifactUnavailable" | "ArtifactNotFound" |
                              "ArtifactDigestMismatch" | "ArtifactTooLarge",
                              "ref": "<repository>@sha256:<hex>"}
  DELETE /v1/workers/{name}   → 200 {"deleted": true} once serving; 404 if unknown
  GET    /v1/workers          → {"workers": [inventory item, ...]}
  GET    /v1/workers?since=<cursor>
                              → {"workers": [items changed since the cursor], "removed":
                              [Workers gone since], "cursor", "complete"}: items without
                              "requests"; an empty, unknown or too old cursor (or one from
                              before the agent restarted) gets every item, "complete": true
  GET    /v1/workers/{name}   → inventory item, or 404. An item: {"worker", "primary",
                              "versions", "identity", "state" ("serving"; "starting" while the
                              front or the Worker's cell is not answering; "failed"),
                              "message", "requests": {"<version>": {"total": n, "errors": n of
                              them 5xx}}, "quarantined": {"<version>": "<why>"},
                              "missingServices": [{"binding", "worker"}]}; requests the front
                              dispatched to each deployed version, read from it when asked
  POST   /v1/workers/{name}/probe
                              body: {"version": "<64-hex>", "path": "/healthz", "host"?,
                              "method"?: "GET"|"HEAD", "timeoutSeconds"?: 5 (max 30)}; one
                              request through the agent's public socket, answered by that
                              version (override header) whatever the traffic split. Host:
                              `host`, else from the first route (most specific first) whose
                              path matches: *.example.com → edgeplane-probe.example.com,
                              *example.com → example.com; scheme from the pattern, else https
                              (sent as X-Forwarded-Proto). Probes pass the router, so they
                              are counted in "requests" like any other request.
                              → 200 {"status" (0: no HTTP answer), "body" (first 1024 chars),
                              "url", "elapsedMs", "error" (transport error or "")}; 404 unknown
                              Worker, 409 version not served here, 422 bad body or no route of
                              the Worker covers the probe URL
  PUT    /v1/exclusions/{namespace}
                              body: wire.Exclusions {"patterns": [...]}: the namespace's routes
                              without a Worker, replacing its earlier set ([] drops them);
                              requests they match get the bypass response (--bypass-status)
                              → 200 {"changed", "namespace"} once served; 409 a pattern a
                              Worker or another namespace has; 422 bad body
  POST   /v1/blobs/missing    body: {"blobs": [sha256, ...]} → {"missing": [...]}: which of
                              them this location lacks (modules, static assets' files;
                              edge/blobs.py)
  PUT    /v1/blobs/{sha256}   body: the blob's bytes, checked against the name → 201 stored,
                              200 already here; 422 the bytes do not match; 507 no room
  GET    /v1/workers/{name}/tail?status=ok,error,canceled&search=TEXT
                              → NDJSON stream of the Worker's live events here (console
                              lines, exceptions, outcome; secrets redacted; sampled at
                              --tail-rate per reader, dropped counts in the stream): see
                              edge/tail.py; 404 unknown Worker, 422 bad parameter
  GET    /v1/exclusions       → {"exclusions": {"<namespace>": [pattern, ...]}}
  PUT    /v1/signing-key      body: {"key": "<at least 32 characters>"}: the key that signs
                              Edgeplane-Version-Overrides/-Key and X-Forwarded-Proto on public
                              requests (wire.sign); until the operator sends one, the agent
                              uses a key of its own → 200 {"changed"} once the router has it
  GET    /v1/info             → {"agentVersion", "runtimeVersion", "workers", "ready",
                              "signingKey": fingerprint of the key in force (never the key),
                              "maxBody": --max-body, "moduleBlobs": true (modules may come
                              by reference)}
  GET    /metrics             → Prometheus text, with edgeplane_agent_requests_total{worker,
                              version, code="2xx"|"3xx"|"4xx"|"5xx"}
  GET    /healthz             → 200 while the agent runs
  GET    /readyz              → 200 while the front answers the watchdog, else 503 saying why

Bodies may come gzipped (Content-Encoding: gzip) with their decoded length in
Edgeplane-Decoded-Length; --max-body limits the decoded body, and by default takes a
deployment of two versions at Cloudflare's largest Worker size (a rollout serves both).
Bodies being read and parsed take their length from a budget (--max-body-bytes-in-flight);
a request that does not fit is answered 503 with Retry-After at once, unread, and retried.

A bad request (422, and 413 for a body over --max-body) is answered {"error": "<path>:
<what is wrong>; ...", "errors": ["<path>", ...]}, paths written as kubectl writes them
(`versions[0].modules[1].name`; `body` for the body as a whole, `name`/`namespace` for the
URL); never with the values sent, which may be secret.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import re
import signal
import ssl
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, Gauge, generate_latest
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edgeplane import __version__
from edgeplane.budget import ByteBudget
from edgeplane.edge import probe as probes
from edgeplane.edge.access import (
    OPEN_PATHS,
    ServerTls,
    certificate_refusal,
    server_tls,
    token_ok,
)
from edgeplane.edge.agent import COALESCE, Agent
from edgeplane.edge.assets import blobs_of
from edgeplane.edge.blobs import BlobError
from edgeplane.edge.cells import bind
from edgeplane.edge.pull import HOLD, Puller, registry_access
from edgeplane.edge.pull_plan import module_sources, pull_plan, unpulled
from edgeplane.edge.result import Result
from edgeplane.edge.store import DIR_MODE, atomic_write
from edgeplane.edge.supervise import supervise
from edgeplane.edge.tail import TailHub
from edgeplane.edge.tail_events import parse_filters
from edgeplane.edge.token import TokenFile
from edgeplane.edge.workerd import find_workerd, workerd_version
from edgeplane.fieldpath import describe, field_errors
from edgeplane.resolve.oci import ArtifactError
from edgeplane.wire import (
    DECODED_LENGTH_HEADER,
    MIN_SIGNING_KEY,
    NAMESPACE_RE,
    WORKER_NAME_RE,
    CronLease,
    Deployment,
    Exclusions,
    body_limit,
    body_reservation,
    key_fingerprint,
    secrets_of,
)

log = logging.getLogger("edgeplane.agent")
AGENT_KEY = web.AppKey("agent", Agent)
TOKEN_KEY = web.AppKey("token", TokenFile)  # the bearer token the operator presents
MAX_BODY_KEY = web.AppKey("max_body", int)  # bytes
CLIENT_CERTIFICATES_KEY = web.AppKey("client_certificates", bool)  # required (--tls-client-ca)
BUDGET_KEY = web.AppKey("budget", ByteBudget)  # request bodies being read and parsed
TAILS_KEY = web.AppKey("tails", TailHub)  # live logs (edge/tail.py)
PULLER_KEY = web.AppKey("puller", Puller)  # blobs pulled from registries (edge/pull.py)
BODY_LIMIT = "edgeplane.body_limit"  # per request: the most of its body that is read
DEFAULT_MAX_BODY = body_limit()
# Bodies in flight, however many PUTs arrive: one of the largest deployments at a time (the
# chart's 1 GiB limit also holds its parsed copy and the workerds), many smaller ones.
DEFAULT_BYTES_IN_FLIGHT = DEFAULT_MAX_BODY
# Bodies at least this long are parsed in a thread.
PARSE_INLINE = 1024 * 1024
# Seconds a push turned away for the budget is asked to wait.
BUSY_RETRY_AFTER = 1
M = TypeVar("M", bound=BaseModel)


class SigningKey(BaseModel):
    model_config = ConfigDict(extra="forbid")
    key: str = Field(min_length=MIN_SIGNING_KEY, max_length=256, repr=False)


class ProbeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    version: str = Field(pattern=probes.VERSION_RE.pattern)
    path: str = Field(pattern=probes.PATH_RE.pattern)
    host: str | None = Field(default=None, pattern=probes.HOST_RE.pattern)
    method: str = Field(default="GET", pattern="^(GET|HEAD)$")
    timeout_seconds: float = Field(
        default=probes.DEFAULT_TIMEOUT, alias="timeoutSeconds", gt=0, le=probes.MAX_TIMEOUT
    )


def _err(status: int, message: str, **extra: object) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status)


def _reply(result: Result) -> web.Response:
    return web.json_response(result.body, status=result.status)


def _unprocessable(message: str, **extra: object) -> web.HTTPUnprocessableEntity:
    return web.HTTPUnprocessableEntity(
        text=json.dumps({"error": message, **extra}), content_type="application/json"
    )


async def _body(request: web.Request) -> bytearray:
    """The (decoded) body, read no further than the length reserved for it."""
    limit = request.get(BODY_LIMIT, request.app[MAX_BODY_KEY])
    body = bytearray()
    async for chunk in request.content.iter_any():
        body += chunk
        if len(body) > limit:
            raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=len(body))
    return body


async def _parsed(request: web.Request, model: type[M]) -> M:
    """The request body as `model`; a 422 naming the wrong fields if it is not one."""
    body = await _body(request)
    try:
        if len(body) < PARSE_INLINE:
            return model.model_validate_json(body)
        # Parsing (and hashing) the largest deployments takes seconds: in a thread, so that
        # health checks are answered meanwhile (one that times out marks the location down).
        return await asyncio.to_thread(model.model_validate_json, body)
    except ValidationError as e:
        # Field paths as the apiserver writes them; values are left out (they may be secret).
        paths = [path or "body" for path, _ in field_errors(e)]
        raise _unprocessable(describe(e), errors=paths) from None


@web.middleware
async def auth(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """The client certificate (if required) and the bearer token on everything but the
    health checks; bodies up to the limit."""
    token, max_body = request.app[TOKEN_KEY].value, request.app[MAX_BODY_KEY]
    refusal = certificate_refusal(
        request.path, request.app[CLIENT_CERTIFICATES_KEY], _has_client_certificate(request)
    )
    if refusal is not None:
        return _err(401, refusal)
    if request.path not in OPEN_PATHS and not token_ok(request.headers.get("Authorization"), token):
        return web.json_response(
            {"error": "missing or invalid bearer token"},
            status=401,
            headers={"WWW-Authenticate": 'Bearer realm="edgeplane-agent"'},
        )
    too_large = f"body: request body exceeds {max_body} bytes (--max-body)"
    if not request.body_exists:
        return await handler(request)
    encoded = request.headers.get("Content-Encoding", "identity").lower() != "identity"
    declared = request.headers.get(DECODED_LENGTH_HEADER)
    want = body_reservation(max_body, request.content_length, encoded, declared)
    if want is None:
        return _err(413, too_large, errors=["body"])
    budget = request.app[BUDGET_KEY]
    got = budget.try_take(want)
    if got is None:
        # Not read: the operator waits and sends it again; a refusal would be remembered.
        request.app[AGENT_KEY].metrics.pushes.labels("busy").inc()
        return _busy(budget)
    request[BODY_LIMIT] = want
    try:
        return await handler(request)
    except web.HTTPRequestEntityTooLarge:
        if want < max_body:
            too_large = f"body: longer than the {want} bytes its headers announced"
        return _err(413, too_large, errors=["body"])
    finally:
        budget.give(got)


def _busy(budget: ByteBudget) -> web.Response:
    return web.json_response(
        {
            "error": f"busy: {budget.used} bytes of request bodies in flight, at the "
            f"{budget.capacity} byte limit (--max-body-bytes-in-flight); retry"
        },
        status=503,
        headers={"Retry-After": str(BUSY_RETRY_AFTER)},
    )


def _has_client_certificate(request: web.Request) -> bool:
    """Whether the client presented a certificate; with --tls-client-ca the handshake has
    verified it (ssl only reports a verified peer certificate)."""
    transport = request.transport
    return bool(transport is not None and transport.get_extra_info("peercert"))


def name_of(request: web.Request) -> str:
    name = request.match_info["name"]
    # fullmatch: re.match lets "$" match before a trailing newline ("ns.w%0A").
    if not re.fullmatch(WORKER_NAME_RE, name) or len(name) > 127:
        raise _unprocessable(
            f"name: {name!r} is not '<namespace>.<worker>' (DNS labels)", errors=["name"]
        )
    return name


routes = web.RouteTableDef()


@routes.get("/healthz")
async def healthz(_: web.Request) -> web.Response:
    return web.json_response({"ok": True})


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    agent = request.app[AGENT_KEY]
    ok = agent.ready()
    return web.json_response(
        {"ready": ok, "message": agent.crash_message}, status=200 if ok else 503
    )


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    agent = request.app[AGENT_KEY]
    await agent.refresh_counts()
    body = generate_latest(agent.metrics.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


@routes.get("/v1/info")
async def info(request: web.Request) -> web.Response:
    agent = request.app[AGENT_KEY]
    runtime = await asyncio.to_thread(workerd_version, agent.workerd_bin)
    return web.json_response(
        {
            "agentVersion": __version__,
            "runtimeVersion": runtime,
            "workers": len(agent.accepted),
            "ready": agent.ready(),
            "signingKey": key_fingerprint(agent.signing_key),
            "maxBody": request.app[MAX_BODY_KEY],
            # Takes modules by reference (wire.BundleModule.sha256) and stores them as blobs.
            "moduleBlobs": True,
        }
    )


@routes.get("/v1/workers")
async def list_workers(request: web.Request) -> web.Response:
    agent = request.app[AGENT_KEY]
    if "since" in request.query:  # a health check: what changed, without request counts
        return web.json_response(agent.inventory_since(request.query["since"]))
    await agent.refresh_counts()
    return web.json_response({"workers": agent.inventory()})


@routes.get("/v1/workers/{name}")
async def get_worker(request: web.Request) -> web.Response:
    agent = request.app[AGENT_KEY]
    name = name_of(request)
    await agent.refresh_counts()
    item = agent.item(name)
    if item is None:
        return _err(404, f"Worker {name} is not deployed here")
    return web.json_response(item)


@routes.put("/v1/workers/{name}")
async def put_worker(request: web.Request) -> web.Response:
    agent = request.app[AGENT_KEY]
    name = name_of(request)
    agent.metrics.received_bytes.labels("deployment").inc(request.content_length or 0)
    try:
        d = await _parsed(request, Deployment)
    except web.HTTPUnprocessableEntity:
        agent.metrics.pushes.labels("invalid").inc()
        raise
    if d.worker != name:
        return _err(
            422, f"worker: {d.worker!r} does not match the URL's {name!r}", errors=["worker"]
        )
    missing = await asyncio.to_thread(agent.blobs.missing, blobs_of([d]))
    # Those a version's repository holds are pulled first (edge/pull.py).
    refusal = await _pull(request.app[PULLER_KEY], d, missing) if missing else None
    if refusal is not None:
        return refusal
    try:
        d = await asyncio.to_thread(agent.hydrated, d)
    except FileNotFoundError:  # removed meanwhile, or found corrupt (and removed)
        return _missing(await asyncio.to_thread(agent.blobs.missing, blobs_of([d])))
    except ValueError:  # never quoted: a validation error may echo module content
        agent.metrics.pushes.labels("invalid").inc()
        return _err(
            422, "versions: an id does not match the sha256 of its modules' content",
            errors=["versions"],
        )
    # Shielded: a client that goes away does not take its push out of the batch.
    return _reply(await asyncio.shield(agent.submit(name, d)))


async def _pull(puller: Puller, d: Deployment, missing: list[str]) -> web.Response | None:
    """Pull the `missing` blobs whose versions name a repository; None once none is
    missing, else the 424 naming those still missing (the operator can send them), with
    the reason and reference of a pull that failed."""
    failed: ArtifactError | None = None
    for repository, digests in pull_plan(module_sources(d), missing).items():
        try:
            await puller.pull(repository, digests)
        except ArtifactError as e:
            failed = failed or e
        except ValueError as e:  # a repository that is not one: nothing was asked
            return _err(422, f"versions: {e}", errors=["versions"])
        except OSError as e:
            return _err(507, f"this location could not store the blobs: {e.strerror or e}")
    left = await asyncio.to_thread(puller.blobs.missing, missing)
    if not left:
        return None
    if failed is not None:
        return web.json_response(
            unpulled(left, failed.reason, failed.ref, failed.message), status=424
        )
    return _missing(left)


def _missing(missing: list[str]) -> web.Response:
    """The 424 of a push whose blobs are not all here: the operator sends them."""
    return _err(
        424,
        f"{len(missing)} blobs (modules, assets' files) are not here; PUT "
        "/v1/blobs/<sha256> each of `missing` first",
        missing=missing,
    )


@routes.delete("/v1/workers/{name}")
async def delete_worker(request: web.Request) -> web.Response:
    name = name_of(request)
    return _reply(await asyncio.shield(request.app[AGENT_KEY].submit(name, None)))


@routes.post("/v1/workers/{name}/probe")
async def probe_worker(request: web.Request) -> web.Response:
    agent = request.app[AGENT_KEY]
    name = name_of(request)
    req = await _parsed(request, ProbeRequest)
    result = await agent.probe(
        name, req.version, req.path, host=req.host, method=req.method, seconds=req.timeout_seconds
    )
    return _reply(result)


class BlobList(BaseModel):
    model_config = ConfigDict(extra="forbid")
    blobs: list[str] = Field(max_length=200_000)


@routes.post("/v1/blobs/missing")
async def missing_blobs(request: web.Request) -> web.Response:
    """Which of these blobs (sha256) this location does not hold: the ones to send."""
    body = await _parsed(request, BlobList)
    try:
        missing = await asyncio.to_thread(request.app[AGENT_KEY].blobs.missing, body.blobs)
    except BlobError as e:
        return _err(422, f"blobs: {e}", errors=["blobs"])
    return web.json_response({"missing": missing})


@routes.put("/v1/blobs/{sha256}")
async def put_blob(request: web.Request) -> web.Response:
    """A blob, checked against its name; stored once (a second PUT changes nothing)."""
    agent = request.app[AGENT_KEY]
    sha256 = request.match_info["sha256"]
    content = bytes(await _body(request))
    agent.metrics.received_bytes.labels("blob").inc(request.content_length or len(content))
    try:
        created = await asyncio.to_thread(agent.blobs.put, sha256, content)
    except BlobError as e:
        return _err(422, str(e), errors=["body" if str(e).startswith("body") else "sha256"])
    except OSError as e:
        return _err(507, f"this location could not store the blob: {e.strerror or e}")
    agent.metrics.blobs_received.labels("stored" if created else "present").inc()
    return web.json_response({"sha256": sha256, "created": created}, status=201 if created else 200)


def namespace_of(request: web.Request) -> str:
    namespace = request.match_info["namespace"]
    if not re.fullmatch(NAMESPACE_RE, namespace):
        raise _unprocessable(f"namespace: {namespace!r} is not a DNS label", errors=["namespace"])
    return namespace


@routes.put("/v1/exclusions/{namespace}")
async def put_exclusions(request: web.Request) -> web.Response:
    namespace = namespace_of(request)
    body = await _parsed(request, Exclusions)
    return _reply(await asyncio.shield(request.app[AGENT_KEY].exclude(namespace, body.patterns)))


@routes.put("/v1/signing-key")
async def put_signing_key(request: web.Request) -> web.Response:
    body = await _parsed(request, SigningKey)
    return _reply(await asyncio.shield(request.app[AGENT_KEY].use_signing_key(body.key)))


@routes.put("/v1/cron")
async def put_cron(request: web.Request) -> web.Response:
    """The operator's cron lease (edge/cron.py): these Workers' schedules, for ttlSeconds."""
    body = await _parsed(request, CronLease)
    scheduler = request.app[AGENT_KEY].cron
    if not scheduler.grant(body.ttl_seconds, body.schedules, body.holder, body.seq):
        return _err(409, "seq: an older lease than the one in force; ignored", errors=["seq"])
    return web.json_response({"leaseSeconds": scheduler.lease_left(),
                              "schedules": sorted(body.schedules)})


@routes.get("/v1/cron")
async def get_cron(request: web.Request) -> web.Response:
    scheduler = request.app[AGENT_KEY].cron
    return web.json_response({
        "leaseSeconds": scheduler.lease_left(),
        "schedules": {w: list(c) for w, c in scheduler.schedules.items()},
        "last": {w: run.wire() for w, run in scheduler.last.items()},
    })


@routes.get("/v1/exclusions")
async def list_exclusions(request: web.Request) -> web.Response:
    exclusions = request.app[AGENT_KEY].exclusions
    return web.json_response({"exclusions": {ns: list(ps) for ns, ps in exclusions.items()}})


@routes.get("/v1/workers/{name}/tail")
async def tail_worker(request: web.Request) -> web.StreamResponse:
    name = name_of(request)
    try:
        filters = parse_filters(request.query)
    except ValueError as e:
        return _err(422, str(e), errors=[str(e).split(":")[0]])
    if TAILS_KEY not in request.app:
        return _err(404, "live logs are off at this location (--tail-rate 0)")
    if name not in request.app[AGENT_KEY].accepted:
        return _err(404, f"worker {name} is not deployed here")
    return await request.app[TAILS_KEY].stream(request, name, filters)


def make_app(
    agent: Agent,
    token: str | TokenFile,
    max_body: int = DEFAULT_MAX_BODY,
    client_certificates: bool = False,
    bytes_in_flight: int = DEFAULT_BYTES_IN_FLIGHT,
    tails: TailHub | None = None,
    puller: Puller | None = None,
) -> web.Application:
    app = web.Application(client_max_size=max_body, middlewares=[auth])
    app[PULLER_KEY] = puller or Puller(agent.blobs, agent.metrics.registry)
    if tails is not None:
        app[TAILS_KEY] = tails
    app[BUDGET_KEY] = budget = ByteBudget(bytes_in_flight)
    _export(budget, agent)
    app[AGENT_KEY] = agent
    app[TOKEN_KEY] = token if isinstance(token, TokenFile) else TokenFile.fixed(token)
    app[MAX_BODY_KEY] = max_body
    app[CLIENT_CERTIFICATES_KEY] = client_certificates
    app.add_routes(routes)
    return app


def _export(budget: ByteBudget, agent: Agent) -> None:
    """The budget's use on /metrics, read when scraped."""
    p, r = "edgeplane_agent_", agent.metrics.registry
    Gauge(p + "body_bytes_in_flight", "Request body bytes reserved now", registry=r).set_function(
        lambda: budget.used
    )
    Gauge(
        p + "body_bytes_in_flight_peak",
        "The most request body bytes reserved at once since the agent started; at most "
        "--max-body-bytes-in-flight",
        registry=r,
    ).set_function(lambda: budget.peak)
    Gauge(p + "body_bytes_in_flight_limit", "--max-body-bytes-in-flight", registry=r).set_function(
        lambda: budget.capacity
    )


def _url(scheme: str, addr: tuple[str, int]) -> str:
    host, port = addr[:2]
    return f"{scheme}://{f'[{host}]' if ':' in host else host}:{port}"


def _body_args(ap: argparse.ArgumentParser) -> None:
    """How large the request bodies may be, one and all together."""
    env = os.environ.get
    ap.add_argument(
        "--max-body",
        help="largest request body in bytes, decoded (413 above); the default takes two "
        "versions of a Worker at Cloudflare's size limit",
        type=int,
        default=int(env("EDGEPLANE_AGENT_MAX_BODY", str(DEFAULT_MAX_BODY))),
    )
    ap.add_argument(
        "--max-body-bytes-in-flight",
        help="request body bytes read and parsed at once; a request over it is answered 503 "
        "with Retry-After (a body larger than this goes alone)",
        type=int,
        default=int(env("EDGEPLANE_AGENT_BYTES_IN_FLIGHT", str(DEFAULT_BYTES_IN_FLIGHT))),
    )


def _runtime_args(ap: argparse.ArgumentParser) -> None:
    """How the agent runs workerd and answers on the public socket."""
    env = os.environ.get
    ap.add_argument(
        "--workerd",
        help="workerd binary (default: the one pinned in node_modules, or $EDGEPLANE_WORKERD)",
        default=env("EDGEPLANE_AGENT_WORKERD"),
    )
    ap.add_argument(
        "--cells",
        help="workerd processes serving Workers, besides those of Durable Object Workers; "
        "Workers are placed by namespace, so a hang in one namespace's code leaves the "
        "namespaces of other cells answering (default 4)",
        type=int,
        default=int(env("EDGEPLANE_AGENT_CELLS", "4")),
    )
    ap.add_argument(
        "--hang-timeout",
        help="seconds a cell may take to answer the watchdog's probe before it is replaced "
        "(and the request it was stuck in counted against its Worker version)",
        type=float,
        default=float(env("EDGEPLANE_AGENT_HANG_TIMEOUT", "2")),
    )
    ap.add_argument(
        "--drain-seconds",
        help="how long a replaced cell may drain before SIGKILL",
        type=float,
        default=float(env("EDGEPLANE_AGENT_DRAIN_SECONDS", "10")),
    )
    ap.add_argument(
        "--validate-timeout",
        help="seconds a new version may take to load in the validator before it is refused",
        type=float,
        default=float(env("EDGEPLANE_AGENT_VALIDATE_TIMEOUT", "10")),
    )
    ap.add_argument(
        "--bypass-status",
        help="HTTP status for requests matching a route without a Worker: Cloudflare sends "
        "them to the origin, which a location does not have (default 404)",
        type=int,
        choices=range(200, 600),
        metavar="STATUS",
        default=int(env("EDGEPLANE_AGENT_BYPASS_STATUS", "404")),
    )
    ap.add_argument(
        "--trust-forwarded-proto",
        help="the location is behind a TLS-terminating proxy: X-Forwarded-Proto counts for "
        "route matching without a signature",
        action="store_true",
        default=env("EDGEPLANE_AGENT_TRUST_FORWARDED_PROTO", "") == "true",
    )


def _feature_args(ap: argparse.ArgumentParser) -> None:
    """Static assets' blobs and live logs."""
    env = os.environ.get
    ap.add_argument(
        "--coalesce",
        help="seconds the agent waits for another push before it starts a batch, so that a "
        "burst is validated and stored as one (default 0.02; a batch waits at most 0.5 s, "
        "or this, if longer)",
        type=float,
        default=float(env("EDGEPLANE_AGENT_COALESCE", str(COALESCE))),
    )
    ap.add_argument(
        "--blob-grace",
        help="seconds a blob (a static asset's file) no deployment references is kept after "
        "it arrived, for the deployment its sender PUTs next",
        type=float,
        default=float(env("EDGEPLANE_AGENT_BLOB_GRACE", "600")),
    )
    ap.add_argument(
        "--tail-rate",
        help="live-log events a second sent to each reader of `GET /v1/workers/{name}/tail`; "
        "beyond it events are dropped and the count reported in the stream; 0 turns live logs "
        "off: no tail hook runs (default 100)",
        type=_tail_rate,
        default=float(env("EDGEPLANE_AGENT_TAIL_RATE", "100")),
    )
    _registry_args(ap)


def _registry_args(ap: argparse.ArgumentParser) -> None:
    """Where the agent pulls the blobs a push names by digest (edge/pull.py)."""
    env = os.environ.get
    ap.add_argument(
        "--registry-credentials",
        help="a .dockerconfigjson granting the registries pushes name (e.g. a mounted "
        "kubernetes.io/dockerconfigjson Secret); read again when it changes; without it, "
        "pulls are anonymous. Credentials never travel in a push",
        default=env("EDGEPLANE_AGENT_REGISTRY_CREDENTIALS"),
    )
    ap.add_argument(
        "--registry-ca",
        help="PEM file of CAs trusted for registries, besides the system's",
        default=env("EDGEPLANE_AGENT_REGISTRY_CA"),
    )
    ap.add_argument(
        "--registry-hold",
        type=float,
        help="seconds a registry that could not be reached is not tried again; pushes "
        "meanwhile get their blobs from the operator",
        default=float(env("EDGEPLANE_AGENT_REGISTRY_HOLD", str(HOLD))),
    )


def _tail_rate(text: str) -> float:
    rate = float(text)
    if rate < 0:
        raise argparse.ArgumentTypeError("must be 0 (live logs off) or more")
    return rate


def parse_args(argv: list[str]) -> argparse.Namespace:
    env = os.environ.get
    ap = argparse.ArgumentParser(prog="edgeplane agent", description="edge agent for workerd")
    ap.add_argument(
        "--listen-api",
        help="address of the agent API (host:port; port 0 picks one; see run/endpoints.json)",
        default=env("EDGEPLANE_AGENT_LISTEN_API", "127.0.0.1:9443"),
    )
    ap.add_argument(
        "--listen-http",
        help="address of the public socket the agent owns and hands to workerd",
        default=env("EDGEPLANE_AGENT_LISTEN_HTTP", "127.0.0.1:8080"),
    )
    ap.add_argument(
        "--state-dir",
        help="accepted deployments, KV and Durable Object data, runtime files",
        default=env("EDGEPLANE_AGENT_STATE_DIR", "/var/lib/edgeplane"),
    )
    ap.add_argument(
        "--token-file",
        help="file holding the bearer token the operator presents (required); re-read "
        "within a second when it changes, e.g. a rotated Secret volume",
        default=env("EDGEPLANE_AGENT_TOKEN_FILE"),
    )
    ap.add_argument(
        "--tls-cert",
        help="serve the API over TLS with this certificate (PEM)",
        default=env("EDGEPLANE_AGENT_TLS_CERT"),
    )
    ap.add_argument(
        "--tls-key", help="private key of --tls-cert (PEM)", default=env("EDGEPLANE_AGENT_TLS_KEY")
    )
    ap.add_argument(
        "--tls-client-ca",
        help="require a client certificate signed by this CA (PEM) on the API, besides the "
        "token (the health checks stay open); needs --tls-cert",
        default=env("EDGEPLANE_AGENT_TLS_CLIENT_CA"),
    )
    ap.add_argument(
        "--supervise",
        help="run the agent under a supervisor that starts it again when it dies: for the "
        "main process of a container, which would otherwise end the container (and the "
        "workerds that outlive the agent) with it",
        action="store_true",
    )
    _runtime_args(ap)
    _feature_args(ap)
    _body_args(ap)
    args = ap.parse_args(argv)
    if args.cells < 1:
        ap.error("--cells must be at least 1")
    if args.hang_timeout <= 0:
        ap.error("--hang-timeout must be more than 0 seconds")
    if not args.token_file:
        ap.error("--token-file (or EDGEPLANE_AGENT_TOKEN_FILE) is required")
    try:
        args.tls = server_tls(args.tls_cert, args.tls_key, args.tls_client_ca)
    except ValueError as e:
        ap.error(str(e))
    return args


def server_context(tls: ServerTls) -> ssl.SSLContext:
    """The API's ssl context. Only --tls-client-ca is trusted for client certificates: a
    default context would also trust the system's roots, i.e. any public CA's client."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(tls.cert, tls.key)
    if tls.client_ca:
        ctx.load_verify_locations(cafile=tls.client_ca)
        # Optional in the handshake so the health checks need none; a presented one must
        # verify, and the API refuses requests without one (certificate_refusal).
        ctx.verify_mode = ssl.CERT_OPTIONAL
    return ctx


def address(addr: str) -> tuple[str, int]:
    host, _, port = addr.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


async def serve(args: argparse.Namespace, token: TokenFile, state: Path, wd: Path) -> None:
    agent = Agent(
        state,
        wd,
        address(args.listen_http),
        cells=args.cells,
        hang_timeout=args.hang_timeout,
        drain_grace=args.drain_seconds,
        validate_timeout=args.validate_timeout,
        bypass_status=args.bypass_status,
        trust_forwarded_proto=args.trust_forwarded_proto,
        blob_grace=args.blob_grace,
        coalesce=args.coalesce,
    )
    tails = await _start_tails(agent, args.tail_rate) if args.tail_rate > 0 else None
    # Serve what was accepted before anything else: no operator contact needed.
    await agent.start()
    tls: ServerTls | None = args.tls
    ssl_ctx = server_context(tls) if tls else None
    app = make_app(
        agent,
        token,
        args.max_body,
        bool(tls and tls.client_ca),
        args.max_body_bytes_in_flight,
        tails,
        Puller(agent.blobs, agent.metrics.registry, args.registry, hold=args.registry_hold),
    )
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    api_sock = bind(*address(args.listen_api))
    site = web.SockSite(runner, api_sock, ssl_context=ssl_ctx)
    await site.start()
    endpoints = {
        "api": _url("https" if ssl_ctx else "http", api_sock.getsockname()),
        "http": _url("http", agent.dp.http_address),
        "pid": os.getpid(),
    }
    await asyncio.to_thread(
        atomic_write, agent.run_dir / "endpoints.json", json.dumps(endpoints).encode()
    )
    log.info("edge agent serving: api %s, http %s", endpoints["api"], endpoints["http"])
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    watching = asyncio.create_task(token.watch())
    try:
        await stop.wait()
    finally:
        watching.cancel()
        await runner.cleanup()
        await app[PULLER_KEY].close()
        if tails is not None:
            await tails.close()
        await agent.close()


async def _start_tails(agent: Agent, rate: float) -> TailHub:
    """The live-log sink, before the cells start: their configs name its port."""
    tails = TailHub(
        agent.dp.internal_key,
        lambda w: secrets_of([d] if (d := agent.accepted.get(w)) else []),
        rate,
    )
    port_file = agent.run_dir / "tail.port"
    saved = await asyncio.to_thread(lambda: port_file.read_text() if port_file.exists() else "0")
    await tails.start(int(saved) if saved.isdigit() else 0)
    await asyncio.to_thread(atomic_write, port_file, str(tails.port).encode())
    agent.dp.tail_port = tails.port
    return tails


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.supervise:
        return supervise([a for a in argv if a != "--supervise"])
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        token = TokenFile.read(Path(args.token_file))
    except (OSError, ValueError) as e:
        print(f"edgeplane agent: --token-file: {e}", file=sys.stderr)
        return 2
    try:
        args.registry = registry_access(args.registry_credentials, args.registry_ca)
    except ValueError as e:
        print(f"edgeplane agent: {e}", file=sys.stderr)
        return 2
    # Defence in depth: the agent writes its files with explicit modes, but workerd (which
    # inherits the umask) creates the Durable Object and KV files under the state dir.
    os.umask(0o077)
    state = Path(args.state_dir)
    state.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    wd = Path(args.workerd) if args.workerd else find_workerd()
    asyncio.run(serve(args, token, state, wd))
    return 0


if __name__ == "__main__":
    sys.exit(main())
