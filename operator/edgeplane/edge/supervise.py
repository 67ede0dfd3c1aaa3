"""`edgeplane agent --supervise`: the agent under a supervisor that starts it again when it
dies, for a container whose main process would otherwise be the agent itself.

The workerds of a location outlive the agent (cells.py), but in a container the main
process's death ends the container and every process in it. Run as the main process, the
supervisor keeps the container (and so the data plane) up across an agent crash: it starts
the agent, starts it again (after a short backoff) whenever it exits without having been
asked to stop, forwards SIGTERM and SIGINT, and exits with the agent's status once the
agent stops on one. It is the subreaper of what the agent leaves: a workerd whose agent
died becomes its child, and it reaps them as they exit."""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import sys
import time

log = logging.getLogger("edgeplane.supervise")
_PR_SET_CHILD_SUBREAPER = 36
BACKOFF_MAX = 10.0


def _become_subreaper() -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_CHILD_SUBREAPER, 1)


def _wait_for(pid: int) -> int:
    """Reap children until `pid` exits (orphaned workerds too); its exit status."""
    while True:
        try:
            reaped, status = os.wait()
        except ChildProcessError:
            return 0
        except InterruptedError:
            continue
        if reaped == pid:
            return os.waitstatus_to_exitcode(status)


def supervise(agent_args: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    _become_subreaper()
    stopping: list[int] = []
    child: subprocess.Popen[bytes] | None = None

    def forward(sig: int, _frame: object) -> None:
        stopping.append(sig)
        if child is not None and child.poll() is None:
            child.send_signal(sig)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, forward)
    delay = 0.5
    while True:
        started = time.monotonic()
        child = subprocess.Popen([sys.executable, "-m", "edgeplane.edge.app", *agent_args])
        code = _wait_for(child.pid)
        child.returncode = code
        if stopping:
            return code
        if time.monotonic() - started > 60:
            delay = 0.5  # it ran for a while: not a crash loop
        log.error("the agent exited with %s; starting it again in %.1fs", code, delay)
        time.sleep(delay)
        delay = min(delay * 2, BACKOFF_MAX)
        if stopping:
            return code
