"""Benchmark of the operator on the local stack (three edge locations). Prints figures;
asserts nothing. Run: .venv/bin/python bench/operator_bench.py [--workers 1000]

Measured in the same run, so the ratios compare like with like:
- floor: one agent push (the PUT returns once workerd serves it) + one apiserver write;
- apply -> Ready and apply -> serving at all three locations, for one Worker, p50/p99;
- a Progressive rollout (one location, probe gate, then the rest) apply -> Ready, and a
  version failing its probe: apply -> every location back on the last good one, against
  the floor times the pushes each needs;
- N Workers applied at once until all are Ready, against the raw API create rate;
- the operator's peak RSS, and apiserver requests and writes per deployed Worker;
- apply -> serving for one Worker again while the N exist, against the same with 10;
- the operator restarted with every Worker Ready: its pushes, status writes and other
  writes, and the time until it has reported every Worker again.
Where the issue sets a target, the figure is followed by PASS or FAIL against it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import client

from edgeplane.api import Worker
from edgeplane.compile import Sources, compile_worker
from edgeplane.distribute.client import AgentClient, Endpoint
from edgeplane.localstack.cluster import REPO, Cluster
from edgeplane.localstack.stack import Stack
from edgeplane.wire import Deployment

GROUP, VERSION = "edgeplane.io", "v1alpha1"


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def script(text: str) -> str:
    return f'export default {{ fetch() {{ return new Response("{text}"); }} }};\n'


def worker_body(name: str, text: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Worker",
        "metadata": {"name": name},
        "spec": {
            "compatibilityDate": "2025-01-01",
            "modules": [{"name": "index.js", "inline": script(text)}],
        },
    }


def is_ready(obj: dict[str, Any], generation: int | None = None) -> bool:
    status = obj.get("status") or {}
    if generation is not None and status.get("observedGeneration") != generation:
        return False
    return any(
        c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions", [])
    )


def floor(stack: Stack, core: client.CoreV1Api, runs: int) -> tuple[float, float]:
    """Median of one push to one agent (until served) and of one apiserver write."""
    agent = stack.agents[0]
    ep = Endpoint(agent.name, agent.api_url, agent.token)

    async def pushes() -> list[float]:
        agents = AgentClient()
        out = []
        try:
            for i in range(runs):
                w = Worker.model_validate(
                    {"metadata": {"name": "floor", "namespace": "bench"},
                     "spec": worker_body("floor", f"floor {i}")["spec"]}
                )
                b = compile_worker(w, Sources())
                d = Deployment(worker=b.worker, primary=b.version or "", versions=(b,))
                t = time.perf_counter()
                await agents.put(ep, d)
                out.append(time.perf_counter() - t)
            await agents.delete(ep, "bench.floor")
        finally:
            await agents.close()
        return out

    push_times = asyncio.run(pushes())
    core.create_namespaced_config_map(
        "bench", client.V1ConfigMap(metadata=client.V1ObjectMeta(name="floor"))
    )
    writes = []
    for i in range(runs):
        t = time.perf_counter()
        core.patch_namespaced_config_map("floor", "bench", {"data": {"i": str(i)}})
        writes.append(time.perf_counter() - t)
    return statistics.median(push_times), statistics.median(writes)


def one_worker(custom: client.CustomObjectsApi) -> None:
    """The Worker (and its route) whose updates `update_latency` times, once Ready."""
    custom.create_namespaced_custom_object(GROUP, VERSION, "bench", "workerroutes", {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "WorkerRoute",
        "metadata": {"name": "lat"}, "spec": {"pattern": f"{LAT_HOST}/*", "worker": "lat"},
    })
    custom.create_namespaced_custom_object(GROUP, VERSION, "bench", "workers",
                                           worker_body("lat", "v0"))
    while not is_ready(custom.get_namespaced_custom_object(GROUP, VERSION, "bench", "workers",
                                                           "lat")):
        time.sleep(0.05)


LAT_HOST = "bench.example.com"


def update_latency(stack: Stack, custom: client.CustomObjectsApi, runs: int, tag: str
                   ) -> tuple[list[float], list[float]]:
    """Seconds from applying an update of Worker `lat` to Ready and to served everywhere."""
    to_ready, to_serving = [], []
    for i in range(1, runs + 1):
        text = f"{tag}{i}"
        t0 = time.perf_counter()
        obj = custom.patch_namespaced_custom_object(
            GROUP, VERSION, "bench", "workers", "lat",
            {"spec": worker_body("lat", text)["spec"]},
        )
        gen = obj["metadata"]["generation"]
        ready_at = serving_at = None
        while ready_at is None or serving_at is None:
            now = time.perf_counter() - t0
            if serving_at is None and all(a.fetch(LAT_HOST) == (200, text) for a in stack.agents):
                serving_at = now
            if ready_at is None and is_ready(custom.get_namespaced_custom_object(
                    GROUP, VERSION, "bench", "workers", "lat"), gen):
                ready_at = now
            if now > 60:
                raise RuntimeError(f"run {i} did not converge within 60 s")
        to_ready.append(ready_at)
        to_serving.append(serving_at)
    return to_ready, to_serving


def few_workers(custom: client.CustomObjectsApi, count: int) -> None:
    """`count` Workers besides `lat`, all Ready: the small fleet the latency is compared with."""
    for i in range(count):
        custom.create_namespaced_custom_object(GROUP, VERSION, "bench", "workers",
                                               worker_body(f"few{i}", f"few{i}"))
    while sum(is_ready(o) for o in custom.list_namespaced_custom_object(
            GROUP, VERSION, "bench", "workers")["items"]) < count:
        time.sleep(0.2)


def sick_script(text: str) -> str:
    return (
        'export default { fetch(r) { return new URL(r.url).pathname === "/healthz" '
        f'? new Response("sick", {{ status: 500 }}) : new Response("{text}"); }} }};\n'
    )


def rollout_latency(stack: Stack, custom: client.CustomObjectsApi, runs: int
                    ) -> tuple[list[float], list[float]]:
    """Seconds from apply to Ready for a two-step Progressive rollout with a probe gate, and
    from applying a version whose probe fails to every location serving the previous."""
    host = "roll.example.com"
    rollout = {"strategy": "Progressive", "steps": [
        {"count": 1, "gate": {"probe": {"path": "/healthz", "expectStatus": 200}}}]}
    custom.create_namespaced_custom_object(GROUP, VERSION, "bench", "workerroutes", {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "WorkerRoute",
        "metadata": {"name": "roll"}, "spec": {"pattern": f"{host}/*", "worker": "roll"},
    })
    body = worker_body("roll", "r0")
    custom.create_namespaced_custom_object(GROUP, VERSION, "bench", "workers", body)

    def get() -> dict[str, Any]:
        return custom.get_namespaced_custom_object(GROUP, VERSION, "bench", "workers", "roll")

    while not is_ready(get()):
        time.sleep(0.05)
    to_ready, to_back = [], []
    for i in range(1, runs + 1):
        good = f"r{i}"
        t0 = time.perf_counter()
        spec = {**worker_body("roll", good)["spec"], "rollout": rollout}
        gen = custom.patch_namespaced_custom_object(
            GROUP, VERSION, "bench", "workers", "roll", {"spec": spec})["metadata"]["generation"]
        while not is_ready(get(), gen):
            if time.perf_counter() - t0 > 60:
                raise RuntimeError(f"rollout {i} did not complete within 60 s: {get()['status']}")
        to_ready.append(time.perf_counter() - t0)

        t0 = time.perf_counter()
        sick = {**spec, "modules": [{"name": "index.js", "inline": sick_script(f"bad{i}")}]}
        gen = custom.patch_namespaced_custom_object(
            GROUP, VERSION, "bench", "workers", "roll", {"spec": sick})["metadata"]["generation"]
        while True:
            obj = get()
            status = obj.get("status") or {}
            reasons = [c["reason"] for c in status.get("conditions", []) if c["type"] == "Ready"]
            if (status.get("observedGeneration") == gen and reasons == ["RolledBack"]
                    and all(a.fetch(host) == (200, good) for a in stack.agents)):
                break
            if time.perf_counter() - t0 > 60:
                raise RuntimeError(f"rollback {i} did not happen within 60 s: {status}")
        to_back.append(time.perf_counter() - t0)
    return to_ready, to_back


WRITES = {"POST", "PUT", "PATCH", "DELETE", "APPLY"}


def many_workers(
    cluster: Cluster, custom: client.CustomObjectsApi, api: client.ApiClient, count: int
) -> tuple[float, float, Counter[str], list[str]]:
    """(seconds to create them all, seconds until all Ready, apiserver requests per Worker by
    verb and resource, this script's own creates, lists and scrapes left out, and the
    Workers whose status was written more than once, from the apiserver's audit log)."""
    ns = "bench-many"
    client.CoreV1Api(api).create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=ns))
    )
    before = cluster.requests_served()
    since = time.time()
    t0 = time.perf_counter()
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(
            lambda i: custom.create_namespaced_custom_object(
                GROUP, VERSION, ns, "workers", worker_body(f"w{i}", f"w{i}")),
            range(count),
        ))
    created = time.perf_counter() - t0
    polls, limit = 0, max(1800, count * 0.3)
    while True:
        polls += 1
        items = custom.list_namespaced_custom_object(GROUP, VERSION, ns, "workers")["items"]
        if sum(is_ready(o) for o in items) == count:
            break
        if time.perf_counter() - t0 > limit:
            raise RuntimeError(f"not all Ready within {limit:.0f} s")
        # A LIST of 10,000 Workers costs the apiserver (and this machine's two cores) more
        # than a second: poll less often as they grow, not to slow what is measured.
        time.sleep(max(1.0, count / 1000))
    all_ready = time.perf_counter() - t0
    time.sleep(5)  # let trailing status writes land before counting
    requests = cluster.requests_served()
    requests.subtract(before)
    requests.subtract({"POST workers": count, "LIST workers": polls, "GET ?": 1})
    status = Counter(w.split()[2] for w in cluster.writes_since(since)
                     if w.startswith(f"patch workers/status {ns}/"))
    again = sorted((name for name, n in status.items() if n > 1), key=lambda n: -status[n])
    return created, all_ready, Counter({k: v / count for k, v in requests.items() if v > 0}), again


