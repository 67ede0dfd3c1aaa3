"""Three active-active operators (`--replicas 3`) on the real stack: they share the ten
buckets (each holds some, the Leases show who), a Worker edit is reconciled by exactly
one of them (the holder of its bucket, by its log and by the status' field manager), and
when one is SIGKILLed its Workers are reconciled by the others within the lease duration
+ 10 s, never by two replicas in one generation."""

from __future__ import annotations

import json
import re
import time
from collections import defaultdict

import pytest

from edgeplane.localstack.stack import SYSTEM_NAMESPACE, Operator, Stack
from edgeplane.localstack.traffic import eventually
from edgeplane.plan.buckets import bucket_of
from tests.e2e.conftest import Kube, metric, responder, worker

N_BUCKETS = 10
LEASE_DURATION = 15  # the operator's (plan/buckets.Timings)
NAMES = [f"rep{i}" for i in range(12)]
CRON_SCRIPT = """export default {
  fetch() { return new Response("cron"); },
  scheduled() {},
};
"""


def _holders(stack: Stack) -> dict[int, str]:
    assert stack.cluster is not None
    out = stack.cluster.kubectl("get", "leases", "-n", SYSTEM_NAMESPACE, "-o", "json").stdout
    held = {}
    for lease in json.loads(out)["items"]:
        name = lease["metadata"]["name"]
        if name.startswith("edgeplane-bucket-"):
            held[int(name.rsplit("-", 1)[1])] = lease["spec"].get("holderIdentity") or ""
    return held


def _reconciled(replicas: dict[str, Operator], namespace: str, generation: int
                ) -> dict[str, set[str]]:
    """Per Worker, the replicas whose log says they reconciled it at `generation`."""
    pattern = re.compile(
        rf"reconciled Worker {re.escape(namespace)}/(\S+) generation {generation} \(bucket"
    )
    out: dict[str, set[str]] = defaultdict(set)
    for identity, op in replicas.items():
        log = (op.root / "logs" / "operator.log").read_text(errors="replace")
        for m in pattern.finditer(log):
            out[m.group(1)].add(identity)
    return out


def _status_managers(kube: Kube, name: str) -> set[str]:
    obj = json.loads(kube.cluster.kubectl("get", "-n", kube.namespace, "worker", name, "-o",
                                          "json", "--show-managed-fields").stdout)
    return {m["manager"].removeprefix("edgeplane/") for m in obj["metadata"]["managedFields"]
            if m.get("subresource") == "status" and m["manager"].startswith("edgeplane/")}


def _event_instances(kube: Kube) -> dict[str, set[str]]:
    """Per Worker, the replicas that recorded Events on it."""
    out = json.loads(kube.cluster.kubectl("get", "events", "-n", kube.namespace, "-o",
                                          "json").stdout)
    by: dict[str, set[str]] = defaultdict(set)
    for ev in out["items"]:
        if ev["involvedObject"]["kind"] == "Worker":
            by[ev["involvedObject"]["name"]].add(ev.get("reportingInstance") or "")
    return by


def _edit(kube: Kube, text: str) -> None:
    kube.apply(*(worker(n, responder(f'"{text}"')) for n in NAMES))


