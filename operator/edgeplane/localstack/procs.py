"""Starting and stopping the local stack's processes without leaving any behind.

Every process gets its own process group (so a whole group can be signalled) and a line
in a pid file (so `down` from another shell finds it). Processes started for tests are
also tied to their parent with PR_SET_PDEATHSIG: if pytest itself is killed, the kernel
kills them too.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def start(
    name: str,
    argv: Sequence[str | os.PathLike[str]],
    state_dir: Path,
    *,
    env: dict[str, str] | None = None,
    tie_to_parent: bool = False,
    pass_fds: Sequence[int] = (),
) -> Proc:
    logs = state_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / f"{name}.log"
    with log.open("ab") as out:
        popen = subprocess.Popen(
            [str(a) for a in argv],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
            preexec_fn=_die_with_parent if tie_to_parent else None,
            pass_fds=tuple(pass_fds),
        )
    with (state_dir / "pids").open("a") as f:
        f.write(f"{popen.pid} {name} {argv[0]}\n")
    return Proc(name, popen, log)


def signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass


def stop(proc: Proc, timeout: float = 10.0) -> None:
    """SIGTERM the process group, then SIGKILL it if it has not exited within `timeout`."""
    if proc.alive():
        signal_group(proc.popen.pid, signal.SIGTERM)
        try:
            proc.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
    # Kill the group even when the leader is gone: its children may not be.
    signal_group(proc.popen.pid, signal.SIGKILL)
    try:
        proc.popen.wait(5)
    except subprocess.TimeoutExpired:
        pass


def _same_program(pid: int, program: str) -> bool:
    """Guards against pid reuse: only signal a pid still running the program we started."""
    try:
        argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
    except OSError:
        return False
    return argv0 == program


def stop_recorded(state_dir: Path, timeout: float = 10.0) -> list[str]:
    """Stop every process listed in state_dir/pids, newest first; returns their names."""
    pidfile = state_dir / "pids"
    if not pidfile.exists():
        return []
    entries = []
    for line in pidfile.read_text().splitlines():
        pid, name, program = line.split(" ", 2)
        entries.append((int(pid), name, program))
    stopped = []
    for pid, name, program in reversed(entries):
        if not _same_program(pid, program):
            continue
        signal_group(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _same_program(pid, program):
            time.sleep(0.1)
        signal_group(pid, signal.SIGKILL)
        stopped.append(name)
    pidfile.unlink()
    return stopped


def free_port(host: str = "127.0.0.1") -> int:
    import socket

    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])
