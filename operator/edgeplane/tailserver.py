"""The operator's live-log endpoint (`edgeplane tail`): HTTPS, in the operator's process.

    GET /v1/namespaces/{namespace}/workers/{name}/tail?location=&status=&search=
    Authorization: Bearer <the caller's own Kubernetes token>

Who may tail is who may `get` the Worker, decided by the cluster, not here: the caller's
token goes to a TokenReview (who is this?), then a SubjectAccessReview asks whether that
user, with their groups, may `get workers.edgeplane.io <name>` in the namespace (the
kube-rbac-proxy pattern). With --tail-client-ca (the CA the apiserver trusts for client
certificates), a caller without a token may present its kubeconfig's client certificate
instead: its CN is the user and its O's the groups, as the apiserver reads them.
Only then does the operator open the Worker's stream at each location it runs at (or at
`location`), with the operator's own agent credentials, and merge them into one NDJSON
stream, each line tagged with its "location":
  {"type": "ready", "locations": [...]}   once every location streams (or failed)
  {"type": "event", "location", ...}      edge/tail.py's events
  {"type": "dropped", "location", "dropped": n}
  {"type": "error", "location", "error"}  a location's stream failed or ended (it is
                                          opened again)
  {"type": "location", "location"}        the Worker now runs there too: streamed from now
  {"type": "end", "error"}                the last line: the caller may no longer tail
  {"type": "ping"}
401: no token or one the cluster does not accept; 403: the user may not get the Worker
(the message says which verb on what); 404: it runs at no (such) location; 422: a bad
parameter. A reader slower than the events drops them here too (counted), never the edge.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import ssl
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web
from kubernetes_asyncio.client.exceptions import ApiException

from edgeplane.api import GROUP
from edgeplane.distribute.client import AgentClient, AgentError, Endpoint
from edgeplane.edge.tail_events import parse_filters

log = logging.getLogger("edgeplane.tail")

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
QUEUE = 1024  # merged lines waiting for a slow reader
PING = 10.0
RECONNECT = 2.0  # seconds before a location's lost stream is opened again
FOLLOW = 3.0  # seconds between looks for locations the Worker newly runs at


@dataclass(frozen=True)
class TailSettings:
    address: str  # host:port
    tls_cert: str
    tls_key: str
    client_ca: str = ""  # client certificates it signs name users, as for the apiserver
    # Seconds between reviews of a stream's caller: a revoked right or an expired token
    # ends the stream within this.
    review_interval: float = 60.0


@dataclass(frozen=True)
class Locations:
    """What the tail server needs of the fleet: where a Worker runs, how to reach a location."""

    running: Callable[[str], list[str]]  # "<ns>.<name>" -> targets that serve it
    endpoint: Callable[[str], Awaitable[Endpoint | None]]
    client: AgentClient


class Reviews:
    """TokenReview and SubjectAccessReview with the operator's own credentials."""

    def __init__(self, api: Any) -> None:
        from kubernetes_asyncio import client as aclient

        self._authn = aclient.AuthenticationV1Api(api)
        self._authz = aclient.AuthorizationV1Api(api)
        self._c = aclient

    async def user(self, token: str) -> dict[str, Any] | None:
        """The token's user ({username, uid, groups, extra}), or None if not accepted."""
        body = self._c.V1TokenReview(spec=self._c.V1TokenReviewSpec(token=token))
        review = await self._authn.create_token_review(body)
        status = review.status
        if not status or not status.authenticated or status.user is None:
            return None
        u = status.user
        return {"username": u.username, "uid": u.uid, "groups": u.groups, "extra": u.extra}

    async def may_get(self, user: dict[str, Any], namespace: str, name: str) -> bool:
        attrs = self._c.V1ResourceAttributes(
            group=GROUP, resource="workers", verb="get", namespace=namespace, name=name
        )
        spec = self._c.V1SubjectAccessReviewSpec(
            user=user["username"],
            uid=user["uid"],
            groups=user["groups"],
            extra=user["extra"],
            resource_attributes=attrs,
        )
        review = await self._authz.create_subject_access_review(
            self._c.V1SubjectAccessReview(spec=spec)
        )
        return bool(review.status and review.status.allowed)


