"""Clients of the local stack shared by the end-to-end tests and bench/: request load on a
location's public socket, and waiting until a condition holds."""

from __future__ import annotations

import http.client
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any, NamedTuple, Protocol, TypeVar

T = TypeVar("T")


class Location(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def http_url(self) -> str: ...


class Answer(NamedTuple):
    status: int  # 0: nothing answered (body holds the error)
    body: str
    seconds: float
    started: float  # time.monotonic() when the request was sent


class Load:
    """Threads requesting `host` at one location, without pause, until stopped."""

    def __init__(self, agent: Location, host: str, threads: int = 3) -> None:
        self.agent, self.host = agent, host
        self.answers: list[Answer] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]
        for t in self._threads:
            t.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            req = urllib.request.Request(self.agent.http_url + "/", headers={"Host": self.host})
            try:
                try:
                    with urllib.request.urlopen(req, timeout=30) as resp:
                        status, body = resp.status, resp.read().decode()
                except urllib.error.HTTPError as e:
                    status, body = e.code, e.read().decode()
            except (OSError, http.client.HTTPException) as e:
                # A body cut short (IncompleteRead) is no OSError: without this the thread
                # would die and the load stop unnoticed.
                status, body = 0, f"{type(e).__name__}: {e}"
            self.answers.append(Answer(status, body, time.monotonic() - started, started))

    def running(self) -> bool:
        """Every thread still sends requests (none died of an unexpected error)."""
        return all(t.is_alive() for t in self._threads)

    def stop(self) -> list[Answer]:
        self._stop.set()
        for t in self._threads:
            t.join(60)
        return self.answers

    def failed(self) -> list[tuple[int, str]]:
        return [(a.status, a.body) for a in self.answers if a.status != 200]


def eventually(fn: Callable[[], T | None], timeout: float = 60, interval: float = 0.2) -> T:
    """fn's first truthy result; fails with the last result seen after `timeout`."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = fn()
        except AssertionError as e:
            last = e
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"not true within {timeout}s; last: {last!r}")
