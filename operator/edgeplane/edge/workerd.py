"""workerd itself: finding the binary the npm lockfile pins, and running its processes (the
front, the cells, the validator). Readiness is the `listen` event on the control fd, which
also says the port of each socket workerd bound itself.

Serving processes are detached from the agent: they outlive it (a SIGKILLed agent leaves
the location serving) and write stderr to a file, not a pipe the agent would no longer
read. A restarted agent adopts them by pid (`Proc.adopt`): it is their parent no more, so
it watches them through a pidfd."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import platform
import select
import shutil
import signal
import subprocess
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from edgeplane.npm import find_pinned

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
    pinned = find_pinned(Path(_native_package()) / "bin" / "workerd")
    if pinned is not None and pinned.is_file():
        return pinned
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


_PR_SET_PDEATHSIG = 1
STDERR_LIMIT = 64 * 1024


def _die_with_parent(sig: int) -> None:
    # A validation run must not outlive the agent (it holds secrets and nothing serves).
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, sig)


class StartFailed(Exception):
    def __init__(self, message: str, *, timed_out: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.timed_out = timed_out  # a loaded machine may be why: not the code's fault


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (/proc/<pid>/stat field 22): with
    the pid it names one process, so a reused pid is never mistaken for it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


@dataclass(eq=False)  # hashed by identity: the agent keeps sets of processes
class Proc:
    pid: int
    ports: dict[str, int] = field(default_factory=dict)
    proc: asyncio.subprocess.Process | None = None  # None: adopted, not our child
    stderr: bytearray = field(default_factory=bytearray)
    reader: asyncio.Task[None] | None = None
    started: int | None = None  # start_time(pid)
    _pidfd: int | None = None

    @classmethod
    def adopt(cls, pid: int, started: int, ports: dict[str, int]) -> Proc | None:
        """The running process `pid` if it is still the one started at `started`."""
        if start_time(pid) != started:
            return None
        try:
            fd = os.pidfd_open(pid)
        except OSError:
            return None
        return cls(pid, dict(ports), None, started=started, _pidfd=fd)

    def alive(self) -> bool:
        if self.proc is not None:
            return self.proc.returncode is None
        return (
            start_time(self.pid) == self.started
            and self._pidfd is not None
            and not _readable(self._pidfd)
        )

    @property
    def returncode(self) -> int | None:
        if self.proc is not None:
            return self.proc.returncode
        return None if self.alive() else -1

    async def wait(self) -> None:
        if self.proc is not None:
            await self.proc.wait()
            return
        if self._pidfd is None or _readable(self._pidfd):
            return
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        loop.add_reader(self._pidfd, lambda: done.done() or done.set_result(None))
        try:
            await done
        finally:
            loop.remove_reader(self._pidfd)

    def signal(self, sig: int) -> None:
        if not self.alive():
            return
        with contextlib.suppress(ProcessLookupError, OSError):
            if self._pidfd is not None:
                signal.pidfd_send_signal(self._pidfd, sig)
            else:
                os.kill(self.pid, sig)

    def close(self) -> None:
        if self._pidfd is not None:
            with contextlib.suppress(OSError):
                os.close(self._pidfd)
            self._pidfd = None

    def stderr_text(self) -> str:
        """The last STDERR_LIMIT bytes workerd wrote to stderr, as far as this agent read it."""
        return self.stderr.decode(errors="replace").strip()


def _readable(fd: int) -> bool:
    """A pidfd is readable once its process has exited."""
    return bool(select.select([fd], [], [], 0)[0])


async def _drain(stream: asyncio.StreamReader, buf: bytearray) -> None:
    """Keep the last STDERR_LIMIT bytes: a long-running cell's latest lines say most."""
    while chunk := await stream.read(65536):
        buf.extend(chunk)
        if len(buf) > STDERR_LIMIT:
            del buf[: len(buf) - STDERR_LIMIT]


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


