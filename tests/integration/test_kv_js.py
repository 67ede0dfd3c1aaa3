"""KV for Workers loaded on demand (`edgeplane.edge.kv_js`), in real workerd, no mocks.

Two processes, as at a location: a front workerd holding the data (`kv.js`: one SQLite-backed
Durable Object per namespace, on local disk) and a cell workerd whose host loads a tenant
Worker with the `workerLoader` binding and hands it `ctx.exports.Kv({props: {namespace}})`
(`kvclient.js`), which reaches the front through an `external` service.

The tenant Worker here runs a list of operations that the test posts, e.g.
`[["put", "k", "v"], ["get", "k", "json"]]`, and answers each one's result (`{"ok": ...}`) or
error (`{"error": message}`). Values JSON cannot carry are tagged: `{"$bytes": base64}` is an
ArrayBuffer, `{"$view": base64}` a Uint8Array in the middle of a larger buffer, `{"$stream":
[texts], "fail"?: message}` a ReadableStream of those chunks (then an error), `{"$big": n,
"as": "string" | "buffer" | "stream"}` n bytes, `{"$now": s}` the tenant's clock plus s
seconds. A result ArrayBuffer comes back as `{"$arrayBuffer": base64}`, a ReadableStream as
`{"$stream": its text}` (either as `{"$length": n, "$sha256": base64}` when large).
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import hashlib
import http.client
import json
import os
import select
import signal
import socket
import sqlite3
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from edgeplane.edge.kv_js import KV_CLIENT_JS, KV_JS

pytestmark = pytest.mark.integration

COMPAT_DATE = "2025-06-01"
MIB = 1024 * 1024

FRONT_MAIN = """
import { kvRequest } from "./kv.js";
export { KvShard } from "./kv.js";
export default {
  fetch(request, env) {
    if (new URL(request.url).pathname === "/kv") return kvRequest(request, env);
    return new Response("no such path", { status: 404 });
  },
};
"""

# The cell host: the namespace is the host's choice (here from a header only the test sends to
# the host); the tenant gets nothing but the binding.
CELL_MAIN = f"""
import {{ Kv }} from "./kvclient.js";
export {{ Kv }};
export default {{
  async fetch(request, env, ctx) {{
    const namespace = request.headers.get("x-test-namespace");
    const worker = env.LOADER.get(`tenant:${{namespace}}`, async () => ({{
      compatibilityDate: "{COMPAT_DATE}",
      mainModule: "tenant.js",
      modules: {{ "tenant.js": env.TENANT }},
      env: {{ KV: ctx.exports.Kv({{ props: {{ namespace }} }}) }},
    }}));
    return worker.getEntrypoint().fetch(request);
  }},
}};
"""

TENANT = r"""
const enc = new TextEncoder();
const b64 = (bytes) =>
  btoa(Array.from(new Uint8Array(bytes), (b) => String.fromCharCode(b)).join(""));
