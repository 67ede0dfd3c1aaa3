"""A real https file server on a loopback address, in a thread, with a certificate from its
own CA: what url modules are downloaded from in tests. Each path answers as its Route
says: a body (with or without Content-Length), a redirect, a status, or a stall."""

from __future__ import annotations

import http.server
import ssl
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from edgeplane.localstack.pki import CertificateAuthority

HOSTS = ("127.0.0.1", "127.0.0.2", "localhost")  # names in the server's certificate


@dataclass(frozen=True)
class Route:
    body: bytes = b""
    status: int = 200
    headers: tuple[tuple[str, str], ...] = ()
    length: bool = True  # send Content-Length; without it the body ends at EOF
    declared: int | None = None  # a Content-Length to claim instead of the body's
    delay: float = 0.0  # seconds before the answer
    chunk: int = 1 << 16  # bytes per write: the client reads many chunks


@dataclass
class _State:
    routes: dict[str, Route] = field(default_factory=dict)
    hits: Counter[str] = field(default_factory=Counter)
    active: int = 0
    peak: int = 0  # most requests answered at the same time
    lock: threading.Lock = field(default_factory=threading.Lock)
    stopping: threading.Event = field(default_factory=threading.Event)


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        state = self.server.state
        path = urlsplit(self.path).path  # a query (a signature, say) does not pick the route
        with state.lock:
            state.hits[path] += 1
            state.active += 1
            state.peak = max(state.peak, state.active)
        try:
            self._answer(state.routes.get(path, Route(status=404)))
        except OSError:
            pass  # the client gave up (a timeout or a refused body): expected here
        finally:
            with state.lock:
                state.active -= 1

    def _answer(self, r: Route) -> None:
        if r.delay and self.server.state.stopping.wait(r.delay):
            return
        self.send_response(r.status)
        for k, v in r.headers:
            self.send_header(k, v)
        if r.declared is not None or r.length:
            self.send_header("Content-Length", str(r.declared or len(r.body)))
        self.end_headers()
        for i in range(0, len(r.body), r.chunk):
            self.wfile.write(r.body[i : i + r.chunk])

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    state: _State

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client refusing the certificate is a test's point, not an error here


class FileServer:
    """`with FileServer(dir) as s: s.routes["/a.js"] = Route(b"..."); s.url("/a.js")`."""

    def __init__(
        self, directory: Path, host: str = "127.0.0.1", ca: CertificateAuthority | None = None
    ) -> None:
        self.ca = ca or CertificateAuthority(directory / "ca")
        pair = self.ca.issue(f"server-{host}", host, server_hosts=HOSTS)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(pair.cert, pair.key)
        self.state = _State()
        self._httpd = _Server((host, 0), _Handler)
        self._httpd.state = self.state
        # The handshake happens in the request's thread: a stuck client blocks no one.
        self._httpd.socket = ctx.wrap_socket(
            self._httpd.socket, server_side=True, do_handshake_on_connect=False
        )
        self.host, self.port = host, self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def routes(self) -> dict[str, Route]:
        return self.state.routes

    @property
    def hits(self) -> Counter[str]:
        return self.state.hits

    def url(self, path: str, host: str | None = None) -> str:
        return f"https://{host or self.host}:{self.port}{path}"

    def __enter__(self) -> FileServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.state.stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(10)