async def _until_listening(p: Proc, ctl: asyncio.StreamReader, sockets: set[str]) -> None:
    """Return once workerd says on its control fd that every socket listens, with each
    port in `p.ports`; StartFailed with its stderr if it exits first."""
    waiting = set(sockets)
    while waiting:
        line = await ctl.readline()
        if not line:  # control fd closed: workerd exited
            await p.wait()
            if p.reader is not None:
                await p.reader
            raise StartFailed(p.stderr_text() or f"workerd exited with {p.returncode}")
        with contextlib.suppress(ValueError, KeyError, TypeError):
            ev = json.loads(line)
            if ev.get("event") == "listen" and ev.get("socket") in waiting:
                p.ports[ev["socket"]] = int(ev["port"])
                waiting.discard(ev["socket"])


async def _spawn(args: list[str], fds: list[int], detached: bool) -> Proc:
    proc = await asyncio.create_subprocess_exec(
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        pass_fds=fds,
        preexec_fn=None if detached else (lambda: _die_with_parent(signal.SIGKILL)),
    )
    p = Proc(proc.pid, proc=proc, started=start_time(proc.pid))
    if proc.stderr is not None:
        p.reader = asyncio.create_task(_drain(proc.stderr, p.stderr))
    return p


async def start(
    workerd: Path,
    config: Path,
    *,
    sockets: dict[str, int | None],
    start_timeout: float,
    detached: bool = False,
    inherit: tuple[int, ...] = (),
) -> Proc:
    """Start `workerd serve` and return once all its `sockets` listen (a listening fd to
    take over, or None: an ephemeral loopback port, in `Proc.ports`). On exit or timeout the
    process is killed and StartFailed carries workerd's stderr. `detached`: the process
    outlives the agent (serving processes); else it dies with it. `inherit`: more fds it
    gets (a config in memory)."""
    rfd, wfd = os.pipe()
    args, fds = _command(workerd, config, wfd, sockets)
    fds += inherit
    try:
        p = await _spawn(args, fds, detached)
    finally:
        os.close(wfd)
    loop = asyncio.get_running_loop()
    ctl = asyncio.StreamReader()
    transport, _ = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(ctl), os.fdopen(rfd, "rb", buffering=0)
    )
    try:
        async with asyncio.timeout(start_timeout):
            await _until_listening(p, ctl, set(sockets))
            return p
    except TimeoutError:
        await kill(p)
        raise StartFailed(
            f"workerd did not finish starting within {start_timeout:g}s (a top-level loop or "
            f"a very slow module?) {p.stderr_text()}".strip(),
            timed_out=True,
        ) from None
    except BaseException:
        await kill(p)
        raise
    finally:
        transport.close()


async def start_in_memory(
    workerd: Path,
    text: str,
    *,
    sockets: dict[str, int | None],
    start_timeout: float,
    detached: bool = False,
) -> Proc:
    """`start` on the config `text`, held in a memfd that workerd reads as
    /proc/self/fd/N: never on disk, so a full disk does not keep workerd from starting and
    no secret of the config lands there."""
    fd = os.memfd_create("workerd-config", os.MFD_CLOEXEC)
    try:
        data = text.encode()
        while data:
            data = data[os.write(fd, data) :]
        return await start(
            workerd,
            Path(f"/proc/self/fd/{fd}"),
            sockets=sockets,
            start_timeout=start_timeout,
            detached=detached,
            inherit=(fd,),
        )
    finally:
        os.close(fd)


async def kill(p: Proc) -> None:
    p.signal(signal.SIGKILL)
    await p.wait()
    if p.reader:
        with contextlib.suppress(Exception):
            await p.reader
    p.close()


def terminate(p: Proc) -> None:
    """SIGTERM: workerd stops accepting and drains in-flight requests."""
    p.signal(signal.SIGTERM)


async def stop(p: Proc, grace: float) -> None:
    """SIGTERM (workerd drains in-flight requests), SIGKILL after `grace` seconds."""
    if p.alive():
        terminate(p)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace):
                await p.wait()
    await kill(p)
