"""An apiserver connection that accepts and never answers (a hung proxy, a stopped
apiserver) must not hang the operator's request for good: every request is bounded."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from edgeplane.kube import auth
from edgeplane.kube.client import Kube


@pytest.fixture
def black_hole() -> Iterator[int]:
    """A port whose connections are accepted by the kernel (the backlog) and never read."""
    with socket.create_server(("127.0.0.1", 0), backlog=128) as server:
        yield server.getsockname()[1]


async def test_a_request_to_an_apiserver_that_never_answers_ends(
    black_hole: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "kubeconfig"
    config.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "hole",
        "clusters": [{"name": "hole", "cluster": {"server": f"http://127.0.0.1:{black_hole}"}}],
        "users": [{"name": "hole", "user": {"token": "not-a-secret"}}],
        "contexts": [{"name": "hole", "context": {"cluster": "hole", "user": "hole"}}],
    }))
    monkeypatch.setenv("KUBECONFIG", str(config))
    monkeypatch.setattr(auth, "API_REQUEST_TIMEOUT", 2.0)
    api = await auth.async_api_client()
    try:
        started = time.monotonic()
        # Without the bound this waits forever; the outer wait only keeps the test short.
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(Kube(api).get("workers", "default", "w"), 30)
        assert time.monotonic() - started < 10
    finally:
        await api.close()
