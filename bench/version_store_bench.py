"""etcd bytes per retained version, with version archives in ConfigMaps and with versions
in an OCI registry (issue #19). Prints figures and PASS/FAIL against the registry target
(<= 4 KiB of etcd per version). Run:
    .venv/bin/python bench/version_store_bench.py [--workers 1000] [--versions 10]

Real parts only: the local cluster (etcd, kube-apiserver, kube-controller-manager), the
real distribution registry (TLS, htpasswd), and the operator's own VersionStore.record,
driven directly (no agents: what lands in etcd does not depend on them). Each Worker's
code is one ~300 KB `url` module (a bundle built by CI) of JavaScript-like text that
gzips to ~80 KB, different in every version; the Worker objects are created first, so
only what recording versions adds is counted.

Two figures per mode:
- etcd: etcd's own `etcd_mvcc_db_total_size_in_use_in_bytes`, each time after a physical
  compaction to the current revision and a defragmentation (through etcd's JSON gateway),
  so that it is the live data, not history nor free pages; the growth over recording;
- objects: the sum of the JSON sizes of what was written (WorkerVersions and archive
  ConfigMaps), read back from the apiserver.
etcd's bbolt file fills 4 KiB pages, and does not split a leaf of four entries or fewer
(minKeysPerPage 2): entries over ~2 KB take about a page each, smaller ones two to a page.
A WorkerVersion as stored was 2,335 B (898 of them managedFields) and cost 4.1 KB; with
its defaults left out and its spec atomic it is ~1.5 KB (bbolt's rule read in its
source; the figures are this bench's).
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import hashlib
import json
import os
import random
import re
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from edgeplane.api import Worker
from edgeplane.compile import Sources, compile_worker
from edgeplane.kube.auth import async_api_client
from edgeplane.kube.client import Kube
from edgeplane.localstack.cluster import REPO, Cluster
from edgeplane.localstack.registry import Registry
from edgeplane.resolve.policy import UrlSettings
from edgeplane.resolve.sources import Resolver
from edgeplane.versions.artifacts import RegistrySettings
from edgeplane.versions.objects import WORKER_LABEL
from edgeplane.versions.registry import VersionRegistry
from edgeplane.versions.store import VersionStore

GROUP, VERSION = "edgeplane.io", "v1alpha1"
TARGET = 4096
BUNDLE_BYTES = 300_000
CONCURRENCY = 16


TEMPLATES = (
    "function {a}({b},{c}){{return {b}.{a}({n})||{c}}}",
    "if({a}.{b}===null){{{a}.{b}={c}({n})}}else{{return {c}}}",
    "const {a}={b}.{c}({n}),{b}={a}.length;",
    "for(let i=0;i<{a}.length;i++){{{b}[i]={c}[i]+{n}}}",
    'export const {a}={{{b}:{n},{c}:"{a}"}};',
)


def base_text(size: int) -> str:
    """JavaScript-like lines over 400 random identifiers: gzip takes 300 KB of it to
    ~80 KB, as it does a bundled framework app (#19); plain repetition would shrink far more."""
    rng = random.Random(19)
    names = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz_$") for _ in range(rng.randint(3, 12)))
             for _ in range(400)]
    lines, total = [], 0
    while total < size:
        line = rng.choice(TEMPLATES).format(
            a=rng.choice(names), b=rng.choice(names), c=rng.choice(names), n=rng.randint(0, 100)
        )
        lines.append(line)
        total += len(line) + 1
    return "\n".join(lines)[:size]


def code(base: str, worker: int, version: int) -> bytes:
    """The bundle of one version: the same framework, one line of its own (a deploy)."""
    return (f"// worker {worker} version {version}\n" + base).encode()


def url_of(worker: int, version: int) -> str:
    return f"https://ci.example.com/w{worker}/v{version}/index.js"


def worker_doc(ns: str, i: int, version: int, sha: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "Worker",
        "metadata": {"name": f"w{i}", "namespace": ns},
        "spec": {"compatibilityDate": "2025-01-01", "mainModule": "index.js", "modules": [
            {"name": "index.js", "url": url_of(i, version), "sha256": sha},
        ]},
    }