def _refusal(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def certificate_user(request: web.Request) -> dict[str, Any] | None:
    """The user a verified client certificate names (CN; O's are groups), or None."""
    transport = request.transport
    cert = transport.get_extra_info("peercert") if transport is not None else None
    if not cert:
        return None
    attrs = [a for rdn in cert.get("subject", ()) for a in rdn]
    names = [v for k, v in attrs if k == "commonName"]
    if not names:
        return None
    groups = [v for k, v in attrs if k == "organizationName"]
    return {
        "username": names[0],
        "uid": None,
        "groups": [*groups, "system:authenticated"],
        "extra": None,
    }


def _bearer(request: web.Request) -> str:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


async def _authorize(
    reviews: Reviews, request: web.Request, namespace: str, name: str
) -> web.Response | None:
    """None when the caller may get the Worker; else the refusal, saying why (503 when the
    apiserver could not answer: nothing is allowed without its word)."""
    try:
        return await _decide(reviews, request, namespace, name)
    except (ApiException, aiohttp.ClientError, TimeoutError) as e:
        why = f"{e.status} {e.reason}" if isinstance(e, ApiException) else type(e).__name__
        log.warning("live logs: the apiserver did not review a caller: %s", why)
        return _refusal(
            503,
            f"the operator could not ask the apiserver who you are and what you may do ({why}); "
            "its ClusterRole needs create on tokenreviews and subjectaccessreviews",
        )


async def _decide(
    reviews: Reviews, request: web.Request, namespace: str, name: str
) -> web.Response | None:
    token = _bearer(request)
    user = await reviews.user(token) if token else certificate_user(request)
    if user is None and not token:
        return _refusal(
            401,
            "no bearer token (and no client certificate this endpoint trusts): edgeplane "
            "tail sends the token, or the client certificate, of your kubeconfig's user",
        )
    if user is None:
        return _refusal(401, "the cluster did not accept the token (TokenReview)")
    if not await reviews.may_get(user, namespace, name):
        who = user["username"]
        return _refusal(
            403,
            f'{who} may not get workers.edgeplane.io "{name}" in namespace "{namespace}": '
            "tailing a Worker needs the get verb on it (kubectl auth can-i get "
            f"workers.edgeplane.io/{name} -n {namespace})",
        )
    return None


def _query(request: web.Request) -> tuple[str, dict[str, str]]:
    """The location asked for and what goes on to the agents; ValueError if bad."""
    q = dict(request.query)
    location = q.pop("location", "")
    parse_filters(q)  # refused here, with the same message an agent would give
    return location, q


class TailServer:
    def __init__(self, settings: TailSettings, reviews: Reviews, where: Locations) -> None:
        self.settings = settings
        self.reviews = reviews
        self.where = where
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/v1/namespaces/{namespace}/workers/{name}/tail", self.tail)
        app.router.add_get("/healthz", _healthz)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.settings.tls_cert, self.settings.tls_key)
        if self.settings.client_ca:
            ctx.verify_mode = ssl.CERT_OPTIONAL  # a token needs no certificate
            ctx.load_verify_locations(self.settings.client_ca)
        host, _, port = self.settings.address.rpartition(":")
        await web.TCPSite(
            self._runner, host.strip("[]") or "0.0.0.0", int(port), ssl_context=ctx
        ).start()
        log.info("live logs (edgeplane tail) served at https://%s", self.settings.address)

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def tail(self, request: web.Request) -> web.StreamResponse:
        ns, name = request.match_info["namespace"], request.match_info["name"]
        if not DNS_LABEL.match(ns) or not DNS_LABEL.match(name):
            return _refusal(422, "namespace and name must be DNS labels")
        try:
            location, query = _query(request)
        except ValueError as e:
            return _refusal(422, str(e))
        refused = await _authorize(self.reviews, request, ns, name)
        if refused is not None:
            return refused
        worker = f"{ns}.{name}"
        targets = self.where.running(worker)
        if location:
            if location not in targets:
                at = ", ".join(targets) or "none"
                return _refusal(404, f"{ns}/{name} does not run at location {location} (at: {at})")
            targets = [location]
        if not targets:
            return _refusal(404, f"{ns}/{name} runs at no edge location yet")
        return await self._merge(request, worker, targets, location, query)

    async def _merge(
        self,
        request: web.Request,
        worker: str,
        targets: list[str],
        location: str,
        query: dict[str, str],
    ) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await resp.prepare(request)
        merged: asyncio.Queue[dict[str, Any]] = asyncio.Queue(QUEUE)
        pending = set(targets)
        tasks = [
            asyncio.create_task(self._pump(t, worker, query, merged, pending)) for t in targets
        ]
        tasks.append(asyncio.create_task(self._review(request, worker, merged)))
        follow = self._follow(worker, location, set(targets), query, merged, tasks)
        tasks.append(asyncio.create_task(follow))
        try:
            await _drain(resp, merged, targets)
        except ConnectionError:
            pass  # the reader went away
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        return resp

    async def _follow(
        self,
        worker: str,
        location: str,
        known: set[str],
        query: dict[str, str],
        out: asyncio.Queue[dict[str, Any]],
        tasks: list[asyncio.Task[None]],
    ) -> None:
        """A location the Worker reaches after the stream began (a rollout's next step, a
        new EdgeTarget) joins it, announced by a "location" line."""
        while True:
            await asyncio.sleep(FOLLOW)
            for t in self.where.running(worker):
                if t in known or (location and t != location):
                    continue
                known.add(t)
                with contextlib.suppress(asyncio.QueueFull):
                    out.put_nowait({"type": "location", "location": t})
                tasks.append(asyncio.create_task(self._pump(t, worker, query, out, set())))

    async def _review(
        self, request: web.Request, worker: str, out: asyncio.Queue[dict[str, Any]]
    ) -> None:
        """The caller is proved again every review_interval; once refused, the stream ends
        with the reason (a revoked RoleBinding, an expired token)."""
        ns, name = worker.split(".", 1)
        while True:
            await asyncio.sleep(self.settings.review_interval)
            refused = await _authorize(self.reviews, request, ns, name)
            if refused is not None and refused.status != 503:  # 503: asked again next time
                reason = json.loads(refused.text or "{}").get("error", "refused")
                out.put_nowait({"type": "end", "error": f"access ended: {reason}"})
                return

    async def _pump(
        self,
        target: str,
        worker: str,
        query: dict[str, str],
        out: asyncio.Queue[dict[str, Any]],
        pending: set[str],
    ) -> None:
        """One location's streams into `out`, tagged, until cancelled: a stream that fails
        or ends (an agent restarting) is said so and opened again after RECONNECT s."""
        tagged = _Tagged(target, out)
        while True:
            try:
                ep = await self.where.endpoint(target)
                if ep is None:
                    raise AgentError(f"{target}: no credentials for this location")
                async for line in self.where.client.tail(ep, worker, query):
                    if line.get("type") == "ready":
                        _ready(target, pending, out)
                    else:
                        tagged.put(line)
                tagged.put({"type": "error", "error": "the location ended the stream"})
            except AgentError as e:
                tagged.put({"type": "error", "error": str(e)})
            _ready(target, pending, out)
            await asyncio.sleep(RECONNECT)


