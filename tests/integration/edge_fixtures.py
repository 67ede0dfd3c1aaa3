"""Starting real edge agents (with real workerd) from tests; reusable by e2e tests.

    from tests.integration.edge_fixtures import edge_agent, start_agent, deployment

`start_agent(state_dir, token=..., http_addr=..., api_addr=...)` starts `python -m
edgeplane.edge.app` in its own process group and returns an `AgentProc` once /readyz
answers; `AgentProc.stop()` SIGTERMs and then SIGKILLs the whole group (agent and every
workerd), `AgentProc.kill()` SIGKILLs it at once. The `edge_agent` fixture yields a
started agent and always stops it, even when the test fails; `edge_agents` is a factory for
several. Import the fixtures into the test module (or a conftest) to use them.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from edgeplane.edge.cells import recorded_pids
from edgeplane.wire import (
    Bundle,
    BundleBinding,
    BundleModule,
    Deployment,
    ModuleType,
    Route,
    signed_headers,
)

TOKEN = "test-token-0123456789abcdef"
# The fixtures' agents sign version override headers with this key (the operator's role).
SIGNING_KEY = "test-signing-key-0123456789abcdef0123456789"


def signed(**headers: str) -> dict[str, str]:
    """Headers (proto=, overrides=, version_key=) signed for the fixtures' agents."""
    return signed_headers(SIGNING_KEY, int(time.time()), **headers)


def _die_with_parent() -> None:
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)


@dataclass
class AgentProc:
    popen: subprocess.Popen[bytes]
    state_dir: Path
    api_url: str
    http_url: str
    token: str
    log: Path

    @property
    def http_addr(self) -> str:
        return self.http_url.removeprefix("http://")

    @property
    def api_addr(self) -> str:
        return self.api_url.split("://", 1)[1]

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def kill(self) -> None:
        """SIGKILL the agent and every workerd it started (one process group), and those an
        earlier agent on this state dir started, which it adopted."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait(10)
        _wait_group_gone(self.popen.pid)
        for pid in recorded_pids(self.state_dir / "run"):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def kill_agent(self) -> None:
        """SIGKILL the agent alone: its workerds keep serving until an agent adopts them."""
        self.popen.kill()
        self.popen.wait(10)

    def stop(self, timeout: float = 15.0) -> None:
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        self.kill()

    def log_tail(self, n: int = 40) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        return ""


def _wait_group_gone(pgid: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        time.sleep(0.05)


def start_agent(
    state_dir: Path,
    *,
    token: str = TOKEN,
    http_addr: str = "127.0.0.1:0",
    api_addr: str = "127.0.0.1:0",
    extra_args: tuple[str, ...] = (),
    timeout: float = 60.0,
    ca_cert: Path | None = None,
    check_hostname: bool = True,
    umask: int = -1,
    mount_ns: int | None = None,
) -> AgentProc:
    """Start an agent; pass `ca_cert` when `extra_args` enable TLS (--tls-cert/--tls-key),
    so the readiness check trusts the agent's certificate (`check_hostname=False` when
    the certificate does not name 127.0.0.1), and `umask` to start it with that umask
    rather than the test process's. `mount_ns`: run it in the mount namespace of that
    process (see `small_fs`); its `state_dir` is then that namespace's view of it."""
    state_dir.mkdir(parents=True, exist_ok=True)
    token_file = state_dir.parent / f"{state_dir.name}.token"
    token_file.write_text(token)
    enter: list[str] = []
    seen = state_dir  # the state dir as this process sees it
    if mount_ns is not None:
        enter = ["nsenter", f"--mount=/proc/{mount_ns}/ns/mnt", "--"]
        seen = Path(f"/proc/{mount_ns}/root{state_dir.absolute()}")
    endpoints = seen / "run" / "endpoints.json"
    endpoints.unlink(missing_ok=True)
    log = state_dir.parent / f"{state_dir.name}.log"
    args = [
        *enter,
        sys.executable,
        "-m",
        "edgeplane.edge.app",
        "--listen-api",
        api_addr,
        "--listen-http",
        http_addr,
        "--state-dir",
        str(state_dir),
        "--token-file",
        str(token_file),
        "--drain-seconds",
        "5",
        *extra_args,
    ]
    with log.open("ab") as out:
        popen = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
            umask=umask,
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if popen.poll() is not None:
            raise RuntimeError(f"agent exited with {popen.returncode}:\n{log.read_text()}")
        if endpoints.exists():
            ep = json.loads(endpoints.read_text())
            agent = AgentProc(popen, seen, ep["api"], ep["http"], token, log)
            try:
                ctx = ssl.create_default_context(cafile=str(ca_cert)) if ca_cert else None
                if ctx is not None:
                    ctx.check_hostname = check_hostname
                urllib.request.urlopen(agent.api_url + "/readyz", timeout=2, context=ctx)
                # Agents that require a client certificate get none from here.
                if not any(a.startswith("--tls-client-ca") for a in extra_args):
                    _hand_signing_key(agent, ctx)
                return agent
            except (urllib.error.URLError, OSError):
                pass
        time.sleep(0.05)
    AgentProc(popen, seen, "", "", token, log).stop()
    raise RuntimeError(f"agent not ready within {timeout}s:\n{log.read_text()}")