def test_three_replicas_share_the_work_and_take_over_a_killed_ones(
    stack: Stack, kube: Kube, monkeypatch: pytest.MonkeyPatch
) -> None:
    shared = stack.operator
    assert shared is not None and stack.cluster is not None
    shared.stop()
    replicas: dict[str, Operator] = {}
    try:
        for i in range(3):
            identity = f"replica-{i}"
            monkeypatch.setenv("POD_NAME", identity)
            replicas[identity] = op = Operator(
                stack.root / identity, shared.kubeconfig, shared.tie_to_parent,
                extra_args=(*shared.extra_args, "--replicas", "3"),
            )
            op.start()
        monkeypatch.delenv("POD_NAME")

        # (a) Every replica holds some of the ten buckets, and the Leases say the same. Once
        # all three see each other the split is balanced, 4/3/3 (before, one that started
        # first holds more, and hands them over as the others appear).
        def split() -> dict[int, str] | None:
            held = {r: metric(op.metrics_url, "edgeplane_bucket_held")
                    for r, op in replicas.items()}
            leases = _holders(stack)
            ok = (sorted(held.values()) == [3, 3, 4]
                  and sorted(leases) == list(range(N_BUCKETS))
                  and all(leases[b] in replicas for b in leases)
                  and all(list(leases.values()).count(r) == held[r] for r in replicas))
            return leases if ok else None

        owners = eventually(split, timeout=90, interval=0.5)
        print(stack.cluster.kubectl("get", "leases", "-n", SYSTEM_NAMESPACE).stdout)

        # A cron Worker another replica than bucket 0's reconciles: the holder of bucket 0
        # leases every Worker's schedule to a location that serves it.
        tick = next(n for n in (f"tick{i}" for i in range(99))
                    if owners[bucket_of(kube.namespace, n, N_BUCKETS)] != owners[0])
        kube.apply(worker(tick, CRON_SCRIPT, triggers={"crons": ["* * * * *"]}))

        # (b) An edit of each Worker is reconciled by one replica: its bucket's holder.
        _edit(kube, "v1")
        for n in NAMES:
            kube.wait_ready(n, 1, timeout=120)
        _edit(kube, "v2")
        for n in NAMES:
            kube.wait_ready(n, 2, timeout=90)
        owner = {n: owners[bucket_of(kube.namespace, n, N_BUCKETS)] for n in NAMES}
        by = _reconciled(replicas, kube.namespace, 2)
        for n in NAMES:
            assert by[n] == {owner[n]}, (n, by[n], owner[n])
            assert _status_managers(kube, n) == {owner[n]}, n
        kube.wait_ready(tick, timeout=60)
        full = f"{kube.namespace}.{tick}"
        eventually(lambda: sum(metric(f"{a.api_url}/metrics", "edgeplane_agent_cron_runs_total",
                                      a.token, worker=full) for a in stack.agents) >= 1,
                   timeout=100, interval=1)

        # (c) SIGKILL the replica with the most Workers: nothing handed back.
        victim = max(replicas, key=lambda r: sum(o == r for o in owner.values()))
        moved = [n for n in NAMES if owner[n] == victim]
        assert moved
        replicas[victim].kill()
        killed = time.monotonic()
        _edit(kube, "v3")
        for n in NAMES:
            kube.wait_ready(n, 3, timeout=LEASE_DURATION + 10 + 30)
        took = time.monotonic() - killed
        print(f"all {len(NAMES)} Ready at generation 3 {took:.1f} s after the kill "
              f"({len(moved)} of them the killed replica's)")
        assert took <= LEASE_DURATION + 10, f"{took:.1f} s after the kill"

        # (d) Never two replicas in one generation; the killed one wrote none of v3.
        by = _reconciled(replicas, kube.namespace, 3)
        after = _holders(stack)
        for n in NAMES:
            assert len(by[n]) == 1 and victim not in by[n], (n, by[n])
            assert by[n] == {after[bucket_of(kube.namespace, n, N_BUCKETS)]}
        for n in NAMES:
            managers = _status_managers(kube, n)
            # The killed replica's entry stays for fields the new holder left as they were.
            assert managers - {victim} == (by[n] if n in moved else {owner[n]}), (n, managers)
        events = _event_instances(kube)
        assert any(events.get(n) for n in NAMES), events  # updates are reported
        for n in NAMES:
            assert events.get(n, set()) <= ({victim} | by[n] if n in moved else {owner[n]}), n
    except BaseException:
        for identity, op in replicas.items():  # what each replica said, for the failure
            log = (op.root / "logs" / "operator.log").read_text(errors="replace")
            lines = [ln for ln in log.splitlines() if "bucket" in ln and "reconciled" not in ln]
            print(f"--- {identity} (bucket lines) ---", *lines[-40:], sep="\n")
        raise
    finally:
        for op in replicas.values():
            op.stop()
        shared.start()
