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
from tests.e2e.conftest import Kube, eventually, fetch, responder, route, worker
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


def big_worker(name: str, label: str, url: str, blob: bytes, **spec: Any) -> dict[str, Any]:
    """A Worker answering `label` and the size of its data module, downloaded from `url`."""
    js = 'import blob from "blob.bin";\n' + responder(f'"{label} " + blob.byteLength')
    data = {**url_worker(name, url, blob)["spec"]["modules"][0], "name": "blob.bin"}
    obj = worker(name, js, **spec)
    obj["spec"]["modules"].append({**data, "type": "data"})
    return obj


def test_a_worker_near_the_size_limit_rolls_out_progressively(
    stack: Stack, kube: Kube, files: FileServer
) -> None:
    """60 MB of data module (Cloudflare allows 64 MB, 10 MB gzipped; it travels as 80 MB
    of base64): v1 everywhere, then v2 Progressive, a location at a time, each carrying
    both versions while it moves. Before, the agent took 16 MiB: v1 itself was refused."""
    name, host = "huge", f"huge.{kube.namespace}.example.com"
    size = 60 * 1000 * 1000
    blobs = {v: v.encode() + b"-" * (size - 2) for v in ("v1", "v2")}
    for v, blob in blobs.items():
        files.routes[f"/{v}.bin"] = Route(blob)
    kube.apply(big_worker(name, "v1", files.url("/v1.bin"), blobs["v1"]),
               route(name, f"{host}/*", name))
    kube.wait_ready(name, timeout=240)
    everywhere = [(200, f"v1 {size}")] * 3
    eventually(lambda: [fetch(a, host) for a in stack.agents] == everywhere, timeout=60)
    steps = [{"count": 1, "holdSeconds": 1}, {"count": 1, "holdSeconds": 1}]
    rollout = {"strategy": "Progressive", "steps": steps}
    kube.apply(big_worker(name, "v2", files.url("/v2.bin"), blobs["v2"], rollout=rollout))

    def complete() -> dict[str, Any] | None:
        status = (kube.get("worker", name) or {}).get("status") or {}
        phase = (status.get("rollout") or {}).get("phase")
        assert phase != "RolledBack", status
        return status if phase == "Complete" else None

    status = eventually(complete, timeout=300, interval=1)
    assert status["readyVersion"] == status["latestVersion"]
    everywhere = [(200, f"v2 {size}")] * 3
    eventually(lambda: [fetch(a, host) for a in stack.agents] == everywhere, timeout=60)


def test_a_worker_a_rollout_could_not_push_is_refused_before_it_starts(
    stack: Stack, kube: Kube, files: FileServer
) -> None:
    """A legal Worker (30 MB of text, a few KB gzipped) whose JSON form is six times that
    (each control character travels as \\u00XX): a rollout's two versions are over every
    location's limit, so the operator says so at once, naming the sizes and a location,
    rather than pushing it to be refused."""
    name = "escaped"
    text = b"\x01" * (30 * 1000 * 1000)
    files.routes["/escaped.txt"] = Route(text)
    obj = url_worker(name, files.url("/escaped.txt"), text)
    obj["spec"]["modules"] = [
        {"name": "index.js", "inline": responder('"never served"')},
        {**obj["spec"]["modules"][0], "name": "blob.txt", "type": "text"},
    ]
    kube.apply(obj)

    def stalled() -> dict[str, Any] | None:
        cond = kube.condition("worker", name, "Stalled")
        return cond if cond and cond["status"] == "True" else None

    cond = eventually(stalled, timeout=180, interval=1)
    assert cond["reason"] == "ScriptTooLarge", cond
    assert cond["message"].startswith("spec.modules: a rollout pushes 2 versions at once"), cond
    assert "over the" in cond["message"] and "EdgeTarget edge-" in cond["message"], cond
