"""The shared request load (edgeplane.localstack.traffic.Load) keeps going and records a
failure when an answer is cut short, as a SIGKILLed workerd cuts it: a client thread that
died there would stop the load unnoticed and hide the failures after it."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass

import pytest

from edgeplane.localstack.traffic import Load

pytestmark = pytest.mark.integration


@dataclass
class CutShort:
    """A socket that promises 9 bytes of body and closes after sending none."""

    name: str = "cut-short"
    http_url: str = ""

    def __post_init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.http_url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.recv(4096)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n")


def test_an_answer_cut_short_is_a_failure_and_the_load_goes_on() -> None:
    server = CutShort()
    load = Load(server, "x.test", threads=2)
    try:
        time.sleep(1)
        assert load.running()
    finally:
        answers = load.stop()
        server.sock.close()
    assert len(answers) > 4
    assert all(a.status == 0 and a.body.startswith("IncompleteRead") for a in answers), answers[:3]