def scrape(url: str, name: str, **labels: str) -> float:
    """Sum of the operator's samples of one metric whose labels include `labels`."""
    with urllib.request.urlopen(url, timeout=10) as resp:
        text = resp.read().decode()
    total = 0.0
    for line in text.splitlines():
        head, _, value = line.rpartition(" ")
        sample, _, label_text = head.partition("{")
        if sample == name and all(f'{k}="{v}"' in label_text for k, v in labels.items()):
            total += float(value)
    return total


STATUS = {"workers/status", "workerroutes/status", "workerversions/status"}


@dataclass(frozen=True)
class Restart:
    ready_after: float  # seconds from starting the operator until it reported every Worker
    ready: float  # how many of them it reported Ready
    pushes: float
    status_writes: dict[str, float]  # "VERB resource/status" -> count
    other_writes: dict[str, float]
    reads: float


def restart(stack: Stack, custom: client.CustomObjectsApi, settle: float) -> Restart:
    """Stop the operator with every Worker Ready, start it again, and count what it did until
    it had reconciled and reported each Worker once (the `edgeplane_workers` gauge is kept
    by each reconcile's report), and for `settle` seconds after."""
    assert stack.cluster is not None and stack.operator is not None
    total = len(custom.list_cluster_custom_object(GROUP, VERSION, "workers")["items"])
    stack.operator.stop()
    before = stack.cluster.requests_served()
    t0 = time.perf_counter()
    stack.operator.start()
    url = stack.operator.metrics_url
    while scrape(url, "edgeplane_workers") < total:
        if time.perf_counter() - t0 > 1800:
            raise RuntimeError("the restarted operator did not report every Worker in 30 min")
        time.sleep(0.2)
    ready_after = time.perf_counter() - t0
    ready = scrape(url, "edgeplane_workers", ready="true")
    time.sleep(settle)  # trailing writes and the first health rounds count too
    pushes = scrape(url, "edgeplane_pushes_total")
    requests = stack.cluster.requests_served()
    requests.subtract(before)
    requests.subtract({"GET ?": 1})  # this script's scrape of the apiserver
    status, other, reads = {}, {}, 0.0
    for what, n in requests.items():
        verb, _, resource = what.partition(" ")
        if n <= 0:
            continue
        if verb in WRITES:
            (status if resource in STATUS else other)[what] = n
        else:
            reads += n
    return Restart(ready_after, ready, pushes, status, other, reads)


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workers", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--settle", type=float, default=10,
                        help="seconds counted after a restarted operator reported every Worker")
    args = parser.parse_args()
    stack = Stack(REPO / ".state" / f"bench-{os.getpid()}", agent_count=3)
    print("starting the local stack ...", flush=True)
    stack.up()
    try:
        assert stack.cluster is not None and stack.operator and stack.operator.proc
        api = stack.cluster.api_client()
        core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="bench")))
        # No claim, no route: the bench's namespace may route its two hosts.
        custom.create_cluster_custom_object(GROUP, VERSION, "hostclaims", {
            "apiVersion": f"{GROUP}/{VERSION}", "kind": "HostClaim", "metadata": {"name": "bench"},
            "spec": {"hosts": ["bench.example.com", "roll.example.com"], "namespaces": ["bench"]},
        })

        push, write = floor(stack, core, args.runs)
        fl = push + write
        print(f"floor: agent push+reload {push * 1000:.0f} ms + one API write "
              f"{write * 1000:.1f} ms = {fl * 1000:.0f} ms")

        few_workers(custom, 9)
        one_worker(custom)
        ready, serving = update_latency(stack, custom, args.runs, "v")
        for label, xs in (("apply->Ready", ready), ("apply->serving (3 locations)", serving)):
            p50, p99 = pct(xs, 50), pct(xs, 99)
            print(f"{label} with 10 Workers: p50 {p50 * 1000:.0f} ms ({p50 / fl:.1f}x floor), "
                  f"p99 {p99 * 1000:.0f} ms ({p99 / fl:.1f}x floor), n={len(xs)}", flush=True)

        # A rollout pushes twice (step 1, then the rest) and probes once; a rollback pushes
        # the bad version to one location and the good one back.
        rolled, back = rollout_latency(stack, custom, max(3, args.runs // 4))
        for label, xs, pushes in (("Progressive 2-step rollout apply->Ready", rolled, 2),
                                  ("failed probe apply->rolled back everywhere", back, 2)):
            p50, p99 = pct(xs, 50), pct(xs, 99)
            two = pushes * push + write
            print(f"{label}: p50 {p50 * 1000:.0f} ms ({p50 / two:.1f}x the {pushes}-push "
                  f"floor of {two * 1000:.0f} ms), p99 {p99 * 1000:.0f} ms, n={len(xs)}")

        created, all_ready, per_worker, again = many_workers(
            stack.cluster, custom, api, args.workers
        )
        print(f"{args.workers} Workers applied at once: created in {created:.1f} s "
              f"(raw API create rate {args.workers / created:.0f}/s); all Ready after "
              f"{all_ready:.1f} s ({all_ready / created:.1f}x the create time)")
        writes = {k: n for k, n in per_worker.items() if k.split()[0] in WRITES}
        # EdgeTarget status writes are per location (its count, as a burst changes it at
        # each health round), not per Worker; Lease renewals are the apiserver's own (one
        # replica takes none): both shown apart, so the target reads per Worker.
        apart = {k: n for k, n in writes.items()
                 if k.split()[1].startswith(("edgetargets", "leases"))}
        own = sum(writes.values()) - sum(apart.values())
        print(f"apiserver requests per deployed Worker (all clients less this script): "
              f"{sum(per_worker.values()):.1f}, of which writes {sum(writes.values()):.3f}: "
              f"{own:.3f} to the Worker's objects [{verdict(own <= 3)}: target <= 3], "
              f"and apart: {', '.join(f'{k} {n:.3f}' for k, n in sorted(apart.items()))}")
        for what, n in per_worker.most_common():
            if n >= 0.05 or (what in writes and what not in apart):
                print(f"  {what}: {n:.3f}")
        if again:  # what to look for in the operator's log
            print(f"  Workers whose status was written more than once: {len(again)}, e.g. "
                  f"{', '.join(again[:5])}")
        print(f"operator peak RSS: {peak_rss_mib(stack.operator.proc.popen.pid):.0f} MiB",
              flush=True)

        _, serving_n = update_latency(stack, custom, args.runs, "n")
        small, large = pct(serving, 50), pct(serving_n, 50)
        print(f"apply->serving (3 locations) with {args.workers} Workers: p50 "
              f"{large * 1000:.0f} ms, {large / small:.2f}x the p50 with 10 "
              f"[{verdict(large / small <= 1.5)}: target <= 1.5x]", flush=True)

        r = restart(stack, custom, args.settle)
        status, other = sum(r.status_writes.values()), sum(r.other_writes.values())
        # Worker `roll` ends rolled back, so not Ready: every other one is.
        print(f"operator restarted with {args.workers + 11} Workers in sync: every Worker "
              f"reported after {r.ready_after:.1f} s ({r.ready:.0f} Ready) "
              f"[{verdict(r.ready_after <= 60)}: <= 60 s]; "
              f"then {args.settle:.0f} s more: pushes {r.pushes:.0f} "
              f"[{verdict(r.pushes == 0)}: 0], status writes {status:.0f} "
              f"[{verdict(status == 0)}: 0], other writes {other:.0f}, reads {r.reads:.0f}")
        # Among the other writes: EdgeTarget heartbeats (each every 30 s, counted from the
        # lastHeartbeat written) and the apiserver's own leases.
        for what, n in sorted({**r.status_writes, **r.other_writes}.items()):
            print(f"  {what}: {n:.0f}")
    finally:
        stack.down()
    return 0


if __name__ == "__main__":
    sys.exit(main())
