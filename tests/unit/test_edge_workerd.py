"""How the agent runs workerd (edgeplane.edge.workerd), without running it: the command
line per socket hand-over, and how a process is known again by its start time."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgeplane.edge import workerd

HEAD = ["/bin/workerd", "serve", "--experimental", "/run/c.capnp", "--control-fd", "7"]


@pytest.mark.parametrize(
    ("sockets", "tail", "fds"),
    [
        ({}, [], [7]),
        # A cell or the validator: an ephemeral loopback port of its own.
        ({"http": None}, ["--socket-addr", "http=127.0.0.1:0"], [7]),
        # The front: every socket bound by the agent and handed over.
        (
            {"http": 3, "admin": 9, "internal": 10},
            ["--socket-fd", "http=3", "--socket-fd", "admin=9", "--socket-fd", "internal=10"],
            [7, 3, 9, 10],
        ),
        (
            {"http": 3, "admin": None},
            ["--socket-fd", "http=3", "--socket-addr", "admin=127.0.0.1:0"],
            [7, 3],
        ),
    ],
    ids=["none", "cell", "front", "mixed"],
)
def test_command(sockets: dict[str, int | None], tail: list[str], fds: list[int]) -> None:
    got = workerd._command(Path("/bin/workerd"), Path("/run/c.capnp"), 7, sockets)
    assert got == (HEAD + tail, fds)


@pytest.fixture
def sleeper(tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A process whose name has ') ' and numbers in it, as a stat line's comm may: the
    fields after it must still be counted from the last ')'."""
    exe = tmp_path / "a) 1 2 3 4 5"
    shutil.copy(shutil.which("sleep") or "/bin/sleep", exe)
    p = subprocess.Popen([str(exe), "30"])
    try:
        yield p
    finally:
        p.kill()
        p.wait()


def test_start_time_names_one_process(sleeper: subprocess.Popen[bytes]) -> None:
    ours = workerd.start_time(os.getpid())
    theirs = workerd.start_time(sleeper.pid)
    assert ours is not None and theirs is not None
    assert ours <= theirs  # started after this process, in clock ticks since boot
    assert workerd.start_time(sleeper.pid) == theirs  # the same process, the same time


def test_start_time_of_a_gone_process_is_none() -> None:
    p = subprocess.Popen(["true"])
    p.wait()
    assert workerd.start_time(p.pid) is None


def test_adopt_refuses_a_process_started_at_another_time(
    sleeper: subprocess.Popen[bytes],
) -> None:
    """A reused pid is another process: its start time differs, so it is not adopted."""
    started = workerd.start_time(sleeper.pid)
    assert started is not None
    assert workerd.Proc.adopt(sleeper.pid, started + 1, {}) is None
    p = workerd.Proc.adopt(sleeper.pid, started, {"http": 1})
    assert p is not None
    try:
        assert p.alive() and p.proc is None and p.ports == {"http": 1}
    finally:
        p.close()
