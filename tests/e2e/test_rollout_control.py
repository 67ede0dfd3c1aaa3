"""Rollout control on the real stack, driven like a user: a step with `pause: {}` waits at
one of three locations until `edgeplane rollout promote` (run as a process, with a
ServiceAccount's token kubeconfig allowed to patch Workers); a paused version is aborted
and every location answers the old one again; `undo` pins the previous version; a user
without `patch` on Workers is refused."""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from edgeplane.localstack.stack import Stack
from tests.e2e.conftest import Kube, eventually, worker
from tests.e2e.test_rbac import token_kubeconfig
from tests.e2e.test_rollout import (
    FIRST,
    REST,
    app,
    deploy_v1,
    ready_reason,
    rollout,
    serving,
    when,
)

pytestmark = pytest.mark.integration

PAUSED_STEPS = {"strategy": "Progressive", "steps": [{"count": 1, "pause": {}}, {"count": 3}]}
ALL = [FIRST, *REST]


def user(kube: Kube, name: str, verbs: list[str], root: Path) -> Path:
    """A ServiceAccount of the test namespace with `verbs` on Workers (and reading their
    versions), as a token kubeconfig: the CLI acts as that user and nobody else."""
    ns = kube.namespace
    rules = [
        {"apiGroups": ["edgeplane.io"], "resources": ["workers"], "verbs": verbs},
        {"apiGroups": ["edgeplane.io"], "resources": ["workerversions"],
         "verbs": ["get", "list"]},
    ]
    docs = [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
         "metadata": {"name": name}, "rules": rules},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": {"name": name},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
         "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": ns}]},
    ]
    kube.cluster.kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump_all(docs))
    token = kube.cluster.kubectl("create", "token", name, "-n", ns,
                                 "--duration=1h").stdout.strip()
    cfg = token_kubeconfig(kube.cluster, token, root / f"{name}.kubeconfig")
    # The context's namespace is the test's: `-n` is then optional, as for kubectl.
    doc = yaml.safe_load(cfg.read_text())
    doc["contexts"][0]["context"]["namespace"] = ns
    cfg.write_text(yaml.safe_dump(doc))
    return cfg