const unb64 = (s) => Uint8Array.from(atob(s), (c) => c.charCodeAt(0));
// The chunks, then the end or (given `fail`) an error.
function streamOf(chunks, fail) {
  return new ReadableStream({
    async pull(c) {
      if (chunks.length > 0) {
        const x = chunks.shift();
        c.enqueue(typeof x === "string" ? enc.encode(x) : x);
      } else if (fail !== undefined) {
        c.error(new Error(fail));
      } else {
        c.close();
      }
    },
  });
}
// n bytes: byte i is i % 251 (so that misplaced chunks show), "x" for a string.
function big(n, as) {
  if (as === "string") return "x".repeat(n);
  const bytes = Uint8Array.from({ length: n }, (_, i) => i % 251);
  if (as === "buffer") return bytes.buffer;
  const chunks = [];
  for (let at = 0; at < n; at += 1 << 20) chunks.push(bytes.subarray(at, at + (1 << 20)));
  return streamOf(chunks);
}
async function large(bytes) {
  const sha = await crypto.subtle.digest("SHA-256", bytes);
  return { $length: bytes.byteLength, $sha256: b64(sha) };
}
function revive(v) {
  if (Array.isArray(v)) return v.map(revive);
  if (v === null || typeof v !== "object") return v;
  if ("$bytes" in v) return unb64(v.$bytes).buffer;
  if ("$view" in v) {
    const b = unb64(v.$view);
    const whole = new Uint8Array(b.length + 2).fill(0xee);
    whole.set(b, 1);
    return whole.subarray(1, 1 + b.length);
  }
  if ("$stream" in v) return streamOf(v.$stream, v.fail);
  if ("$big" in v) return big(v.$big, v.as);
  if ("$now" in v) return Math.floor(Date.now() / 1000) + v.$now;
  return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, revive(x)]));
}
async function show(v) {
  if (v instanceof ArrayBuffer) return v.byteLength > 4096 ? large(v) : { $arrayBuffer: b64(v) };
  if (v instanceof ReadableStream) {
    const bytes = await new Response(v).arrayBuffer();
    if (bytes.byteLength > 4096) return large(bytes);
    return { $stream: new TextDecoder().decode(bytes) };
  }
  if (Array.isArray(v)) return Promise.all(v.map(show));
  if (v === null || typeof v !== "object") return v;
  const out = {};
  for (const [k, x] of Object.entries(v)) out[k] = await show(x);
  return out;
}
// Runner-level operations, beside the binding's own methods.
const RUNNER = {
  // Every page of a listing, following cursors: [{names, list_complete, cursor: bool}].
  async pages(env, options) {
    const pages = [];
    let cursor;
    do {
      const page = await env.KV.list({ ...options, cursor });
      pages.push({ names: page.keys.map((k) => k.name), list_complete: page.list_complete,
                   cursor: page.cursor !== undefined });
      cursor = page.cursor;
    } while (cursor !== undefined && pages.length < 100);
    return pages;
  },
  // n keys `${prefix}0000`... at once.
  async fill(env, prefix, n) {
    const keys = Array.from({ length: n }, (_, i) => prefix + String(i).padStart(4, "0"));
    await Promise.all(keys.map((k) => env.KV.put(k, "v")));
    return n;
  },
  // What a fetch of its own to `url` (the front's socket) gets.
  async reach(env, url) {
    try {
      const r = await fetch(url, { method: "POST", headers: { "kv-op": "list",
        "kv-namespace": "someone-else", "kv-limit": "10" } });
      return { status: r.status, body: await r.text() };
    } catch (e) {
      return { thrown: e.message };
    }
  },
  async envKeys(env) {
    return Object.keys(env);
  },
};
export default {
  async fetch(request, env) {
    const out = [];
    for (const [name, ...args] of await request.json()) {
      try {
        const result = name in RUNNER
          ? await RUNNER[name](env, ...args)
          : await env.KV[name](...revive(args));
        out.push({ ok: await show(result === undefined ? null : result) });
      } catch (e) {
        out.push({ error: String(e.message) });
      }
    }
    return Response.json(out);
  },
};
"""


def _config(tmp: Path, front_addr: str | None) -> None:
    """front.capnp and, once the front's address is known, cell.capnp in `tmp`."""
    for name, src in {
        "front.js": FRONT_MAIN,
        "kv.js": KV_JS,
        "cell.js": CELL_MAIN,
        "kvclient.js": KV_CLIENT_JS,
        "tenant.js": TENANT,
    }.items():
        (tmp / name).write_text(src)
    (tmp / "kv-data").mkdir(exist_ok=True)
    head = 'using Workerd = import "/workerd/workerd.capnp";\nconst config :Workerd.Config = '
    (tmp / "front.capnp").write_text(
        head
        + f"""(
  services = [
    (name = "front", worker = (
      modules = [(name = "front.js", esModule = embed "front.js"),
                 (name = "kv.js", esModule = embed "kv.js")],
      compatibilityDate = "{COMPAT_DATE}",
      durableObjectNamespaces = [
        (className = "KvShard", uniqueKey = "edgeplane-kv", enableSql = true)],
      durableObjectStorage = (localDisk = "kv-disk"),
      bindings = [(name = "KV_SHARDS", durableObjectNamespace = "KvShard")])),
    (name = "kv-disk", disk = (path = "{tmp / "kv-data"}", writable = true)),
  ],
  sockets = [(name = "internal", address = "127.0.0.1:0", http = (), service = "front")],
);
"""
    )
    if front_addr is None:
        return
    (tmp / "cell.capnp").write_text(
        head
        + f"""(
  services = [
    (name = "cell", worker = (
      modules = [(name = "cell.js", esModule = embed "cell.js"),
                 (name = "kvclient.js", esModule = embed "kvclient.js")],
      compatibilityDate = "{COMPAT_DATE}",
      compatibilityFlags = ["enable_ctx_exports"],
      bindings = [(name = "LOADER", workerLoader = ()),
                  (name = "FRONT", service = "front"),
                  (name = "TENANT", text = embed "tenant.js")])),
    (name = "front", external = (address = "{front_addr}", http = ())),
  ],
  sockets = [(name = "http", address = "127.0.0.1:0", http = (), service = "cell")],
);
"""
    )


@dataclass
class Workerd:
    proc: subprocess.Popen[bytes]
    ctl: int
    log: Path
    ports: dict[str, int] = field(default_factory=dict)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        with contextlib.suppress(OSError):
            os.close(self.ctl)


def _listening(w: Workerd, sockets: set[str], timeout: float) -> None:
    """Read the control fd until every socket in `sockets` has said it listens."""
    deadline, buf = time.monotonic() + timeout, b""
    while set(w.ports) < sockets:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([w.ctl], [], [], left)[0]:
            raise TimeoutError(f"workerd did not listen: {w.log.read_text()}")
        chunk = os.read(w.ctl, 65536)
        if not chunk:
            raise RuntimeError(f"workerd exited: {w.log.read_text()}")
        buf += chunk
        *lines, buf = buf.split(b"\n")
        for line in lines:
            with contextlib.suppress(ValueError):
                ev = json.loads(line)
                if ev.get("event") == "listen":
                    w.ports[ev["socket"]] = ev["port"]


