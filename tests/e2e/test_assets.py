"""Static assets end to end (issue #16's Done-when): a single-page app from a ConfigMap,
served at three locations by workerd's AssetsService: `/` (index.html), a deep link (the
SPA fallback, 200), `/logo.png` (image/png, the same ETag everywhere, 304 on If-None-Match),
an API path the Worker answers (`runWorkerFirst`), and the Worker calling `env.ASSETS`.
A changed file is a new version that sends each location that one file."""

from __future__ import annotations

import base64
import hashlib
import io
import tarfile
import urllib.error
import urllib.request
from typing import Any

import pytest

from edgeplane.localstack.stack import Agent, Stack
from tests.e2e.conftest import Kube, eventually, metric, route
from tests.e2e.test_url_modules import files  # noqa: F401 (a file server the operator trusts)
from tests.url_server import FileServer
from tests.url_server import Route as FileRoute

pytestmark = pytest.mark.integration

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(64))
INDEX = "<!doctype html><title>spa</title><div id=app></div>"
SCRIPT = """
export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    if (url.pathname === "/api/logo") return env.ASSETS.fetch(new URL("/logo.png", url));
    return Response.json({ api: url.pathname });
  },
};
"""


def site(main_js: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "spa-site"},
        "data": {"index": INDEX, "main": main_js},
        "binaryData": {"logo": base64.b64encode(PNG).decode()},
    }


SPA = {
    "apiVersion": "edgeplane.io/v1alpha1",
    "kind": "Worker",
    "metadata": {"name": "spa"},
    "spec": {
        "compatibilityDate": "2025-01-01",
        "modules": [{"name": "index.js", "inline": SCRIPT}],
        "assets": {
            "configMap": {
                "name": "spa-site",
                "items": [
                    {"key": "index", "path": "index.html"},
                    {"key": "logo", "path": "logo.png"},
                    {"key": "main", "path": "app/main.js"},
                ],
            },
            "notFoundHandling": "single-page-application",
            "runWorkerFirst": ["/api/*"],
            "binding": "ASSETS",
        },
    },
}


def get(agent: Agent, host: str, path: str, **headers: str) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(agent.http_url + path, headers={"Host": host, **headers})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()
    except OSError:
        return 0, {}, b""


def stored(agent: Agent) -> float:
    return metric(agent.api_url + "/metrics", "edgeplane_agent_blobs_received_total",
                  agent.token, result="stored")


def test_a_single_page_app_with_assets(stack: Stack, kube: Kube) -> None:
    host = f"spa.{kube.namespace}.example.com"
    before = [stored(a) for a in stack.agents]
    kube.apply(site("console.log(1)"), SPA, route("spa", f"{host}/*", "spa"))
    kube.wait_ready("spa", timeout=120)

    def index_everywhere() -> bool:
        return all(get(a, host, "/", accept="text/html")[2] == INDEX.encode()
                   for a in stack.agents)

    eventually(index_everywhere, 90)
    etags = set()
    for a in stack.agents:
        status, headers, body = get(a, host, "/", accept="text/html")
        assert status == 200 and headers["content-type"].startswith("text/html")
        assert get(a, host, "/app/deep/link", accept="text/html")[::2] == (200, INDEX.encode())
        status, headers, body = get(a, host, "/logo.png")
        assert (status, headers["content-type"], body) == (200, "image/png", PNG)
        etags.add(headers["etag"])
        assert get(a, host, "/logo.png", **{"if-none-match": headers["etag"]})[0] == 304
        status, _, body = get(a, host, "/api/users/7")
        assert (status, body) == (200, b'{"api":"/api/users/7"}')
        status, headers, body = get(a, host, "/api/logo")
        assert (status, headers["content-type"], body) == (200, "image/png", PNG)
    assert len(etags) == 1, etags  # the same validator at every location
    # Each location was sent the three files and the Worker's one module, once.
    assert [stored(a) - b for a, b in zip(stack.agents, before, strict=True)] == [4, 4, 4]

    # One file changed: a new version, and each location is sent that one file.
    first = kube.get("worker", "spa")["status"]["latestVersion"]  # type: ignore[index]
    kube.apply(site("console.log(2)"))
    eventually(lambda: kube.get("worker", "spa")["status"].get("readyVersion")  # type: ignore[index]
               not in (None, first), 120)
    eventually(lambda: all(get(a, host, "/app/main.js")[2] == b"console.log(2)"
                           for a in stack.agents), 90)
    assert [stored(a) - b for a, b in zip(stack.agents, before, strict=True)] == [5, 5, 5]
    assert get(stack.agents[0], host, "/logo.png")[1]["etag"] in etags  # unchanged file

    # A rollback after an operator restart: the version is rebuilt from its archive, whose
    # files come back with it (the operator's memory of them went with the restart).
    op = stack.operator
    assert op is not None
    op.stop()
    op.start()
    pinned = {**SPA, "spec": {**SPA["spec"], "version": first}}
    kube.apply(pinned)
    eventually(lambda: all(get(a, host, "/app/main.js")[2] == b"console.log(1)"
                           for a in stack.agents), 120)
    status = kube.wait_ready("spa", timeout=120)["status"]
    assert status["readyVersion"] == first


def test_assets_from_an_archive_pinned_by_sha256(
    stack: Stack, kube: Kube, files: FileServer  # noqa: F811 (the fixture)
) -> None:
    """The site as a tar.gz at an https URL: downloaded by the operator (its `--url-*`
    policy), checked against its sha256, untarred and served at every location."""
    # Files of their own: the same bytes as the other test's would be blobs the locations
    # hold already, whichever test runs first (content-addressed across Workers).
    index, png = INDEX.encode() + b"<!-- tgz -->", PNG + b"tgz"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, content in (("./index.html", index), ("./img/logo.png", png)):
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    archive = buf.getvalue()
    files.routes["/site.tgz"] = FileRoute(archive)
    host = f"tgz.{kube.namespace}.example.com"
    spec = {"archive": {"url": files.url("/site.tgz"),
                        "sha256": hashlib.sha256(archive).hexdigest()},
            "notFoundHandling": "single-page-application"}
    # And a module of its own, for the same reason.
    modules = [{"name": "index.js", "inline": SCRIPT + "// tgz\n"}]
    w = {**SPA, "metadata": {"name": "tgz"},
         "spec": {**SPA["spec"], "modules": modules, "assets": spec}}
    kube.apply(w, route("tgz", f"{host}/*", "tgz"))
    kube.wait_ready("tgz", timeout=120)
    eventually(lambda: all(get(a, host, "/img/logo.png")[2] == png for a in stack.agents), 90)
    for a in stack.agents:
        # A browser navigation (with a Worker present, other requests for a missing path go
        # to the Worker, as on Cloudflare).
        nav = {"accept": "text/html", "sec-fetch-mode": "navigate"}
        assert get(a, host, "/deep/link", **nav)[::2] == (200, index)
        assert get(a, host, "/deep/link")[2] == b'{"api":"/deep/link"}'