def etcd_url(cluster: Cluster) -> str:
    argv = [str(a) for a in cluster.proc("etcd").popen.args]
    return next(a.split("=", 1)[1] for a in argv if a.startswith("--listen-client-url="))


def _post(url: str, body: dict[str, Any], timeout: float = 600) -> dict[str, Any]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read() or b"{}")


def etcd_sizes(cluster: Cluster) -> dict[str, float]:
    """etcd's db size and size in use, after compacting all history and defragmenting."""
    base = etcd_url(cluster)
    rev = int(_post(f"{base}/v3/kv/range", {"key": "AA=="})["header"]["revision"])
    _post(f"{base}/v3/kv/compaction", {"revision": rev, "physical": True})
    _post(f"{base}/v3/maintenance/defragment", {})
    with urllib.request.urlopen(f"{base}/metrics", timeout=60) as resp:
        text = resp.read().decode()
    out = {}
    for name in ("etcd_mvcc_db_total_size_in_bytes", "etcd_mvcc_db_total_size_in_use_in_bytes"):
        m = re.search(rf"^{name} (\S+)$", text, re.M)
        out[name] = float(m.group(1)) if m else float("nan")
    return out


def apiserver_storage(cluster: Cluster) -> float:
    """The apiserver's own figure of the etcd db size (refreshed about once a minute)."""
    text = cluster.kubectl("get", "--raw", "/metrics").stdout
    m = re.search(r"^apiserver_storage_size_bytes\{[^}]*\} (\S+)$", text, re.M)
    return float(m.group(1)) if m else float("nan")


def json_sizes(cluster: Cluster, ns: str) -> tuple[int, int, int, int]:
    """(count, bytes) of the WorkerVersions and of the archive ConfigMaps, as JSON."""
    out = []
    for kind in ("workerversions", "configmaps"):
        count = size = 0
        cont = ""
        while True:
            path = (f"/apis/{GROUP}/{VERSION}/namespaces/{ns}/{kind}" if kind != "configmaps"
                    else f"/api/v1/namespaces/{ns}/configmaps")
            query = f"?limit=200&labelSelector={WORKER_LABEL}" + (f"&continue={cont}" if cont
                                                                 else "")
            body = json.loads(cluster.kubectl("get", "--raw", path + query, timeout=600).stdout)
            for item in body["items"]:
                count += 1
                size += len(json.dumps(item, separators=(",", ":")))
            cont = body["metadata"].get("continue") or ""
            if not cont:
                break
        out += [count, size]
    return out[0], out[1], out[2], out[3]


async def record_all(cluster: Cluster, ns: str, workers: int, versions: int, base: str,
                     registry: VersionRegistry | None) -> None:
    api = await async_api_client()
    kube = Kube(api)
    store = VersionStore(kube, Resolver(kube, UrlSettings()), retained=versions,
                         registry=registry)
    sem = asyncio.Semaphore(CONCURRENCY)

    async def one(i: int) -> None:
        async with sem:
            # As the operator sees the Worker: its uid owns the versions.
            live = await kube.custom.get_namespaced_custom_object(
                GROUP, VERSION, ns, "workers", f"w{i}")
            for v in range(versions):
                raw = code(base, i, v)
                sha = hashlib.sha256(raw).hexdigest()
                doc = worker_doc(ns, i, v, sha)
                doc["metadata"] = live["metadata"]
                worker = Worker.model_validate(doc)
                bundle = compile_worker(worker, Sources(urls={sha: raw}))
                await store.record(worker, bundle, keep=set(), first=v == 0)

    try:
        await asyncio.gather(*(one(i) for i in range(workers)))
    finally:
        await api.close()