def _die_with_parent() -> None:
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def start(workerd: Path, config: Path, name: str, addr: str | None = None) -> Workerd:
    """`workerd serve` on `config`; returns once socket `name` listens (on `addr` if given)."""
    rfd, wfd = os.pipe()
    args = [str(workerd), "serve", "--experimental", str(config), "--control-fd", str(wfd)]
    if addr is not None:
        args += ["--socket-addr", f"{name}={addr}"]
    log = config.with_suffix(f".{time.time_ns()}.log")
    with log.open("wb") as out:
        proc = subprocess.Popen(
            args,
            pass_fds=[wfd],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            preexec_fn=_die_with_parent,
        )
    os.close(wfd)
    w = Workerd(proc, rfd, log)
    try:
        _listening(w, {name}, 30)
    except BaseException:
        w.kill()
        raise
    return w


@dataclass
class Location:
    """A front and a cell, started from configs in `dir`."""

    workerd: Path
    dir: Path
    front: Workerd | None = None
    cell: Workerd | None = None

    @property
    def front_addr(self) -> str:
        assert self.front is not None
        return f"127.0.0.1:{self.front.ports['internal']}"

    def start(self) -> None:
        _config(self.dir, None)
        self.front = start(self.workerd, self.dir / "front.capnp", "internal")
        _config(self.dir, self.front_addr)
        self.cell = start(self.workerd, self.dir / "cell.capnp", "http")

    def kill_front(self) -> str:
        """SIGKILL the front (no orderly shutdown); returns its address."""
        addr = self.front_addr
        assert self.front is not None
        self.front.kill()
        return addr

    def start_front(self, addr: str) -> None:
        """Start the front again, on the address it had."""
        self.front = start(self.workerd, self.dir / "front.capnp", "internal", addr)

    def stop(self) -> None:
        for w in (self.cell, self.front):
            if w is not None:
                w.kill()

    def run(self, namespace: str, *ops: list[Any]) -> list[dict[str, Any]]:
        """The tenant's results of `ops`, run in order in `namespace`."""
        assert self.cell is not None
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.cell.ports['http']}/",
            data=json.dumps(ops).encode(),
            headers={"x-test-namespace": namespace, "content-type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(req, timeout=120) as r:
            return json.loads(r.read())

    def raw(
        self, headers: dict[str, str], body: bytes = b"", method: str = "POST"
    ) -> tuple[int, str | None, str]:
        """A request straight to the front's internal socket: (status, kv-result, body)."""
        req = urllib.request.Request(
            f"http://{self.front_addr}/kv", data=body or None, headers=headers, method=method
        )
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return r.status, r.headers.get("kv-result"), r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.headers.get("kv-result"), e.read().decode()


def _location(workerd: Path, d: Path) -> Iterator[Location]:
    d.mkdir(parents=True, exist_ok=True)
    loc = Location(workerd, d)
    try:
        loc.start()
        yield loc
    finally:
        loc.stop()


@pytest.fixture(scope="module")
def location(workerd_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Location]:
    yield from _location(workerd_bin, tmp_path_factory.mktemp("kv"))


@pytest.fixture
def own_location(workerd_bin: Path, tmp_path: Path) -> Iterator[Location]:
    """A location of the test's own, for tests that restart its processes."""
    yield from _location(workerd_bin, tmp_path / "kv")


def ns() -> str:
    return f"t-{uuid.uuid4().hex[:8]}/kv-{uuid.uuid4().hex[:6]}"


def ok(v: Any) -> dict[str, Any]:
    return {"ok": v}


@dataclass(frozen=True)
class Err:
    """An error whose message holds every one of `parts`."""

    parts: tuple[str, ...]

    def __init__(self, *parts: str) -> None:
        object.__setattr__(self, "parts", parts)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def check(results: list[dict[str, Any]], expected: list[Any]) -> None:
    assert len(results) == len(expected)
    for i, (got, want) in enumerate(zip(results, expected, strict=True)):
        if isinstance(want, Err):
            assert "error" in got, f"op {i}: expected an error with {want.parts}, got {got}"
            for part in want.parts:
                assert part in got["error"], f"op {i}: {part!r} not in {got['error']!r}"
        else:
            assert got == want, f"op {i}"


def pattern(n: int) -> bytes:
    """The tenant's `{"$big": n}` bytes: byte i is i % 251."""
    return (bytes(range(251)) * (n // 251 + 1))[:n]


def large(data: bytes) -> dict[str, Any]:
    return {"$length": len(data), "$sha256": b64(hashlib.sha256(data).digest())}


def listed(*names: str, complete: bool = True) -> dict[str, Any]:
    return ok(
        {"keys": [{"name": n} for n in names], "list_complete": complete, "cacheStatus": None}
    )


NONE = ok(None)
MISSING = ok({"value": None, "metadata": None, "cacheStatus": None})
BYTES = bytes(range(256))
BIG = 3 * MIB + 5  # four chunks in the shard, the last one short

# (id, ops, expected results): each case runs in a namespace of its own.
ROUND_TRIPS = [
    (
        "text",
        [["put", "k", "hello"], ["get", "k"], ["get", "k", "text"], ["get", "k", {"type": "text"}]],
        [NONE, ok("hello"), ok("hello"), ok("hello")],
    ),
    (
        "json",
        [
            ["put", "j", '{"a": [1, 2], "b": null}'],
            ["get", "j", "json"],
            ["get", "j", {"type": "json"}],
        ],
        [NONE, ok({"a": [1, 2], "b": None}), ok({"a": [1, 2], "b": None})],
    ),
    (
        "arrayBuffer",
        [
            ["put", "b", {"$bytes": b64(BYTES)}],
            ["get", "b", "arrayBuffer"],
            ["get", "b", {"type": "arrayBuffer"}],
        ],
        [NONE, ok({"$arrayBuffer": b64(BYTES)}), ok({"$arrayBuffer": b64(BYTES)})],
    ),
    (
        "a view stores only its own bytes",
        [["put", "v", {"$view": b64(b"abc")}], ["get", "v", "arrayBuffer"]],
        [NONE, ok({"$arrayBuffer": b64(b"abc")})],
    ),
    (
        "stream in, stream and text out",
        [["put", "s", {"$stream": ["ab", "", "cd"]}], ["get", "s", "stream"], ["get", "s"]],
        [NONE, ok({"$stream": "abcd"}), ok("abcd")],
    ),
    (
        "text is UTF-8 in every type",
        [["put", "t", "héllo 🙂"], ["get", "t", {"type": "stream"}], ["get", "t", "arrayBuffer"]],
        [NONE, ok({"$stream": "héllo 🙂"}), ok({"$arrayBuffer": b64("héllo 🙂".encode())})],
    ),
    (
        "empty value",
        [["put", "e", ""], ["get", "e"], ["get", "e", "stream"], ["get", "e", "arrayBuffer"]],
        [NONE, ok(""), ok({"$stream": ""}), ok({"$arrayBuffer": ""})],
    ),
    (
        "a value of several chunks, in order",
        [
            ["put", "big", {"$big": BIG, "as": "buffer"}],
            ["get", "big", "arrayBuffer"],
            ["get", "big", "stream"],
            ["put", "big2", {"$big": BIG, "as": "stream"}],
            ["get", "big2", "arrayBuffer"],
        ],
        [NONE, ok(large(pattern(BIG))), ok(large(pattern(BIG))), NONE, ok(large(pattern(BIG)))],
    ),
    (
        "a stream that fails stores nothing",
        [
            ["put", "f", "old"],
            ["put", "f", {"$stream": ["abc", "def"], "fail": "boom"}],
            ["get", "f"],
        ],
        [NONE, Err("ReadableStream"), ok("old")],
    ),
    (
        "unicode key, and a NUL in one",
        [
            ["put", "ключ/🙂", "значение"],
            ["put", "a\x00b", "nul"],
            ["put", "a", "plain"],
            ["get", "ключ/🙂"],
            ["get", "a\x00b"],
            ["get", "a"],
            ["list"],
            ["list", {"prefix": "a\x00"}],
        ],
        [
            *[NONE] * 3,
            ok("значение"),
            ok("nul"),
            ok("plain"),
            listed("a", "a\x00b", "ключ/🙂"),
            listed("a\x00b"),
        ],
    ),
    (
        "overwrite",
        [["put", "o", "1"], ["put", "o", {"$bytes": b64(b"2")}], ["get", "o"]],
        [NONE, NONE, ok("2")],
    ),
    (
        "missing key",
        [
            ["get", "nope"],
            ["get", "nope", "stream"],
            ["getWithMetadata", "nope"],
            ["getWithMetadata", "nope", "json"],
        ],
        [NONE, NONE, MISSING, MISSING],
    ),
    (
        "delete",
        [["put", "d", "v"], ["delete", "d"], ["get", "d"], ["delete", "d"], ["list"]],
        [NONE, NONE, NONE, NONE, listed()],
    ),
]

METADATA = [
    (
        "metadata round trip",
        [
            ["put", "m", "v", {"metadata": {"a": 1, "b": ["x", None], "ö": "🙂"}}],
            ["getWithMetadata", "m"],
            ["getWithMetadata", "m", {"type": "arrayBuffer"}],
            ["get", "m"],
        ],
        [
            NONE,
            ok(
                {
                    "value": "v",
                    "metadata": {"a": 1, "b": ["x", None], "ö": "🙂"},
                    "cacheStatus": None,
                }
            ),
            ok(
                {
                    "value": {"$arrayBuffer": b64(b"v")},
                    "metadata": {"a": 1, "b": ["x", None], "ö": "🙂"},
                    "cacheStatus": None,
                }
            ),
            ok("v"),
        ],
    ),
    (
        "metadata of any JSON type, and in list",
        [
            ["put", "n", "1", {"metadata": 42}],
            ["put", "s", "2", {"metadata": "str"}],
            ["put", "z", "3"],
            ["list"],
        ],
        [
            NONE,
            NONE,
            NONE,
            ok(
                {
                    "keys": [
                        {"name": "n", "metadata": 42},
                        {"name": "s", "metadata": "str"},
                        {"name": "z"},
                    ],
                    "list_complete": True,
                    "cacheStatus": None,
                }
            ),
        ],
    ),
    (
        "a put without metadata clears it",
        [["put", "m", "1", {"metadata": {"a": 1}}], ["put", "m", "2"], ["getWithMetadata", "m"]],
        [NONE, NONE, ok({"value": "2", "metadata": None, "cacheStatus": None})],
    ),
    (
        "getWithMetadata json",
        [["put", "j", "[1]", {"metadata": {"t": "json"}}], ["getWithMetadata", "j", "json"]],
        [NONE, ok({"value": [1], "metadata": {"t": "json"}, "cacheStatus": None})],
    ),
]

UNSORTED = ["b", "a", "B", "é", "\uffff", "🙂", "a/b", "a0", "ab"]
TOP = "\U0010ffff"
LISTS = [
    (
        "keys in UTF-8 byte order (not UTF-16's)",
        [*(["put", k, "v"] for k in UNSORTED), ["list"]],
        [*(NONE for _ in UNSORTED), listed(*sorted(UNSORTED))],
    ),
    (
        "prefix",
        [
            *(["put", k, "v"] for k in ["a1", "a2", "ab", "b1", "a"]),
            ["list", {"prefix": "a"}],
            ["list", {"prefix": "a1"}],
            ["list", {"prefix": "c"}],
            ["list", {"prefix": ""}],
        ],
        [
            *(NONE for _ in range(5)),
            listed("a", "a1", "a2", "ab"),
            listed("a1"),
            listed(),
            listed("a", "a1", "a2", "ab", "b1"),
        ],
    ),
    (
        "prefix ending at the top of Unicode",
        [
            *(["put", k, "v"] for k in ["x", f"x{TOP}", f"x{TOP}z", "y", TOP, f"{TOP}{TOP}"]),
            ["list", {"prefix": f"x{TOP}"}],
            ["list", {"prefix": TOP}],
        ],
        [*(NONE for _ in range(6)), listed(f"x{TOP}", f"x{TOP}z"), listed(TOP, f"{TOP}{TOP}")],
    ),
    (
        "limit and cursor paging",
        [*(["put", f"k{i}", "v"] for i in range(5)), ["pages", {"limit": 2}]],
        [
            *(NONE for _ in range(5)),
            ok(
                [
                    {"names": ["k0", "k1"], "list_complete": False, "cursor": True},
                    {"names": ["k2", "k3"], "list_complete": False, "cursor": True},
                    {"names": ["k4"], "list_complete": True, "cursor": False},
                ]
            ),
        ],
    ),
    (
        "a page that ends the listing has no cursor",
        [["put", "a", "v"], ["put", "b", "v"], ["pages", {"limit": 2}], ["list", {"limit": 1}]],
        [
            NONE,
            NONE,
            ok([{"names": ["a", "b"], "list_complete": True, "cursor": False}]),
            ok(
                {
                    "keys": [{"name": "a"}],
                    "list_complete": False,
                    "cursor": "YQ==",
                    "cacheStatus": None,
                }
            ),
        ],
    ),
    (
        "paging within a prefix",
        [
            *(["put", k, "v"] for k in ["p1", "p2", "p3", "q1"]),
            ["pages", {"prefix": "p", "limit": 2}],
        ],
        [
            *(NONE for _ in range(4)),
            ok(
                [
                    {"names": ["p1", "p2"], "list_complete": False, "cursor": True},
                    {"names": ["p3"], "list_complete": True, "cursor": False},
                ]
            ),
        ],
    ),
    (
        "the default limit is 1000",
        [["fill", "f", 1001], ["pages", {}]],
        [
            ok(1001),
            ok(
                [
                    {
                        "names": [f"f{i:04}" for i in range(1000)],
                        "list_complete": False,
                        "cursor": True,
                    },
                    {"names": ["f1000"], "list_complete": True, "cursor": False},
                ]
            ),
        ],
    ),
]

VALUE_LIMIT = 25 * MIB
LIMITS = [
    ("empty key", [["put", "", "v"], ["get", ""]], [Err("must not be empty")] * 2),
    ("dot keys", [["put", ".", "v"], ["get", ".."], ["delete", "."]], [Err('"." or ".."')] * 3),
    ("key of 513 bytes", [["put", "a" * 513, "v"]], [Err("513 bytes", "limit of 512 bytes")]),
    ("key of 514 bytes in UTF-8", [["get", "é" * 257]], [Err("514 bytes", "limit of 512 bytes")]),
    (
        "keys of 512 bytes",
        [["put", "a" * 512, "1"], ["put", "é" * 256, "2"], ["get", "a" * 512], ["get", "é" * 256]],
        [NONE, NONE, ok("1"), ok("2")],
    ),
    ("lone surrogate key", [["put", "a\ud800", "v"]], [Err("lone surrogate")]),
    ("key not a string", [["get", 5], ["put", None, "v"]], [Err("must be a string")] * 2),
    (
        "value over 25 MiB",
        [
            ["put", "v", {"$big": VALUE_LIMIT + 1, "as": "string"}],
            ["put", "v", {"$big": VALUE_LIMIT + 1, "as": "buffer"}],
            ["put", "v", {"$big": VALUE_LIMIT + 1, "as": "stream"}],
            ["get", "v"],
        ],
        [*[Err("25 MiB", str(VALUE_LIMIT))] * 3, NONE],
    ),
    (
        "value of 25 MiB",
        [
            ["put", "v", {"$big": VALUE_LIMIT, "as": "stream"}],
            ["get", "v", "arrayBuffer"],
            ["put", "t", {"$big": VALUE_LIMIT, "as": "string"}],
            ["get", "t", "stream"],
        ],
        [NONE, ok(large(pattern(VALUE_LIMIT))), NONE, ok(large(b"x" * VALUE_LIMIT))],
    ),
    (
        "value of another type",
        [["put", "v", 5], ["put", "v", {"a": 1}]],
        [Err("must be a string, ArrayBuffer")] * 2,
    ),
    (
        "metadata over 1024 bytes serialized",
        [
            ["put", "m", "v", {"metadata": {"m": "x" * 1017}}],
            ["put", "m", "v", {"metadata": {"m": "é" * 509}}],
            ["get", "m"],
        ],
        [Err("1025 bytes", "limit of 1024 bytes"), Err("1026 bytes", "limit of 1024 bytes"), NONE],
    ),
    (
        "metadata of 1024 bytes",
        [["put", "m", "v", {"metadata": {"m": "é" * 508}}], ["getWithMetadata", "m"]],
        [NONE, ok({"value": "v", "metadata": {"m": "é" * 508}, "cacheStatus": None})],
    ),
    (
        "expirationTtl under 60",
        [
            ["put", "e", "v", {"expirationTtl": 59}],
            ["put", "e", "v", {"expirationTtl": 0}],
            ["put", "e", "v", {"expirationTtl": "soon"}],
            ["get", "e"],
        ],
        [
            Err("expirationTtl is 59 seconds", "minimum of 60"),
            Err("minimum of 60"),
            Err("number of seconds"),
            NONE,
        ],
    ),
    (
        "expiration not 60 seconds ahead",
        [
            ["put", "e", "v", {"expiration": {"$now": -10}}],
            ["put", "e", "v", {"expiration": {"$now": 30}}],
            ["put", "e", "v", {"expiration": -1}],
            ["get", "e"],
        ],
        [
            Err("in the past", "at least 60 seconds in the future"),
            Err("seconds from now", "at least 60 seconds in the future"),
            Err("number of seconds"),
            NONE,
        ],
    ),
    (
        "expiration and expirationTtl of 60 seconds",
        [
            ["put", "a", "v", {"expirationTtl": 60}],
            ["put", "b", "v", {"expiration": {"$now": 62}}],
            ["get", "a"],
            ["get", "b"],
        ],
        [NONE, NONE, ok("v"), ok("v")],
    ),
    (
        "list limit outside 1..1000",
        [["list", {"limit": 1001}], ["list", {"limit": 0}], ["list", {"limit": 1.5}]],
        [
            Err("list limit is 1001", "from 1 to 1000"),
            Err("list limit is 0"),
            Err("list limit is 1.5"),
        ],
    ),
    (
        "list cursor not from list()",
        [["list", {"cursor": "not a cursor!"}], ["list", {"cursor": "/w=="}]],
        [Err("cursor is not one that list() returned")] * 2,
    ),
    (
        "list prefix over 512 bytes",
        [["list", {"prefix": "p" * 513}]],
        [Err("list prefix is 513 bytes")],
    ),
    (
        "get type",
        [["get", "k", "blob"], ["getWithMetadata", "k", {"type": "xml"}]],
        [
            Err('type must be "text", "json", "arrayBuffer" or "stream", not "blob"'),
            Err('not "xml"'),
        ],
    ),
    (
        "cacheTtl under 60",
        [["get", "k", {"cacheTtl": 30}]],
        [Err("cacheTtl is 30 seconds", "minimum of 60")],
    ),
]

CASES = [
    pytest.param(ops, expected, id=f"{group}: {name}")
    for group, table in [
        ("round trip", ROUND_TRIPS),
        ("metadata", METADATA),
        ("list", LISTS),
        ("limit", LIMITS),
    ]
    for name, ops, expected in table
]


@pytest.mark.parametrize(("ops", "expected"), CASES)
def test_kv(location: Location, ops: list[list[Any]], expected: list[Any]) -> None:
    check(location.run(ns(), *ops), expected)


def q(text: str) -> str:
    return urllib.parse.quote(text, safe="")


# Requests straight to the front, as a cell that skipped its own checks would send them: the
# front enforces every limit itself. (headers, body, method) -> (status, message part).
FRONT_ALONE = [
    ({"kv-op": "get", "kv-key": "k"}, b"", "POST", 400, "names no namespace"),
    (
        {"kv-namespace": "n", "kv-op": "drop", "kv-key": "k"},
        b"",
        "POST",
        400,
        'op "drop" is unknown',
    ),
    ({"kv-namespace": "n", "kv-op": "get", "kv-key": "k"}, b"", "GET", 400, "POSTs"),
    ({"kv-namespace": "n", "kv-op": "get"}, b"", "POST", 400, "key must be a string"),
    ({"kv-namespace": "n", "kv-op": "get", "kv-key": "a" * 513}, b"", "POST", 400, "513 bytes"),
    ({"kv-namespace": "n", "kv-op": "delete", "kv-key": "."}, b"", "POST", 400, '"." or ".."'),
    (
        {"kv-namespace": "n", "kv-op": "get", "kv-key": "%E0%A4%A"},
        b"",
        "POST",
        400,
        "not URI-encoded",
    ),
    (
        {
            "kv-namespace": "n",
            "kv-op": "put",
            "kv-key": "k",
            "kv-metadata": q(json.dumps("x" * 1023)),
        },
        b"v",
        "POST",
        400,
        "1025 bytes serialized",
    ),
    (
        {"kv-namespace": "n", "kv-op": "put", "kv-key": "k", "kv-metadata": "%7B"},
        b"v",
        "POST",
        400,
        "not JSON",
    ),
    (
        {"kv-namespace": "n", "kv-op": "put", "kv-key": "k", "kv-expiration-ttl": "59"},
        b"v",
        "POST",
        400,
        "minimum of 60",
    ),
    (
        {"kv-namespace": "n", "kv-op": "put", "kv-key": "k", "kv-expiration": "1000"},
        b"v",
        "POST",
        400,
        "in the past",
    ),
    (
        {"kv-namespace": "n", "kv-op": "list", "kv-limit": "1001"},
        b"",
        "POST",
        400,
        "from 1 to 1000",
    ),
    (
        {"kv-namespace": "n", "kv-op": "list", "kv-cursor": "%2Fw%3D%3D"},
        b"",
        "POST",
        400,
        "cursor is not one",
    ),
    (
        {"kv-namespace": "n", "kv-op": "list", "kv-prefix": "p" * 513},
        b"",
        "POST",
        400,
        "prefix is 513 bytes",
    ),
]


@pytest.mark.parametrize(("headers", "body", "method", "status", "part"), FRONT_ALONE)
def test_front_refuses_alone(
    location: Location, headers: dict[str, str], body: bytes, method: str, status: int, part: str
) -> None:
    got_status, result, text = location.raw(headers, body, method)
    assert (got_status, result) == (status, "error") and part in text, text


def head_only(addr: str, headers: dict[str, str]) -> tuple[int, str | None, str]:
    """A request whose head is sent and whose body is not: the answer the front gives to the
    head alone (status, kv-result, body)."""
    host, port = addr.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        lines = "".join(f"{k}: {v}\r\n" for k, v in {"Host": "front", **headers}.items())
        sock.sendall(f"POST /kv HTTP/1.1\r\n{lines}\r\n".encode())
        resp = http.client.HTTPResponse(sock)
        resp.begin()
        return resp.status, resp.getheader("kv-result"), resp.read().decode()


PUT = {"kv-namespace": "n", "kv-op": "put", "kv-key": "k"}


@pytest.mark.parametrize(
    ("headers", "part"),
    [
        ({**PUT, "Content-Length": str(VALUE_LIMIT + 1)}, "limit of 25 MiB"),
        # A chunked body could be cut short and still end cleanly.
        ({**PUT, "Transfer-Encoding": "chunked"}, "needs a Content-Length"),
    ],
)
def test_front_refuses_a_put_by_its_head(
    location: Location, headers: dict[str, str], part: str
) -> None:
    status, result, text = head_only(location.front_addr, headers)
    assert (status, result) == (400, "error") and part in text, text
    check(location.run("n", ["get", "k"]), [NONE])


def test_namespaces_are_apart(location: Location) -> None:
    a, b = ns(), ns()
    check(location.run(a, ["put", "shared", "from a"], ["put", "only-a", "1"]), [NONE, NONE])
    check(location.run(b, ["put", "shared", "from b"]), [NONE])
    check(location.run(a, ["get", "shared"], ["list"]), [ok("from a"), listed("only-a", "shared")])
    check(
        location.run(b, ["get", "shared"], ["get", "only-a"], ["list"], ["delete", "shared"]),
        [ok("from b"), NONE, listed("shared"), NONE],
    )
    check(location.run(a, ["get", "shared"]), [ok("from a")])
    # Same keys, namespaces that differ only in their last character.
    c, d = "t-same/kv-1", "t-same/kv-2"
    check(location.run(c, ["put", "k", "c"]), [NONE])
    check(location.run(d, ["get", "k"], ["list"]), [NONE, listed()])


def test_tenant_reaches_only_its_binding(location: Location) -> None:
    """The tenant's env holds only its binding, and its own fetch() does not reach the front's
    socket (workerd's default network refuses loopback addresses): no way to name another
    namespace."""
    [keys, reach] = location.run(ns(), ["envKeys"], ["reach", f"http://{location.front_addr}/kv"])
    assert keys == ok(["KV"])
    assert "thrown" in reach["ok"], reach  # "connecting to 127.0.0.1:<port> is not allowed"


def test_expiration_is_stored_and_listed(location: Location) -> None:
    n = ns()
    at = int(time.time()) + 7200
    before = int(time.time())
    check(
        location.run(
            n,
            ["put", "ttl", "1", {"expirationTtl": 3600, "metadata": {"m": 1}}],
            ["put", "at", "2", {"expiration": at}],
            ["put", "both", "3", {"expiration": at, "expirationTtl": 600}],
            ["put", "string", "4", {"expiration": str(at)}],
        ),
        [NONE] * 4,
    )
    after = int(time.time()) + 1
    [page, got, meta] = location.run(n, ["list"], ["get", "ttl"], ["getWithMetadata", "ttl"])
    keys = {k["name"]: k for k in page["ok"]["keys"]}
    assert set(keys) == {"ttl", "at", "both", "string"}
    assert before + 3600 <= keys["ttl"]["expiration"] <= after + 3600
    assert keys["ttl"]["metadata"] == {"m": 1}
    assert keys["at"] == {"name": "at", "expiration": at}
    assert keys["string"]["expiration"] == at
    # expirationTtl wins over expiration.
    assert before + 600 <= keys["both"]["expiration"] <= after + 600
    assert got == ok("1") and meta == ok({"value": "1", "metadata": {"m": 1}, "cacheStatus": None})


def shard_file(loc: Location, key: str) -> Path:
    """The SQLite file of the one shard (Durable Object) that holds `key`."""
    files = [
        f
        for f in sorted((loc.dir / "kv-data" / "edgeplane-kv").glob("*.sqlite"))
        if f.name != "metadata.sqlite" and rows(f, "SELECT 1 FROM entries WHERE key = ?", key)
    ]
    assert len(files) == 1, files
    return files[0]


def rows(db: Path, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    con = sqlite3.connect(db)
    try:
        with con:
            return con.execute(sql, args).fetchall()
    finally:
        con.close()


def test_data_outlives_the_front(own_location: Location) -> None:
    """Acknowledged writes survive a SIGKILL of the front: the shards are SQLite files on the
    front's disk, and the cell reaches the restarted front on the same address."""
    loc, a, b = own_location, ns(), ns()
    check(
        loc.run(
            a,
            ["put", "keep", "v", {"metadata": {"m": 1}}],
            ["put", "big", {"$big": BIG, "as": "buffer"}],
            ["put", "gone", "v"],
            ["delete", "gone"],
        ),
        [NONE] * 4,
    )
    check(loc.run(b, ["put", "keep", "b"]), [NONE])
    loc.start_front(loc.kill_front())
    check(
        loc.run(
            a, ["getWithMetadata", "keep"], ["get", "big", "arrayBuffer"], ["get", "gone"], ["list"]
        ),
        [
            ok({"value": "v", "metadata": {"m": 1}, "cacheStatus": None}),
            ok(large(pattern(BIG))),
            NONE,
            ok(
                {
                    "keys": [{"name": "big"}, {"name": "keep", "metadata": {"m": 1}}],
                    "list_complete": True,
                    "cacheStatus": None,
                }
            ),
        ],
    )
    check(loc.run(b, ["get", "keep"]), [ok("b")])


def test_expired_keys_are_not_returned_and_go(own_location: Location) -> None:
    """Keys whose expiration has passed. Cloudflare refuses an expiration under 60 s ahead, and
    the front enforces that, so time is made to pass on disk instead: keys are put with an
    expiration an hour ahead, then, with the front stopped, their stored expiration is moved
    into the past in the shard's SQLite file (what an hour of waiting would leave there). The
    code under test is the shipped code, unchanged: the front's clock decides."""
    loc, n = own_location, ns()
    hour = {"expirationTtl": 3600}
    check(
        loc.run(
            n,
            ["put", "by-get", {"$big": BIG, "as": "buffer"}, hour],
            ["put", "by-list", "v", hour],
            ["put", "by-put", "v", hour],
            ["put", "live", "v", hour],
            ["put", "plain", "v"],
        ),
        [NONE] * 5,
    )
    db = shard_file(loc, "by-get")
    addr = loc.kill_front()
    past = int(time.time()) - 5
    expired = ("by-get", "by-list", "by-put")
    rows(db, "UPDATE entries SET expiration = ? WHERE key IN (?, ?, ?)", past, *expired)
    loc.start_front(addr)
    # get: not returned, and that key is deleted (with its chunks) at once.
    check(loc.run(n, ["get", "by-get"], ["getWithMetadata", "by-get", "stream"]), [NONE, MISSING])
    assert rows(db, "SELECT key FROM chunks WHERE key = 'by-get'") == []
    # list: not returned; the list deletes expired keys as it goes.
    [page] = loc.run(n, ["list"])
    assert [k["name"] for k in page["ok"]["keys"]] == ["live", "plain"]
    assert {r[0] for r in rows(db, "SELECT key FROM entries")} == {"live", "plain"}
    # A new value under an expired key is a new key.
    check(loc.run(n, ["put", "by-put", "new"], ["get", "by-put"]), [NONE, ok("new")])
