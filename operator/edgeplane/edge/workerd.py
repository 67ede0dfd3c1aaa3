"""workerd itself: finding the binary the npm lockfile pins, and running its processes (a
serving generation on the agent's socket, throw-away validation runs). Readiness is the
`listen` event on the control fd."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import platform
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from edgeplane.edge import render
from edgeplane.edge.store import private_dir, write_private
from edgeplane.wire import Deployment

_ARCH = {"x86_64": "64", "amd64": "64", "aarch64": "arm64", "arm64": "arm64"}


def _native_package() -> str:
    system = platform.system().lower()
    arch = _ARCH.get(platform.machine().lower(), platform.machine().lower())
    return f"@cloudflare/workerd-{system}-{arch}"


def find_workerd() -> Path:
    """The native workerd binary: $EDGEPLANE_WORKERD, else node_modules near the package or
    the working directory (the native binary, not npm's node wrapper), else $PATH."""
    explicit = os.environ.get("EDGEPLANE_WORKERD")
    if explicit:
        path = Path(explicit)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise FileNotFoundError(f"EDGEPLANE_WORKERD={explicit} is not an executable file")
        return path
    rel = Path("node_modules") / _native_package() / "bin" / "workerd"
    for base in (Path(__file__).resolve(), Path.cwd().resolve()):
        for parent in (base, *base.parents):
            candidate = parent / rel
            if candidate.is_file():
                return candidate
    on_path = shutil.which("workerd")
    if on_path:
        return Path(on_path)
    raise FileNotFoundError(
        "workerd not found: run `npm ci` at the repository root, or set EDGEPLANE_WORKERD"
    )


@cache
def workerd_version(path: Path | None = None) -> str:
    """e.g. "2026-11-17", as `workerd --version` prints it after the program name."""
    out = subprocess.run(
        [str(path or find_workerd()), "--version"], capture_output=True, text=True, check=True
    )
    return out.stdout.split()[-1]


def write_config(
    path: Path,
    deployments: list[Deployment],
    paths: render.Paths,
    router: render.RouterSettings,
) -> None:
    """Render `deployments` into the config file `path` (blocking: run it in a thread), and
    make the directories of the config's disk services: workerd needs them to exist. The
    config holds secret values and the disks the Workers' data: both private (see store)."""
    kv = Path(paths.kv_dir)
    for d in (path.parent, Path(paths.do_dir), kv, kv / "objects", kv / "blobs"):
        private_dir(d)
    write_private(path, render.render(deployments, paths, router).encode())


_PR_SET_PDEATHSIG = 1
STDERR_LIMIT = 64 * 1024


def _die_with_parent(sig: int) -> None:
    # If the agent dies, its workerd must not keep the socket (a restarted agent rebinds it).
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, sig)


class StartFailed(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(eq=False)  # hashed by identity: the agent keeps sets of generations
class Proc:
    proc: asyncio.subprocess.Process
    stderr: bytearray = field(default_factory=bytearray)
    reader: asyncio.Task[None] | None = None
    started: float = field(default_factory=time.monotonic)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stderr_text(self) -> str:
        return self.stderr.decode(errors="replace").strip()


async def _drain(stream: asyncio.StreamReader, buf: bytearray) -> None:
    while chunk := await stream.read(65536):
        if len(buf) < STDERR_LIMIT:
            buf.extend(chunk[: STDERR_LIMIT - len(buf)])


def _command(
    workerd: Path, config: Path, control_fd: int, sockets: dict[str, int | None]
) -> tuple[list[str], list[int]]:
    """workerd's arguments and the fds it inherits: each socket a listening fd handed
    over, or (None) an ephemeral loopback port it binds itself."""
    args = [str(workerd), "serve", "--experimental", str(config), "--control-fd", str(control_fd)]
    fds = [control_fd]
    for name, fd in sockets.items():
        if fd is None:
            args += ["--socket-addr", f"{name}=127.0.0.1:0"]
        else:
            args += ["--socket-fd", f"{name}={fd}"]
            fds.append(fd)
    return args, fds


async def _until_listening(p: Proc, ctl: asyncio.StreamReader) -> None:
    """Return once workerd says on its control fd that the http socket listens;
    StartFailed with its stderr if it exits first."""
    while True:
        line = await ctl.readline()
        if not line:  # control fd closed: workerd exited
            await p.proc.wait()
            if p.reader is not None:
                await p.reader
            raise StartFailed(p.stderr_text() or f"workerd exited with {p.proc.returncode}")
        with contextlib.suppress(ValueError):
            ev = json.loads(line)
            if ev.get("event") == "listen" and ev.get("socket") == "http":
                return


async def start(
    workerd: Path,
    config: Path,
    *,
    socket_fd: int | None,
    start_timeout: float,
    kill_on_parent_death: int = signal.SIGTERM,
    stats_fd: int | None = None,
) -> Proc:
    """Start `workerd serve` and return once its socket listens. On exit or timeout the
    process is killed and StartFailed carries workerd's stderr. `socket_fd` and `stats_fd`
    are listening sockets for the `http` and `stats` sockets; without them workerd binds
    ephemeral loopback ports (validation runs)."""
    rfd, wfd = os.pipe()
    args, fds = _command(workerd, config, wfd, {"http": socket_fd, "stats": stats_fd})
    try:
        proc = await asyncio.create_subprocess_exec(
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            pass_fds=fds,
            preexec_fn=lambda: _die_with_parent(kill_on_parent_death),
        )
    finally:
        os.close(wfd)
    p = Proc(proc)
    assert proc.stderr is not None
    p.reader = asyncio.create_task(_drain(proc.stderr, p.stderr))
    loop = asyncio.get_running_loop()
    ctl = asyncio.StreamReader()
    transport, _ = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(ctl), os.fdopen(rfd, "rb", buffering=0)
    )
    try:
        async with asyncio.timeout(start_timeout):
            await _until_listening(p, ctl)
            return p
    except TimeoutError:
        await kill(p)
        raise StartFailed(
            f"workerd did not finish starting within {start_timeout:g}s (a top-level loop or "
            f"a very slow module?) {p.stderr_text()}".strip()
        ) from None
    except BaseException:
        await kill(p)
        raise
    finally:
        transport.close()


async def kill(p: Proc) -> None:
    if p.proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            p.proc.kill()
    await p.proc.wait()
    if p.reader:
        with contextlib.suppress(Exception):
            await p.reader


def terminate(p: Proc) -> None:
    """SIGTERM: workerd stops accepting and drains in-flight requests."""
    if p.proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            p.proc.send_signal(signal.SIGTERM)


async def stop(p: Proc, grace: float) -> None:
    """SIGTERM (workerd drains in-flight requests), SIGKILL after `grace` seconds."""
    if p.proc.returncode is None:
        terminate(p)
        try:
            async with asyncio.timeout(grace):
                await p.proc.wait()
        except TimeoutError:
            pass
    await kill(p)