def _hand_signing_key(agent: AgentProc, ctx: ssl.SSLContext | None) -> None:
    req = urllib.request.Request(
        agent.api_url + "/v1/signing-key", method="PUT",
        data=json.dumps({"key": SIGNING_KEY}).encode(),
        headers={**agent.headers(), "Content-Type": "application/json"},
    )
    urllib.request.urlopen(req, timeout=30, context=ctx)


@contextlib.contextmanager
def small_fs(mount_point: Path, size: str) -> Iterator[int]:
    """A real small filesystem (a tmpfs of `size`, e.g. "8m") on `mount_point`, in a mount
    namespace of its own (`unshare -m`, private propagation: nothing else on the machine
    sees it), held by a sleeping process whose pid it yields: start an agent in it with
    `start_agent(..., mount_ns=pid)`, reach its files through /proc/<pid>/root. Unmounted
    (lazily, so a process still using it cannot keep it) and the namespace ended at exit;
    the test is skipped where mounting is not permitted (no CAP_SYS_ADMIN)."""
    mount_point.mkdir(parents=True, exist_ok=True)
    script = (
        'mount -t tmpfs -o "size=$1,mode=0700" edgeplane-test "$2" && echo mounted && '
        "exec sleep infinity"
    )
    try:
        holder = subprocess.Popen(
            ["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh", size,
             str(mount_point)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=_die_with_parent,
        )
    except OSError as e:
        pytest.skip(f"cannot make a mount namespace here: {e}")
    assert holder.stdout is not None and holder.stderr is not None
    if holder.stdout.readline().strip() != b"mounted":
        holder.wait(10)
        pytest.skip(f"mounting a tmpfs is not permitted here: {holder.stderr.read().decode()}")
    try:
        yield holder.pid
    finally:
        subprocess.run(
            ["nsenter", f"--mount=/proc/{holder.pid}/ns/mnt", "umount", "-l", str(mount_point)],
            check=False,
        )
        holder.kill()
        holder.wait(10)


@pytest.fixture
def edge_agent(tmp_path: Path) -> Iterator[AgentProc]:
    agent = start_agent(tmp_path / "agent")
    try:
        yield agent
    finally:
        agent.stop()


@pytest.fixture
def edge_agents(tmp_path: Path) -> Iterator[Callable[..., AgentProc]]:
    """A factory: `edge_agents("edge-1", **start_agent_kwargs)` starts one more agent; all
    of them are stopped at the end of the test, whatever happens."""
    started: list[AgentProc] = []

    def start(name: str = "agent", **kw: Any) -> AgentProc:
        a = start_agent(tmp_path / name, **kw)
        started.append(a)
        return a

    try:
        yield start
    finally:
        for a in started:
            a.stop()


def bundle(
    worker: str,
    js: str,
    *,
    bindings: tuple[BundleBinding, ...] = (),
    extra_modules: tuple[BundleModule, ...] = (),
    compatibility_date: str = "2024-09-23",
) -> Bundle:
    return Bundle(
        worker=worker,
        compatibilityDate=compatibility_date,
        mainModule="index.js",
        modules=(
            BundleModule(name="index.js", type=ModuleType.ES_MODULE, content=js),
            *extra_modules,
        ),
        bindings=bindings,
    ).with_version()


def module_blobs(*bundles: Bundle) -> set[str]:
    """The blobs a location keeps for the bundles' modules (edge/blobs.py)."""
    return {m.digest() for b in bundles for m in b.modules}


def text_worker(worker: str, body: str) -> Bundle:
    """A Worker answering `body` (JSON-escaped into the source) to every request."""
    return bundle(
        worker, f"export default {{ fetch() {{ return new Response({json.dumps(body)}); }} }};"
    )


def deployment(
    *bundles: Bundle,
    routes: tuple[str, ...] = (),
    traffic: tuple[tuple[str, int], ...] = (),
    primary: str | None = None,
) -> Deployment:
    b0 = bundles[0]
    split = tuple({"version": v, "percent": p} for v, p in traffic)
    return Deployment(
        worker=b0.worker,
        primary=primary or b0.version or "",
        versions=bundles,
        routes=tuple(Route.model_validate({"pattern": r, "traffic": split}) for r in routes),
    )


def body_of(d: Deployment) -> bytes:
    return d.model_dump_json(by_alias=True, exclude_none=True).encode()