class _Tagged:
    """Lines of one location into the merged queue. One that finds it full (a reader
    slower than the events) is dropped and counted, never waited for, so no agent's
    stream is held; the count goes out with the next line that fits, added to the
    agent's own."""

    def __init__(self, target: str, out: asyncio.Queue[dict[str, Any]]) -> None:
        self.target, self.out = target, out
        self.agent_dropped = self.dropped = self.reported = 0

    def put(self, line: dict[str, Any]) -> None:
        kind = line.get("type")
        if kind == "ping":
            return
        if kind == "dropped":
            self.agent_dropped = int(line.get("dropped", 0))
        elif not self._fits(line):
            return  # counted
        total = self.agent_dropped + self.dropped
        if total != self.reported and self._fits({"type": "dropped", "dropped": total}):
            self.reported = total

    def _fits(self, line: dict[str, Any]) -> bool:
        try:
            self.out.put_nowait({**line, "location": self.target})
            return True
        except asyncio.QueueFull:
            if line.get("type") == "event":
                self.dropped += 1
            return False


def _ready(target: str, pending: set[str], out: asyncio.Queue[dict[str, Any]]) -> None:
    """The merged "ready" goes out once no location is still starting its stream."""
    if target in pending:
        pending.discard(target)
        if not pending:
            with contextlib.suppress(asyncio.QueueFull):
                out.put_nowait({"type": "ready"})


async def _drain(
    resp: web.StreamResponse, merged: asyncio.Queue[dict[str, Any]], targets: Iterable[str]
) -> None:
    """Lines to the reader until it goes away (a write then raises)."""
    while True:
        try:
            line = await asyncio.wait_for(merged.get(), PING)
        except TimeoutError:
            line = {"type": "ping"}
        if line.get("type") == "ready":
            line = {"type": "ready", "locations": sorted(targets)}
        await resp.write(json.dumps(line).encode() + b"\n")
        if line.get("type") == "end":
            return


async def _healthz(_: web.Request) -> web.Response:
    return web.json_response({"ok": True})


async def serve(settings: TailSettings, controller: Any) -> TailServer:
    """The endpoint of a started Controller (its API client, its fleet's locations)."""
    fleet = controller.fleet

    def running(worker: str) -> list[str]:
        return sorted(t for t, loc in fleet.locations.items() if worker in (loc.inventory or {}))

    where = Locations(running, fleet.endpoint, fleet.client)
    server = TailServer(settings, Reviews(controller.api), where)
    await server.start()
    return server
