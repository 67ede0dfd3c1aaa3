"""A chaos soak of the whole local stack (apiserver, operator, three edge locations).

    .venv/bin/python bench/soak.py [--duration 600] [--seed N] [--kinds operator,agent,...]

For `duration` seconds, at once:
- a driver creates, updates (AllAtOnce), rolls out (Progressive, a probe gate on one
  location first), pins (spec.version = a version it saw accepted) and deletes Workers in
  `slots` churn slots, each with its own route;
- clients request, without pause, two steady Workers (created before the chaos, never
  changed; one in the churn namespace, so sharing the churned Workers' cells, one in
  another) at every location, and every churn slot's host at one location;
- a fault injector, one fault at a time every 2-6 s (each kind once per round, in a
  random order; past `duration` only until every kind was injected once), SIGKILLs and
  starts again: the operator (`operator`), an agent alone (`agent`, its workerds keep
  serving), an agent with its workerds (`location`), one workerd process of a location,
  front or cell (`workerd`, the agent starts it again), the kube-apiserver (`apiserver`)
  or etcd (`etcd`, only when asked for with --kinds).

Every Worker's script answers "<name> <marker>", the marker being unique to each spec the
driver writes, so what a location serves names its version.

Then the faults stop, every process runs again, and the checks are:
1. convergence, within 60 s of the moment the faults and the driver stopped: every Worker
   is Ready at its generation, its readyVersion is the version its spec asks for (the
   pinned one, or the one its modules compile to), status.targets has every location Ready
   at readyVersion, and every location, asked over HTTP with the Worker's host, answers
   that version's marker; every deleted Worker is gone from the apiserver and served
   (HTTP 200) nowhere;
2. no accepted version lost: every version the soak saw as a Worker's readyVersion while
   Ready still exists as a WorkerVersion (unless the operator's retention, 10 newer
   versions, allowed pruning it), and the oldest of them per live churn Worker, pinned,
   becomes Ready and is served at every location within 60 s;
3. no failed request to a steady Worker at a healthy location. A location is under fault
   from the moment a fault aimed at it (agent, location, workerd) is injected until the
   injector has seen it answer both steady Workers correctly again; a request is at a
   healthy location when no fault at its location was in progress at any time from 1 s
   before it was sent to 1 s after its answer. Operator and apiserver/etcd faults are
   faults at no location: the data plane must ride through them without a failure.
   Requests to churned Workers are counted and classified, not checked (they are being
   changed, deleted and created). A client that stopped sending fails the checks too.

Printed: faults by kind, operations by kind (and those the apiserver refused or missed),
requests, failures by cause, convergence time. The exit code is 1 if any check fails.
`soak(stack, duration)` is the core, used by this CLI and by tests/e2e/test_soak.py.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import random
import re
import signal
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client

from edgeplane.edge.cells import recorded_pids
from edgeplane.localstack.cluster import REPO
from edgeplane.localstack.stack import Agent, Stack
from edgeplane.localstack.traffic import Answer, Load, eventually

GROUP, VERSION = "edgeplane.io", "v1alpha1"
KINDS = ("operator", "agent", "location", "workerd", "apiserver", "etcd")
DEFAULT_KINDS = ("operator", "agent", "location", "workerd", "apiserver")
RETAINED = 10  # the operator's --versions-retained default
MARGIN = 1.0  # seconds around a request in which a fault at its location makes it unhealthy
CONVERGE = 60.0
MARKER_RE = re.compile(r'new Response\("([a-z0-9-]+) ([a-z0-9]+)"\)')


def script(name: str, marker: str) -> str:
    return f'export default {{ fetch() {{ return new Response("{name} {marker}"); }} }};\n'


def worker_spec(name: str, marker: str) -> dict[str, Any]:
    return {"compatibilityDate": "2025-01-01",
            "modules": [{"name": "index.js", "inline": script(name, marker)}]}


def spec_marker(spec: dict[str, Any]) -> str | None:
    m = MARKER_RE.search(str((spec.get("modules") or [{}])[0].get("inline", "")))
    return m.group(2) if m else None


def ready(obj: dict[str, Any]) -> bool:
    status = obj.get("status") or {}
    return status.get("observedGeneration") == obj["metadata"]["generation"] and any(
        c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions", []))


@dataclass
class Fault:
    kind: str
    location: str | None
    start: float
    end: float = float("inf")


@dataclass
class SoakResult:
    duration: float
    seed: int
    faults: Counter[str] = field(default_factory=Counter)
    operations: Counter[str] = field(default_factory=Counter)
    op_errors: Counter[str] = field(default_factory=Counter)
    requests: Counter[str] = field(default_factory=Counter)
    failures: Counter[str] = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)  # failure -> when, first
    convergence: float | None = None
    accepted: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def report(self) -> str:
        def lines(c: Counter[str]) -> str:
            return "".join(f"\n  {k}: {n}" for k, n in sorted(c.items())) or "\n  none"

        conv = f"{self.convergence:.1f} s" if self.convergence is not None else "NOT within 60 s"
        return (
            f"soak: {self.duration:.0f} s of chaos, seed {self.seed}\n"
            f"faults injected: {sum(self.faults.values())}{lines(self.faults)}\n"
            f"operations: {sum(self.operations.values())}{lines(self.operations)}\n"
            f"operations the apiserver refused or missed: {sum(self.op_errors.values())}"
            f"{lines(self.op_errors)}\n"
            f"requests: {sum(self.requests.values())}{lines(self.requests)}\n"
            f"failures by cause: {sum(self.failures.values())}{lines(self.failures)}\n"
            f"when each cause was seen (seconds into the chaos) and its first answer:"
            + "".join(f"\n  {k}: {v}" for k, v in sorted(self.examples.items())) + "\n"
            f"versions seen accepted: {self.accepted}\n"
            f"convergence after the faults and changes stopped: {conv}\n"
            + ("checks: all passed" if self.ok else
               "checks FAILED:" + "".join(f"\n  - {p}" for p in self.problems))
        )


def cause(a: Answer, expected: str) -> str | None:
    """Why an answer is a failure, or None."""
    if a.status == 0:
        for words in ("refused", "reset", "timed out", "Remote end closed", "IncompleteRead",
                      "EOF"):
            if words in a.body:
                return f"no answer ({words})"
        return f"no answer ({a.body[:60]})"
    if a.status != 200:
        return f"HTTP {a.status}"
    return None if a.body == expected else "wrong body"


class Resources:
    """The edgeplane resources through the apiserver (one per thread: the client is not
    thread-safe)."""

    def __init__(self, stack: Stack) -> None:
        assert stack.cluster is not None
        self.api = stack.cluster.api_client()
        self.custom = client.CustomObjectsApi(self.api)

    def get(self, ns: str, plural: str, name: str) -> dict[str, Any] | None:
        try:
            return dict(self.custom.get_namespaced_custom_object(
                GROUP, VERSION, ns, plural, name, _request_timeout=10))
        except client.ApiException as e:
            if e.status == 404:
                return None
            raise

    def list(self, ns: str, plural: str) -> list[dict[str, Any]]:
        return list(self.custom.list_namespaced_custom_object(
            GROUP, VERSION, ns, plural, _request_timeout=10)["items"])

    def create(self, ns: str, plural: str, kind: str, name: str, spec: dict[str, Any]) -> None:
        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": kind,
                "metadata": {"name": name}, "spec": spec}
        self.custom.create_namespaced_custom_object(GROUP, VERSION, ns, plural, body,
                                                    _request_timeout=10)

    def patch(self, ns: str, name: str, spec: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object(GROUP, VERSION, ns, "workers", name,
                                                   {"spec": spec}, _request_timeout=10)

    def delete(self, ns: str, plural: str, name: str) -> None:
        try:
            self.custom.delete_namespaced_custom_object(GROUP, VERSION, ns, plural, name,
                                                        _request_timeout=10)
        except client.ApiException as e:
            if e.status != 404:
                raise

    def close(self) -> None:
        self.api.close()


def op_error(e: Exception) -> str:
    if isinstance(e, client.ApiException):
        return f"HTTP {e.status} {e.reason}"
    return type(e).__name__


class Versions:
    """What the soak saw of the Workers' versions: id -> (worker, marker, created), and
    the ids it saw accepted (readyVersion while Ready), by Worker uid (a Worker deleted and
    created again under the same name has none of its predecessor's versions)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.known: dict[str, tuple[str, str, str]] = {}  # id -> worker, marker, created
        self.accepted: dict[str, set[str]] = {}  # worker uid -> ids
        self.present: set[str] = set()  # ids of the WorkerVersions in the last list

    def observe(self, kube: Resources, *namespaces: str) -> None:
        items = [v for ns in namespaces for v in kube.list(ns, "workerversions")]
        workers = [w for ns in namespaces for w in kube.list(ns, "workers")]
        with self.lock:
            self.present = {v["spec"]["versionId"] for v in items}
            for v in items:
                spec = v["spec"]
                marker = spec_marker(spec.get("source") or {})
                if marker:
                    self.known[spec["versionId"]] = (spec["worker"], marker, spec["created"])
            for w in workers:
                rv = (w.get("status") or {}).get("readyVersion")
                if rv and ready(w):
                    self.accepted.setdefault(w["metadata"]["uid"], set()).add(rv)

    def marker(self, vid: str | None) -> str | None:
        with self.lock:
            hit = [m for k, (_, m, _) in self.known.items() if vid and k.startswith(vid)]
        return hit[0] if len(hit) == 1 else None

    def recent_accepted(self, uid: str, n: int = 3) -> list[str]:
        with self.lock:
            # Pin only what is still retained: a pruned version is gone by design.
            ids = [i for i in self.accepted.get(uid, ()) if i in self.present and i in self.known]
            return sorted(ids, key=lambda i: self.known[i][2])[-n:]


class Soak:
    def __init__(self, stack: Stack, duration: float, seed: int, kinds: tuple[str, ...],
                 slots: int, log: Callable[[str], None]) -> None:
        assert stack.cluster is not None and stack.operator is not None
        self.stack, self.duration, self.kinds, self.log = stack, duration, kinds, log
        self.rng = random.Random(seed)
        self.result = SoakResult(duration, seed)
        tag = uuid.uuid4().hex[:6]
        self.ns, self.other_ns = f"soak-{tag}", f"soak-{tag}-b"
        self.slots = [f"w{i}" for i in range(slots)]
        self.steady = [(self.ns, "steady"), (self.other_ns, "steady")]
        self.faults: list[Fault] = []
        self.spans: dict[str, tuple[float, float, str]] = {}  # failure -> first, last, what
        self.versions = Versions()
        self.stop = threading.Event()
        self.t0 = self.quiet = time.monotonic()  # chaos starts; faults and changes stop
        self.markers = 0
        self.lock = threading.Lock()

    def host(self, ns: str, name: str) -> str:
        return f"{name}.{ns}.example.com"

    def new_marker(self) -> str:
        with self.lock:
            self.markers += 1
            return f"m{self.markers}"

    # -- setup and teardown ----------------------------------------------------------

    def setup(self, kube: Resources) -> None:
        assert self.stack.cluster is not None
        core = client.CoreV1Api(kube.api)
        for ns in (self.ns, self.other_ns):
            core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
            kube.custom.create_cluster_custom_object(GROUP, VERSION, "hostclaims", {
                "apiVersion": f"{GROUP}/{VERSION}", "kind": "HostClaim",
                "metadata": {"name": ns},
                "spec": {"hosts": [f"*.{ns}.example.com"], "namespaces": [ns]}})
        for ns, name in self.steady:
            self.put(kube, ns, name, "m0")
        for ns, name in self.steady:
            eventually(lambda ns=ns, name=name: all(
                a.fetch(self.host(ns, name)) == (200, f"{name} m0") for a in self.stack.agents),
                timeout=120, interval=0.5)

    def put(self, kube: Resources, ns: str, name: str, marker: str) -> None:
        kube.create(ns, "workerroutes", "WorkerRoute", name,
                    {"pattern": f"{self.host(ns, name)}/*", "worker": name})
        kube.create(ns, "workers", "Worker", name, worker_spec(name, marker))

    def teardown(self) -> None:
        assert self.stack.cluster is not None
        for ns in (self.ns, self.other_ns):
            self.stack.cluster.kubectl("delete", "hostclaim", ns, "--wait=false",
                                       "--ignore-not-found", check=False)
            self.stack.cluster.kubectl("delete", "namespace", ns, "--wait=false",
                                       "--ignore-not-found", check=False)

    # -- the driver ------------------------------------------------------------------

    def drive(self) -> None:
        kube = Resources(self.stack)
        try:
            while not self.stop.is_set():
                name = self.rng.choice(self.slots)
                try:
                    kind = self.operate(kube, name)
                except Exception as e:  # the apiserver may be down: count it, go on
                    self.result.op_errors[op_error(e)] += 1
                else:
                    if kind:
                        self.result.operations[kind] += 1
                self.stop.wait(self.rng.uniform(0.3, 1.5))
        finally:
            kube.close()

    def operate(self, kube: Resources, name: str) -> str | None:
        obj = kube.get(self.ns, "workers", name)
        if obj is None:
            self.put_missing(kube, name)
            return "create"
        if obj["metadata"].get("deletionTimestamp"):
            return None
        kind = self.rng.choices(["update", "rollout", "pin", "delete"], [4, 3, 2, 1])[0]
        if kind == "delete":
            kube.delete(self.ns, "workers", name)
            kube.delete(self.ns, "workerroutes", name)
            return kind
        spec = worker_spec(name, self.new_marker())
        if kind == "pin":
            choices = self.versions.recent_accepted(obj["metadata"]["uid"])
            if not choices:
                return None
            spec = {"version": self.rng.choice(choices)}
        else:
            spec["version"] = None
            spec["rollout"] = ({"strategy": "Progressive", "steps": [
                {"count": 1, "gate": {"probe": {"path": "/", "expectStatus": 200}}}]}
                if kind == "rollout" else None)
        kube.patch(self.ns, name, spec)
        return kind

    def put_missing(self, kube: Resources, name: str) -> None:
        if kube.get(self.ns, "workerroutes", name) is None:
            kube.create(self.ns, "workerroutes", "WorkerRoute", name,
                        {"pattern": f"{self.host(self.ns, name)}/*", "worker": name})
        kube.create(self.ns, "workers", "Worker", name, worker_spec(name, self.new_marker()))

    def observe(self) -> None:
        kube = Resources(self.stack)
        try:
            while not self.stop.is_set():
                with contextlib.suppress(Exception):  # the apiserver may be down
                    self.versions.observe(kube, self.ns, self.other_ns)
                self.stop.wait(0.5)
        finally:
            kube.close()

    # -- the fault injector ----------------------------------------------------------

    def inject_faults(self, until: float) -> None:
        order: list[str] = []
        # Past `until` only while some kind was not injected yet (Counter: one key a kind).
        while time.monotonic() < until or len(self.result.faults) < len(self.kinds):
            self.stop.wait(self.rng.uniform(2, 6))
            if time.monotonic() >= until and len(self.result.faults) == len(self.kinds):
                return
            if not order:  # each kind once per round, in a random order
                order = self.rng.sample(self.kinds, len(self.kinds))
            kind = order.pop()
            agent = self.rng.choice(self.stack.agents)
            where = agent.name if kind in ("agent", "location", "workerd") else None
            fault = Fault(kind, where, time.monotonic())
            self.faults.append(fault)
            try:
                self.inject(kind, agent)
                if where is not None:
                    self.await_serving(agent, kind)
            except Exception as e:
                self.result.problems.append(f"{kind} fault at {where or 'control plane'}: {e}")
                self.restore()
            fault.end = time.monotonic()
            self.result.faults[kind] += 1
            self.log(f"[{fault.start - self.t0:6.1f}s] {kind} {where or ''} "
                     f"({fault.end - fault.start:.1f} s)")

    def inject(self, kind: str, agent: Agent) -> None:
        assert self.stack.operator is not None and self.stack.cluster is not None
        down = self.rng.uniform(0, 2)
        if kind == "operator":
            self.stack.operator.kill()
            time.sleep(down)
            self.stack.operator.start()
        elif kind in ("agent", "location"):
            agent.kill_agent() if kind == "agent" else agent.kill()
            time.sleep(down)
            agent.start()
        elif kind == "workerd":
            pids = recorded_pids(agent.state_dir / "state" / "run")
            if not pids:
                raise RuntimeError(f"{agent.name} records no workerd process")
            os.kill(self.rng.choice(pids), signal.SIGKILL)
        else:
            self.stack.cluster.restart("kube-apiserver" if kind == "apiserver" else "etcd",
                                       down_for=down)

    def await_serving(self, agent: Agent, kind: str) -> None:
        """The fault at `agent` ends when it serves both steady Workers again."""
        try:
            eventually(lambda: all(agent.fetch(self.host(ns, n)) == (200, f"{n} m0")
                                   for ns, n in self.steady), timeout=90, interval=0.1)
        except AssertionError as e:
            raise RuntimeError(f"{agent.name} did not serve the steady Workers again "
                               f"within 90 s after the {kind} fault: {e}") from None

    def restore(self) -> None:
        assert self.stack.operator is not None and self.stack.cluster is not None
        for name in ("etcd", "kube-apiserver"):
            if not self.stack.cluster.proc(name).alive():
                self.stack.cluster.restart(name, kill=False)
        for a in self.stack.agents:
            a.ensure_started()
        self.stack.operator.ensure_started()

    # -- the run ---------------------------------------------------------------------

    def run(self) -> SoakResult:
        kube = Resources(self.stack)
        try:
            self.setup(kube)
            self.chaos()
            self.check(kube)
        finally:
            self.stop.set()
            self.restore()
            kube.close()
            self.teardown()
        return self.result

    def chaos(self) -> None:
        agents = self.stack.agents
        steady = [(Load(a, self.host(ns, n), threads=1), f"{n} m0", a.name)
                  for ns, n in self.steady for a in agents]
        churn = [Load(agents[i % len(agents)], self.host(self.ns, n), threads=1)
                 for i, n in enumerate(self.slots)]
        threads = [threading.Thread(target=f, daemon=True) for f in (self.drive, self.observe)]
        self.t0 = time.monotonic()
        try:
            for t in threads:
                t.start()
            self.inject_faults(self.t0 + self.duration)
        finally:
            self.stop.set()
            for t in threads:
                t.join(60)
            self.restore()
            # No fault and no change from here: convergence is timed from this moment.
            self.quiet = time.monotonic()
            for load in [load for load, _, _ in steady] + churn:
                if not load.running():
                    self.result.problems.append(f"a client of {load.host} at "
                                                f"{load.agent.name} died; see its stderr")
                load.stop()
        self.tally(steady, churn)

    def tally(self, steady: list[tuple[Load, str, str]], churn: list[Load]) -> None:
        """Requests and failures by Worker kind, location health and cause."""
        answers = [(a, load.host, expected, where) for load, expected, where in steady
                   for a in load.answers]
        for a, host, expected, where in answers:
            kinds = sorted({f.kind for f in self.faults if f.location == where
                            and f.start - MARGIN <= a.started + a.seconds
                            and a.started - MARGIN <= f.end})
            label = (f"steady, location under {'+'.join(kinds)} fault" if kinds
                     else "steady, healthy location")
            self.count(label, a, cause(a, expected), where, host)
            if not kinds and cause(a, expected):
                self.result.problems.append(
                    f"{host} at {where} failed at {a.started - self.t0:.1f} s "
                    f"(healthy): {a.status} {a.body[:200]}")
        for load in churn:
            for a in load.answers:
                self.count("churned Workers", a, cause(a, a.body) if a.status != 200 else None,
                           load.agent.name, load.host)

    def count(self, label: str, a: Answer, why: str | None, where: str, host: str
              ) -> None:
        self.result.requests[label] += 1
        if why:
            key = f"{label}: {why}"
            self.result.failures[key] += 1
            at = a.started - self.t0
            span = self.spans.setdefault(key, (at, at, f"{where} {host}: {a.status} "
                                                       f"{a.body[:100]!r}"))
            span = self.spans[key] = (min(span[0], at), max(span[1], at), span[2])
            self.result.examples[key] = f"{span[0]:.1f}-{span[1]:.1f} s, first {span[2]}"

    # -- the checks ------------------------------------------------------------------

    def check(self, kube: Resources) -> None:
        left = self.quiet + CONVERGE - time.monotonic()
        try:
            eventually(lambda: not self.mismatches(kube) or None, timeout=max(1.0, left),
                       interval=1)
            self.result.convergence = time.monotonic() - self.quiet
        except AssertionError:
            for m in self.mismatches(kube)[:20]:
                self.result.problems.append(f"not converged {CONVERGE:.0f} s after the "
                                            f"faults stopped: {m}")
            return
        self.check_versions(kube)

    def mismatches(self, kube: Resources) -> list[str]:
        """What differs between status, spec and what the locations serve; [] when
        converged."""
        try:
            self.versions.observe(kube, self.ns, self.other_ns)
        except Exception as e:
            return [f"apiserver: {op_error(e)}"]
        out = []
        for ns, name in [(self.ns, n) for n in self.slots] + self.steady:
            obj = kube.get(ns, "workers", name)
            out += self.mismatch(ns, name, obj)
        return out

    def mismatch(self, ns: str, name: str, obj: dict[str, Any] | None) -> list[str]:
        host = self.host(ns, name)
        if obj is None or obj["metadata"].get("deletionTimestamp"):
            gone = [] if obj is None else [f"{name}: still being deleted"]
            return gone + [f"{name}: deleted but served at {a.name}: {a.fetch(host)}"
                           for a in self.stack.agents if a.fetch(host)[0] == 200]
        spec, status = obj["spec"], obj.get("status") or {}
        want = self.versions.marker(spec["version"]) if spec.get("version") else spec_marker(spec)
        if not ready(obj):
            return [f"{name}: not Ready at generation {obj['metadata']['generation']}: "
                    f"{status.get('conditions')}"]
        rv = status.get("readyVersion")
        out = []
        if self.versions.marker(rv) != want:
            out.append(f"{name}: readyVersion {rv} is {self.versions.marker(rv)}, spec wants "
                       f"{want}")
        targets = {t["name"]: t for t in status.get("targets", [])}
        for a in self.stack.agents:
            t = targets.get(a.name, {})
            if t.get("version") != rv or t.get("state") != "Ready":
                out.append(f"{name}: target {a.name} {t.get('state')} {t.get('version')}")
        for a in self.stack.agents:
            got = a.fetch(host)
            if got != (200, f"{name} {want}"):
                out.append(f"{name}: {a.name} serves {got}, status says {want}")
        return out

    def check_versions(self, kube: Resources) -> None:
        """Every accepted version still retained; the oldest, pinned, serves everywhere."""
        present = {v["spec"]["versionId"] for v in kube.list(self.ns, "workerversions")}
        v = self.versions
        self.result.accepted = sum(len(ids) for ids in v.accepted.values())
        pins: dict[str, tuple[str, str]] = {}
        live = {w["metadata"]["uid"]: w["metadata"]["name"] for w in kube.list(self.ns, "workers")}
        for uid, ids in v.accepted.items():
            name = live.get(uid, "")
            if name not in self.slots:
                continue  # deleted (its versions go with it), or a steady Worker
            for vid in sorted(ids, key=lambda i: v.known.get(i, ("", "", ""))[2]):
                created = v.known.get(vid, ("", "", ""))[2]
                newer = sum(1 for w, _, c in v.known.values() if w == name and c > created)
                if vid not in present and newer < RETAINED:
                    self.result.problems.append(f"{name}: accepted version {vid} "
                                                f"({v.marker(vid)}) was lost")
                elif vid in present and name not in pins:
                    pins[name] = (vid, v.marker(vid) or "?")
        for name, (vid, _) in pins.items():
            kube.patch(self.ns, name, {"version": vid})
        try:
            eventually(lambda: not [m for n in pins for m in self.mismatch(
                self.ns, n, kube.get(self.ns, "workers", n))] or None,
                timeout=CONVERGE, interval=1)
        except AssertionError:
            self.result.problems += [
                f"pinned accepted version not served within {CONVERGE:.0f} s: {m}"
                for n in pins for m in self.mismatch(self.ns, n, kube.get(self.ns, "workers", n))]


def soak(stack: Stack, duration: float, seed: int | None = None,
         kinds: tuple[str, ...] = DEFAULT_KINDS, slots: int = 4,
         log: Callable[[str], None] = print) -> SoakResult:
    """Chaos on `stack` for `duration` seconds, then the checks (see the module's doc)."""
    seed = random.randrange(1 << 31) if seed is None else seed
    return Soak(stack, duration, seed, kinds, slots, log).run()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=90)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--slots", type=int, default=4)
    parser.add_argument("--kinds", default=",".join(DEFAULT_KINDS),
                        help=f"comma-separated, of {','.join(KINDS)}")
    args = parser.parse_args()
    kinds = tuple(k for k in args.kinds.split(",") if k)
    if not kinds or set(kinds) - set(KINDS):
        parser.error(f"--kinds: choose from {','.join(KINDS)}")
    # urllib3 warns of every retry while the apiserver restarts: the report counts them.
    logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)
    stack = Stack(REPO / ".state" / f"soak-{os.getpid()}", agent_count=3)
    print("starting the local stack ...", flush=True)
    stack.up()
    try:
        result = soak(stack, args.duration, args.seed, kinds, args.slots,
                      log=lambda s: print(s, flush=True))
    finally:
        stack.down()
    print(result.report())
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
