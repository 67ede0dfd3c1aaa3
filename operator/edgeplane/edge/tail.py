"""Live logs at the agent: the loopback sink the cells' `Tail` entrypoint sends to
(edge/host_js.py), and the NDJSON streams of `GET /v1/workers/{name}/tail`.

Nothing is kept for a Worker nobody tails: the cells ask the sink which Workers are tailed
(`GET /workers`) and send only theirs (`POST /events`). Each subscriber has a bounded queue
(BUFFER events, BUFFER_BYTES bytes) and a token bucket (--tail-rate); an event that finds
either full is dropped and counted, never waited for, so a slow reader slows neither
workerd nor other readers.

The stream, one JSON object a line:
  {"type": "ready", "worker"}             first, once the cells send this Worker's events
  {"type": "event", "worker", "version", "outcome", "status", "timestamp", "request":
   {"method", "url", "headers"}, "cron", "logs": [{"level", "message": [...]}],
   "exceptions": [{"name", "message", "stack"}]}   (edge/tail_events.py)
  {"type": "dropped", "dropped": n}       events dropped so far for this reader, when it grows
  {"type": "ping"}                        every PING seconds without anything else
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from aiohttp import web

from edgeplane.edge.cells import bind
from edgeplane.edge.tail_events import Filters, TokenBucket, clean

log = logging.getLogger(__name__)

BUFFER = 256  # events queued per reader
BUFFER_BYTES = 1 << 20  # and their bytes (an event is at most 64 KiB: tail_events.MAX_EVENT)
SINK_MAX_BODY = 4 << 20  # one POST from a cell: the events of one request
PING = 10.0
# The cells refresh the tailed set every 500 ms (host_js TAIL_TTL): "ready" waits that long.
CELL_REFRESH = 0.6


@dataclass(eq=False)
class Reader:
    worker: str
    filters: Filters
    bucket: TokenBucket
    queue: deque[bytes] = field(default_factory=deque)  # encoded lines, not yet written
    queued: int = 0  # their bytes
    dropped: int = 0
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    def offer(self, event: dict[str, object], line: bytes, now: float) -> None:
        if not self.filters.wants(event):
            return
        full = len(self.queue) >= BUFFER or self.queued + len(line) > BUFFER_BYTES
        if full or not self.bucket.take(now):
            self.dropped += 1
        else:
            self.queue.append(line)
            self.queued += len(line)
        self.wake.set()

    def take(self) -> bytes:
        out = b"".join(self.queue)
        self.queue.clear()
        self.queued = 0
        return out


class TailHub:
    def __init__(
        self,
        internal_key: str,
        secrets: Callable[[str], Iterable[str]],
        rate: float = 100.0,
    ) -> None:
        self.internal_key = internal_key
        self.secrets = secrets  # worker -> its secret values
        self.rate = rate
        self.readers: dict[str, set[Reader]] = {}  # only Workers someone tails
        self.port = 0
        self._runner: web.AppRunner | None = None

    async def start(self, port: int = 0) -> None:
        """The sink, on a loopback port of its own: `port` where free (cells a restarted
        agent adopts name the port of the last sink in their configs), else any."""
        app = web.Application(client_max_size=SINK_MAX_BODY)
        app.add_routes([web.get("/workers", self._workers), web.post("/events", self._events)])
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        try:
            sock = bind("127.0.0.1", port)
        except OSError:
            sock = bind("127.0.0.1", 0)
        await web.SockSite(self._runner, sock).start()
        self.port = sock.getsockname()[1]

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def _insider(self, request: web.Request) -> bool:
        got = request.headers.get("edgeplane-internal", "")
        return hmac.compare_digest(got.encode(), self.internal_key.encode())

    async def _workers(self, request: web.Request) -> web.Response:
        if not self._insider(request):
            return web.Response(status=403)
        return web.json_response(sorted(self.readers))

    async def _events(self, request: web.Request) -> web.Response:
        if not self._insider(request):
            return web.Response(status=403)
        try:
            events = json.loads(await request.read())
        except (ValueError, web.HTTPRequestEntityTooLarge):
            return web.Response(status=400)
        if isinstance(events, list):
            self.offer([e for e in events if isinstance(e, Mapping)])
        return web.Response(status=204)

    def offer(self, events: list[Mapping[str, object]]) -> None:
        now = time.monotonic()
        for raw in events:
            readers = self.readers.get(str(raw.get("worker", "")))
            if not readers:
                continue  # sent before the last reader left
            event = clean(raw, self.secrets(str(raw["worker"])))
            line = _line(event)  # encoded once, however many read it
            for r in readers:
                r.offer(event, line, now)

    def subscribe(self, worker: str, filters: Filters) -> Reader:
        r = Reader(worker, filters, TokenBucket(self.rate, max(self.rate, 1.0)))
        self.readers.setdefault(worker, set()).add(r)
        return r

    def unsubscribe(self, r: Reader) -> None:
        readers = self.readers.get(r.worker, set())
        readers.discard(r)
        if not readers:
            self.readers.pop(r.worker, None)

    async def stream(
        self, request: web.Request, worker: str, filters: Filters
    ) -> web.StreamResponse:
        """The NDJSON stream of `worker`'s events until the client goes away."""
        resp = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        reader = self.subscribe(worker, filters)
        try:
            await resp.prepare(request)
            await asyncio.sleep(CELL_REFRESH)
            await _send(resp, {"type": "ready", "worker": worker})
            await self._pump(resp, reader)
        except ConnectionError:
            pass  # the reader went away: the usual end of a stream
        finally:
            self.unsubscribe(reader)
        return resp

    async def _pump(self, resp: web.StreamResponse, r: Reader) -> None:
        reported = 0
        while True:
            r.wake.clear()
            out = r.take()
            if r.dropped != reported:
                reported = r.dropped
                out += _line({"type": "dropped", "dropped": reported})
            if out:
                # Waits only for this reader's socket; meanwhile its queue fills and drops.
                await resp.write(out)  # a ConnectionError ends the stream
                continue
            try:
                await asyncio.wait_for(r.wake.wait(), PING)
            except TimeoutError:
                await _send(resp, {"type": "ping"})


def _line(x: dict[str, object]) -> bytes:
    return json.dumps(x).encode() + b"\n"


async def _send(resp: web.StreamResponse, *lines: dict[str, object]) -> None:
    await resp.write(b"".join(_line(x) for x in lines))
