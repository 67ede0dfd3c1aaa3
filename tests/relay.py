"""A TCP relay for fault tests: 127.0.0.1:<port> to an upstream address. `freeze()` makes
every connection open at that moment stop forwarding in both directions without closing
(what a dropped NAT entry or a hung proxy does to a long-lived watch); connections made
afterwards are relayed as usual."""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass, field


@dataclass
class _Pair:
    client: socket.socket
    upstream: socket.socket
    frozen: threading.Event = field(default_factory=threading.Event)


class Relay:
    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.server.getsockname()[1]
        self.pairs: list[_Pair] = []
        self.closed = threading.Event()
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def freeze(self) -> int:
        """Freeze the connections open now; returns how many."""
        with self._lock:
            for p in self.pairs:
                p.frozen.set()
            return len(self.pairs)

    def close(self) -> None:
        self.closed.set()
        self.server.close()
        with self._lock:
            for p in self.pairs:
                for s in (p.client, p.upstream):
                    s.close()

    def _accept(self) -> None:
        while not self.closed.is_set():
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.upstream, timeout=10)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            pair = _Pair(client, upstream)
            with self._lock:
                self.pairs.append(pair)
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(pair, src, dst), daemon=True).start()

    def _pump(self, pair: _Pair, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                # Frozen: hold what was read and read no more, closing nothing.
                while pair.frozen.is_set() and not self.closed.is_set():
                    self.closed.wait(1)
                if self.closed.is_set():
                    return
                if not data:
                    dst.shutdown(socket.SHUT_WR)
                    return
                dst.sendall(data)
        except OSError:
            for s in (src, dst):
                s.close()
