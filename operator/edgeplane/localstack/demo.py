"""`edgeplane demo up|down`: the whole product on this machine in one command.

`up` starts a local control plane, three edge locations (agent + workerd each) and the
operator, applies the examples in manifests/examples, waits until every Worker is Ready,
then prints what kubectl and curl see. It keeps running until Ctrl-C (or `edgeplane demo
down` from another shell); with --exit it stops everything after printing, and exits
non-zero if any location answered wrongly.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from edgeplane.localstack import procs
from edgeplane.localstack.cluster import REPO
from edgeplane.localstack.stack import Stack

DEFAULT_ROOT = REPO / ".state" / "demo"
EXAMPLES = REPO / "manifests" / "examples"
# The examples' own EdgeTargets point at fixed ports; the demo registers its agents instead.
SKIP = {"edge-targets.yaml"}

EVERYWHERE = {"edge-1", "edge-2", "edge-3"}
# (Host header, path, status and text expected, the EdgeTargets that answer so; the others
# answer 404: no route there)
CHECKS = [
    ("example.com", "/", 200, "Hello from the edge!\n", EVERYWHERE),
    ("shop.example.com", "/api/hello?name=demo", 200, "Hello, demo!", {"edge-1"}),
    # A route without a Worker: the path bypasses the hello Worker's example.com/*.
    ("example.com", "/static/logo.png", 404, "bypasses Workers", EVERYWHERE),
]


def run(root: Path, exit_after: bool) -> int:
    if (root / "pids").exists():
        print(f"a demo seems to run already ({root}); `edgeplane demo down` first",
              file=sys.stderr)
        return 1
    stack = Stack(root, agent_count=3, tie_to_parent=True)
    root.mkdir(parents=True, exist_ok=True)
    (root / "demo.pid").write_text(str(os.getpid()))
    print("starting the control plane, 3 edge locations and the operator ...", flush=True)
    stack.up()
    try:
        assert stack.cluster is not None
        kubectl = stack.cluster.kubectl
        for f in sorted(EXAMPLES.glob("*.yaml")):
            if f.name not in SKIP:
                kubectl("apply", "-n", "default", "-f", str(f))
        kubectl("wait", "-n", "default", "--for=condition=Ready", "--timeout=120s",
                "worker,workerroute", "--all", timeout=150)
        # EdgeTarget status follows the periodic health checks; let it catch up.
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not _targets_counted(kubectl):
            time.sleep(0.5)
        print("\n$ kubectl get workers,workerroutes,edgetargets")
        print(kubectl("get", "-n", "default", "workers,workerroutes,edgetargets").stdout)
        ok = True
        for host, path, want_status, want_text, where in CHECKS:
            for agent in stack.agents:
                status, body = agent.fetch(host, path)
                print(f"$ curl -H 'Host: {host}' {agent.http_url}{path}   # {agent.name}")
                print(f"  {status} {body.strip()}")
                want = (want_status, want_text) if agent.name in where else (404, "no route")
                ok &= status == want[0] and want[1] in body
        print(f"\nkubectl: export KUBECONFIG={stack.cluster.kubeconfig}")
        if stack.operator is not None and stack.operator.tail is not None:
            t = stack.operator.tail
            print(f"live logs: edgeplane tail <worker> --endpoint {t.url} --ca-file {t.ca}")
        if exit_after:
            print("demo: all answers as expected" if ok else "demo: unexpected answers")
            return 0 if ok else 1
        print("running; Ctrl-C here or `make demo-down` elsewhere stops everything", flush=True)
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        stop.wait()
        return 0
    finally:
        print("stopping ...", flush=True)
        stack.down()


def _targets_counted(kubectl: Callable[..., subprocess.CompletedProcess[str]]) -> bool:
    """Whether the EdgeTargets' Worker counts add up to the Workers' ready targets."""
    workers = json.loads(kubectl("get", "-n", "default", "workers", "-o", "json").stdout)
    want = sum(int(w["status"]["readyTargets"].split("/")[0]) for w in workers["items"])
    targets = json.loads(kubectl("get", "edgetargets", "-o", "json").stdout)
    return sum((t.get("status") or {}).get("workers", 0) for t in targets["items"]) == want


def down(root: Path) -> int:
    # The foreground `demo up` stops its own stack on SIGTERM; give it the chance first.
    try:
        pid = int((root / "demo.pid").read_text())
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
            time.sleep(0.2)
    except (OSError, ValueError):
        pass
    stopped = procs.stop_recorded(root) + procs.stop_recorded(root / "cluster")
    shutil.rmtree(root, ignore_errors=True)
    print(f"stopped {', '.join(stopped) or 'nothing'}")
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="edgeplane demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["up", "down"])
    parser.add_argument("--exit", action="store_true",
                        help="stop after printing; exit 1 if an answer was wrong")
    parser.add_argument("--state-dir", type=Path, default=DEFAULT_ROOT)
    args = parser.parse_args(argv)
    root = args.state_dir.resolve()
    return run(root, args.exit) if args.action == "up" else down(root)