def cli(cfg: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """`edgeplane rollout ...` as a separate process, with only `cfg` to reach the cluster."""
    env = {**os.environ, "KUBECONFIG": str(cfg)}
    res = subprocess.run([sys.executable, "-m", "edgeplane.cli", "rollout", *args],
                         env=env, capture_output=True, text=True, timeout=120)
    if check:
        assert res.returncode == 0, (res.stdout, res.stderr)
    return res


def watch_cli(cfg: Path, name: str) -> subprocess.Popen[str]:
    env = {**os.environ, "KUBECONFIG": str(cfg)}
    return subprocess.Popen(
        [sys.executable, "-m", "edgeplane.cli", "rollout", "status", name, "--watch"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def first_frame(watcher: subprocess.Popen[str]) -> str:
    """What `rollout status --watch` printed up to its first drawing (a blank line ends
    each, off a terminal): it has read the Worker, so what happens next is a change it
    sees."""
    assert watcher.stdout is not None
    fd, got, deadline = watcher.stdout.fileno(), b"", time.monotonic() + 60
    while b"\n\n" not in got:  # the raw pipe, so that communicate() reads on from here
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        assert ready, f"no frame from `rollout status --watch` within 60 s: {got!r}"
        chunk = os.read(fd, 65536)
        assert chunk, f"`rollout status --watch` ended: {got!r}"
        got += chunk
    return got.decode()


def frames(out: str) -> list[str]:
    return [f for f in out.split("\n\n") if f.strip()]


def paused(kube: Kube, name: str, version_not: str) -> dict[str, Any]:
    return eventually(lambda: (r := rollout(kube, name)).get("phase") == "Paused"
                      and r["version"] != version_not and r, timeout=90)


def events(kube: Kube, name: str) -> list[tuple[str, str]]:
    return [(e["reason"], e["message"]) for e in kube.list("events")
            if e["involvedObject"]["name"] == name]


def test_a_paused_step_waits_for_promote_and_abort_rolls_back(
    stack: Stack, kube: Kube, tmp_path: Path
) -> None:
    name = "ctl"
    host = f"{name}.{kube.namespace}.example.com"
    v1 = deploy_v1(stack, kube, name)
    releaser = user(kube, "releaser", ["get", "list", "watch", "patch"], tmp_path)
    viewer = user(kube, "viewer", ["get", "list", "watch"], tmp_path)

    kube.apply(worker(name, app("v2"), rollout=PAUSED_STEPS))
    first = paused(kube, name, v1)
    v2 = first["version"]
    assert (first["step"], first["fromVersion"]) == (1, v1) and first["pausedSince"]
    # It waits: for 20 s, one location on v2, the other two on v1, at every look.
    until = time.monotonic() + 20
    while time.monotonic() < until:
        assert serving(stack, host) == {FIRST: "v2", REST[0]: "v1", REST[1]: "v1"}
        time.sleep(0.5)
    assert rollout(kube, name)["phase"] == "Paused"
    ready = kube.condition("worker", name, "Ready")
    assert ready is not None and ready["reason"] == "Paused"
    assert f'edgeplane.io/promote: "{v2[:12]}/1"' in ready["message"]

    shown = cli(releaser, "status", name).stdout
    for part in ("Paused (step 1/2), paused for", f"version {v2[:12]}, from {v1[:12]}",
                 "▶ 1  count 1, pause", "+edge-1", "· 2  count 3", "+edge-2, edge-3",
                 f"edge-1  {v2[:12]}  Ready", f"edge-2  {v1[:12]}  Pending",
                 f"edgeplane rollout promote {name} -n {kube.namespace}` goes on to step 2"):
        assert part in shown, (part, shown)

    # Whoever may list EdgeTargets gets the same steps (from their labels, not the status).
    admin = cli(kube.cluster.kubeconfig, "status", name, "-n", kube.namespace).stdout
    assert "▶ 1  count 1, pause" in admin and "+edge-2, edge-3" in admin, admin

    # Without `patch` on Workers: refused by the apiserver, said plainly, nothing changed.
    refused = cli(viewer, "promote", name, check=False)
    assert refused.returncode == 1, refused
    assert "the apiserver refused to promote Worker" in refused.stderr
    assert "`patch` verb on workers.edgeplane.io" in refused.stderr
    assert "cannot patch resource" in refused.stderr
    obj = kube.get("worker", name)
    assert obj is not None and "edgeplane.io/promote" not in obj["metadata"].get(
        "annotations", {})

    watcher = watch_cli(releaser, name)
    try:
        seen = first_frame(watcher)
        assert "Paused (step 1/2)" in seen
        promoted = cli(releaser, "promote", name)
        assert f"asked to promote version {v2[:12]} past step 1/2" in promoted.stdout
        assert f"operator: version {v2[:12]} promoted past step 1/2" in promoted.stdout
        done = kube.wait_ready(name, timeout=90)
        out, err = watcher.communicate(timeout=60)
        out = seen + out
    finally:
        watcher.kill()
    assert watcher.returncode == 0, (out, err)
    # Drawn live as it moved; Complete only once every location serves v2 (a promote
    # that skipped pushing step 2 showed Complete with two locations Pending).
    complete = [f for f in frames(out) if "Complete (step 2/2)" in f]
    assert complete and all("Pending" not in f for f in complete), out
    assert done["status"]["readyVersion"] == v2
    assert done["status"]["rollout"]["phase"] == "Complete"
    assert "pausedSince" not in done["status"]["rollout"]  # cleared, not left from the pause
    eventually(lambda: serving(stack, host) == dict.fromkeys(ALL, "v2"))
    reasons = [r for r, _ in events(kube, name)]
    assert "Paused" in reasons and "Promoted" in reasons
    nothing = cli(releaser, "promote", name, check=False)
    assert nothing.returncode == 1 and "nothing to promote" in nothing.stderr
    nothing = cli(releaser, "abort", name, check=False)
    assert nothing.returncode == 1 and "nothing to abort" in nothing.stderr

    # v3 pauses at the first location; abort sends every location back to v2.
    kube.apply(worker(name, app("v3"), rollout=PAUSED_STEPS))
    v3 = paused(kube, name, v2)["version"]
    assert serving(stack, host) == {FIRST: "v3", REST[0]: "v2", REST[1]: "v2"}
    watcher = watch_cli(releaser, name)
    try:
        seen = first_frame(watcher)
        assert "Paused (step 1/2)" in seen
        aborted = cli(releaser, "abort", name)
        assert (f"operator: version {v3[:12]} aborted at step 1/2: every location goes back "
                f"to {v2[:12]}") in aborted.stdout
        ready = ready_reason(kube, "worker", name, "RolledBack", timeout=90)
        out, err = watcher.communicate(timeout=60)
        out = seen + out
    finally:
        watcher.kill()
    assert watcher.returncode == 1 and "RolledBack (step 1/2)" in out, (out, err)
    assert "aborted (edgeplane.io/abort)" in ready["message"]
    eventually(lambda: serving(stack, host) == dict.fromkeys(ALL, "v2"), timeout=90)
    status = (kube.get("worker", name) or {})["status"]
    assert status["rollout"]["phase"] == "RolledBack" and status["readyVersion"] == v2
    assert status["failedVersions"] == [v3]
    # The promote left on the Worker named v2's step: for v3 it is stale, said once.
    actions = {(a["action"], a["value"], a["applied"]) for a in status["rollout"]["actions"]}
    assert actions == {("Abort", v3[:12], True), ("Promote", f"{v2[:12]}/1", False)}
    reasons = [r for r, _ in events(kube, name)]
    assert "Aborted" in reasons and "RolloutActionIgnored" in reasons
    shown = cli(releaser, "status", name).stdout
    assert "RolledBack (step 1/2)" in shown and "✗ 1" in shown
    assert f"rolled back (aborted); every location serves {v2[:12]}" in shown

    # undo pins the version the rollout came from: the spec now says what runs.
    undone = cli(releaser, "undo", name)
    assert f"spec.version set to {v2[:12]} (was not pinned)" in undone.stdout
    assert f'commit `version: "{v2}"` to git' in undone.stdout
    obj = kube.get("worker", name)
    assert obj is not None and obj["spec"]["version"] == v2
    done = kube.wait_ready(name, generation=obj["metadata"]["generation"], timeout=90)
    assert done["status"]["latestVersion"] == v2
    assert serving(stack, host) == dict.fromkeys(ALL, "v2")
    unknown = cli(releaser, "undo", name, "--to-version", "deadbeef00", check=False)
    assert unknown.returncode == 1, unknown
    assert "--to-version 'deadbeef00' names no retained version of ctl" in unknown.stderr
    assert v1[:12] in unknown.stderr  # the versions it could have named
    # And a viewer may not undo either.
    refused = cli(viewer, "undo", name, "--to-version", v1[:10], check=False)
    assert refused.returncode == 1 and "the apiserver refused to undo" in refused.stderr


def test_a_version_failing_its_last_steps_gate_is_never_rolled_back_to(
    stack: Stack, kube: Kube
) -> None:
    """One step for every location, a hold and a gate (a fleet-wide bake): every location
    serves the new version during the hold, yet until its gate passed it must not become
    readyVersion, or the next failed rollout would go back to it."""
    name = "bake"
    host = f"{name}.{kube.namespace}.example.com"
    v1 = deploy_v1(stack, kube, name)
    bake = {"strategy": "Progressive", "steps": [
        {"count": 3, "holdSeconds": 3, "gate": {"probe": {"path": "/healthz"}}}]}
    for label in ("v2", "v3"):
        kube.apply(worker(name, app(label, health=500), rollout=bake))
        eventually(lambda label=label: (r := rollout(kube, name)).get("phase") == "RolledBack"
                   and r["version"] != v1 and r.get("failure") and label, timeout=90)
        status = (kube.get("worker", name) or {})["status"]
        assert status["readyVersion"] == v1 and status["rollout"]["fromVersion"] == v1
        eventually(lambda: serving(stack, host) == dict.fromkeys(ALL, "v1"), timeout=90)


def test_a_promote_sent_while_the_operator_is_killed_acts_when_it_is_back(
    stack: Stack, kube: Kube, tmp_path: Path
) -> None:
    """The action lives in the Worker, not in a request to the operator: a promote written
    while the operator is SIGKILLed acts once it is back (its relist sees the annotation)."""
    name = "down"
    host = f"{name}.{kube.namespace}.example.com"
    v1 = deploy_v1(stack, kube, name)
    releaser = user(kube, "releaser", ["get", "list", "watch", "patch"], tmp_path)
    kube.apply(worker(name, app("v2"), rollout=PAUSED_STEPS))
    since = paused(kube, name, v1)["pausedSince"]
    assert stack.operator is not None
    stack.operator.kill()
    try:
        sent = cli(releaser, "promote", name, "--no-wait")
        assert "asked to promote" in sent.stdout and "operator:" not in sent.stdout
        time.sleep(2)
        # Nothing moves while the operator is gone.
        assert serving(stack, host) == {FIRST: "v2", REST[0]: "v1", REST[1]: "v1"}
        assert rollout(kube, name)["phase"] == "Paused"
    finally:
        stack.operator.start()
    done = kube.wait_ready(name, timeout=90)["status"]["rollout"]
    assert done["phase"] == "Complete"
    [promote] = done["actions"]
    assert promote["applied"] and when(promote["time"]) > when(since)
    assert serving(stack, host) == dict.fromkeys(ALL, "v2")