def create_workers(cluster: Cluster, ns: str, workers: int, base: str) -> None:
    cluster.kubectl("create", "namespace", ns)
    for start in range(0, workers, 200):
        items = []
        for i in range(start, min(workers, start + 200)):
            sha = hashlib.sha256(code(base, i, 0)).hexdigest()
            items.append(worker_doc(ns, i, 0, sha))
        cluster.kubectl("create", "-f", "-",
                        input=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))


def run_mode(cluster: Cluster, label: str, ns: str, args: argparse.Namespace, base: str,
             registry: Registry | None, tmp: Path) -> float:
    create_workers(cluster, ns, args.workers, base)
    before = etcd_sizes(cluster)
    vr = None
    if registry is not None:
        creds = tmp / "registry-auth.json"
        creds.write_text(registry.dockerconfigjson())
        vr = VersionRegistry.configure(RegistrySettings(
            f"oci://{registry.host}/edgeplane/versions", str(creds), str(registry.ca)))
    t = time.perf_counter()

    async def go() -> None:
        try:
            await record_all(cluster, ns, args.workers, args.versions, base, vr)
        finally:
            if vr is not None:
                await vr.close()

    asyncio.run(go())
    took = time.perf_counter() - t
    after = etcd_sizes(cluster)
    n = args.workers * args.versions
    in_use = "etcd_mvcc_db_total_size_in_use_in_bytes"
    grew = after[in_use] - before[in_use]
    wv, wv_bytes, cm, cm_bytes = json_sizes(cluster, ns)
    print(f"[{label}] recorded {n} versions in {took:.0f} s; etcd in use "
          f"{before[in_use] / 2**20:.1f} -> {after[in_use] / 2**20:.1f} MiB (db "
          f"{after['etcd_mvcc_db_total_size_in_bytes'] / 2**20:.1f} MiB, apiserver_storage_"
          f"size_bytes {apiserver_storage(cluster) / 2**20:.1f} MiB)", flush=True)
    print(f"[{label}] etcd bytes per retained version: {grew / n:,.0f} (in-use growth / "
          f"{n}); objects written: {wv} WorkerVersions {wv_bytes / max(wv, 1):,.0f} B each, "
          f"{cm} archive ConfigMaps {cm_bytes / max(cm, 1):,.0f} B each = "
          f"{(wv_bytes + cm_bytes) / n:,.0f} B JSON per version", flush=True)
    return grew / n


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=1000)
    parser.add_argument("--versions", type=int, default=10)
    parser.add_argument("--modes", default="configmaps,registry")
    args = parser.parse_args()
    base = base_text(BUNDLE_BYTES)
    sample = code(base, 0, 0)
    print(f"bundle: {len(sample):,} B of text, {len(gzip.compress(sample, 6)):,} B gzip'd; "
          f"{args.workers} Workers x {args.versions} versions", flush=True)
    state = REPO / ".state" / f"version-bench-{os.getpid()}"
    cluster = Cluster(state / "cluster", tie_to_parent=True)
    registry = Registry(state / "registry", tie_to_parent=True)
    print("starting the local cluster and registry ...", flush=True)
    cluster.up()
    try:
        registry.up()
        os.environ["KUBECONFIG"] = str(cluster.kubeconfig)
        crds = sorted((REPO / "crds").glob("*.yaml"))
        cluster.kubectl("apply", "--server-side", *(f"-f{f}" for f in crds))
        cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd", "--all")
        per: dict[str, float] = {}
        for mode in args.modes.split(","):
            reg = registry if mode == "registry" else None
            per[mode] = run_mode(cluster, mode, f"bench-{mode}", args, base, reg, state)
        if "registry" in per:
            verdict = "PASS" if per["registry"] <= TARGET else "FAIL"
            print(f"registry: {per['registry']:,.0f} B of etcd per retained version, target "
                  f"<= {TARGET} B: {verdict}")
        if len(per) == 2 and per["registry"] > 0:
            print(f"ConfigMap archives take {per['configmaps'] / per['registry']:.0f}x the "
                  f"etcd bytes per version of the registry")
    finally:
        registry.down()
        cluster.down()
    return 0


if __name__ == "__main__":
    sys.exit(main())
