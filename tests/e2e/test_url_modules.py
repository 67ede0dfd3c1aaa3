"""A Worker whose module comes from an https URL, end to end: the operator downloads it
from a real server with its own CA and every location serves it; a URL that redirects to
a refused address stalls the Worker with a condition naming the field and the address."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edgeplane.localstack.stack import Stack
from tests.e2e.conftest import Kube, eventually, fetch, responder, route
from tests.url_server import FileServer, Route

pytestmark = pytest.mark.integration


@pytest.fixture
def files(stack: Stack, kube: Kube, tmp_path: Path) -> Iterator[FileServer]:
    """A file server on 127.0.0.1, and the operator restarted trusting its CA and allowing
    that one address (every other non-public address stays refused); restored after."""
    op = stack.operator
    assert op is not None
    shared = op.extra_args
    with FileServer(tmp_path) as server:
        op.stop()
        op.extra_args = (
            *shared,
            "--url-ca-bundle", str(server.ca.pair.cert), "--url-allow-network", "127.0.0.1/32",
        )
        try:
            op.start()
            yield server
        finally:
            op.stop()
            op.extra_args = shared
            op.start()


def url_worker(name: str, url: str, body: bytes) -> dict[str, Any]:
    module = {"name": "index.js", "url": url, "sha256": hashlib.sha256(body).hexdigest()}
    return {
        "apiVersion": "edgeplane.io/v1alpha1",
        "kind": "Worker",
        "metadata": {"name": name},
        "spec": {"compatibilityDate": "2025-01-01", "modules": [module]},
    }


def test_a_url_module_deploys_and_a_refused_redirect_names_the_field(
    stack: Stack, kube: Kube, files: FileServer
) -> None:
    host = f"fetched.{kube.namespace}.example.com"
    # Over a megabyte: the body arrives in many chunks and must be read to its end.
    body = (responder('"from a url"') + "// " + "padding " * 200_000 + "\n").encode()
    files.routes["/fetched.js"] = Route(body)
    kube.apply(url_worker("fetched", files.url("/fetched.js"), body),
               route("fetched", f"{host}/*", "fetched"))
    kube.wait_ready("fetched", timeout=90)
    eventually(lambda: [fetch(a, host) for a in stack.agents] == [(200, "from a url")] * 3)

    metadata = "https://169.254.169.254/latest/meta-data/"
    files.routes["/moved.js"] = Route(status=302, headers=(("Location", metadata),))
    # Another sha256: one already downloaded would come from the cache, whatever its URL.
    other = responder('"never served"').encode()
    kube.apply(url_worker("misled", files.url("/moved.js?token=s3cret"), other))

    def stalled() -> dict[str, Any] | None:
        cond = kube.condition("worker", "misled", "Stalled")
        return cond if cond and cond["status"] == "True" else None

    cond = eventually(stalled, timeout=90)
    assert cond["reason"] == "SourceNotFound"
    assert cond["message"].startswith(
        f"spec.modules[0].url (index.js): {files.url('/moved.js')} redirected to {metadata}, "
        "not followed: 169.254.169.254, a link-local address, is refused;"
    ), cond["message"]
    assert "s3cret" not in cond["message"]
    assert files.hits["/fetched.js"] == 1  # downloaded once, then from the cache
