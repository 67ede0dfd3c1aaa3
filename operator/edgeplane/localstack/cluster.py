"""A real local Kubernetes control plane: etcd, kube-apiserver and kube-controller-manager
of the pinned release (built by tools/build-k8s.sh), on free loopback ports, with client
certificate authentication and RBAC authorization.

    edgeplane cluster up [--state-dir DIR]     start it and write DIR/kubeconfig
    edgeplane cluster env [--state-dir DIR]    print `export KUBECONFIG=...` and PATH
    edgeplane cluster down [--state-dir DIR]   stop every process and remove DIR
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import yaml

from edgeplane.localstack import procs
from edgeplane.localstack.pki import CertificateAuthority, KeyPair, write_rsa_key

REPO = Path(__file__).resolve().parents[3]
DEFAULT_STATE_DIR = REPO / ".state" / "cluster"


# Writes to edgeplane.io objects, at Metadata level (no bodies: a Secret's value never
# lands here): what a test that counts writes shows when it finds some.
AUDIT_POLICY = """apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
  verbs: [create, update, patch, delete, deletecollection]
  resources: [{group: edgeplane.io}]
- level: None
"""


class ClusterError(RuntimeError):
    pass


def built_bin_dir(env_var: str, script: str) -> Path:
    """$`env_var`, else the directory `tools/<script>` prints last: its cached build
    (built first on a fresh machine)."""
    explicit = os.environ.get(env_var)
    if explicit:
        return Path(explicit)
    path = REPO / "tools" / script
    out = subprocess.run([str(path)], check=True, stdout=subprocess.PIPE, text=True)
    return Path(out.stdout.strip().splitlines()[-1])


def k8s_bin_dir() -> Path:
    """$EDGEPLANE_K8S_BIN, else the cached build (building it on a fresh machine)."""
    return built_bin_dir("EDGEPLANE_K8S_BIN", "build-k8s.sh")


@dataclass
class Cluster:
    state_dir: Path
    bin_dir: Path = field(default_factory=k8s_bin_dir)
    tie_to_parent: bool = False
    procs: list[procs.Proc] = field(default_factory=list)
    api_port: int = 0

    @property
    def kubeconfig(self) -> Path:
        return self.state_dir / "kubeconfig"

    @property
    def client_ca(self) -> Path:
        """The CA the apiserver trusts for client certificates (--client-ca-file)."""
        return self.state_dir / "pki" / "ca.crt"

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.api_port}"

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """Run the pinned kubectl against this cluster; raises with stderr on failure."""
        cmd = [str(self.bin_dir / "kubectl"), "--kubeconfig", str(self.kubeconfig), *args]
        res = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout)
        if check and res.returncode != 0:
            raise ClusterError(f"kubectl {' '.join(args)} failed: {res.stderr.strip()}")
        return res

    def requests_served(self) -> Counter[str]:
        """Requests the apiserver served so far, by "VERB resource[/subresource]" (its
        apiserver_request_total)."""
        out: Counter[str] = Counter()
        for line in self.kubectl("get", "--raw", "/metrics").stdout.splitlines():
            if line.startswith("apiserver_request_total{"):
                labels = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}", 1)[0]))
                sub = f"/{labels['subresource']}" if labels.get("subresource") else ""
                out[f"{labels.get('verb', '?')} {labels.get('resource', '?')}{sub}"] += float(
                    line.rpartition(" ")[2]
                )
        return out

    @property
    def audit_log(self) -> Path:
        return self.state_dir / "audit.log"

    def writes_since(self, since: float) -> list[str]:
        """Writes to edgeplane.io objects the apiserver completed at or after `since` (a
        time.time()), as "VERB resource[/sub] namespace/name by user", from its audit log:
        what a test that counts writes names when it finds some."""
        out = []
        if not self.audit_log.exists():
            return out
        with self.audit_log.open(errors="replace") as f:
            for line in f:
                ev = json.loads(line)
                stamp = datetime.fromisoformat(ev["stageTimestamp"].replace("Z", "+00:00"))
                if stamp.timestamp() < since:
                    continue
                ref = ev.get("objectRef") or {}
                sub = f"/{ref['subresource']}" if ref.get("subresource") else ""
                out.append(f"{ev['verb']} {ref.get('resource')}{sub} {ref.get('namespace', '')}/"
                           f"{ref.get('name', '')} by {ev['user'].get('username')} "
                           f"({ev.get('responseStatus', {}).get('code')})")
        return out

    def api_client(self):  # type: ignore[no-untyped-def]
        """A kubernetes.client.ApiClient authenticated as the cluster admin."""
        from kubernetes import config

        return config.new_client_from_config(config_file=str(self.kubeconfig))

    # -- lifecycle -----------------------------------------------------------------------

    def up(self, timeout: float = 120) -> None:
        if self.state_dir.exists():
            raise ClusterError(
                f"{self.state_dir} exists: a cluster may be running there; "
                "run `edgeplane cluster down` first"
            )
        self.state_dir.mkdir(parents=True)
        try:
            self._start(timeout)
        except BaseException:
            self.down()
            raise

    def _start(self, timeout: float) -> None:
        pki = self.state_dir / "pki"
        ca = CertificateAuthority(pki)
        serving = ca.issue("apiserver", "kube-apiserver", server_hosts=("127.0.0.1", "localhost"))
        admin = ca.issue("admin", "edgeplane-admin", org="system:masters")
        kcm = ca.issue("controller-manager", "system:kube-controller-manager")
        sa_key = write_rsa_key(pki / "service-account.key")

        etcd_port, etcd_peer, self.api_port, kcm_port = (procs.free_port() for _ in range(4))
        self._write_kubeconfig(self.kubeconfig, ca.pair, admin, "admin")
        kcm_kubeconfig = self.state_dir / "controller-manager.kubeconfig"
        self._write_kubeconfig(kcm_kubeconfig, ca.pair, kcm, "kube-controller-manager")

        self._spawn(
            "etcd",
            self.bin_dir / "etcd",
            f"--data-dir={self.state_dir / 'etcd'}",
            f"--listen-client-url=http://127.0.0.1:{etcd_port}",
            f"--listen-peer-url=http://127.0.0.1:{etcd_peer}",
        )
        audit_policy = pki / "audit-policy.yaml"
        audit_policy.write_text(AUDIT_POLICY)
        self._spawn(
            "kube-apiserver",
            self.bin_dir / "kube-apiserver",
            f"--etcd-servers=http://127.0.0.1:{etcd_port}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={self.api_port}",
            f"--cert-dir={pki}",
            f"--tls-cert-file={serving.cert}",
            f"--tls-private-key-file={serving.key}",
            f"--client-ca-file={ca.pair.cert}",
            "--authorization-mode=RBAC",
            f"--service-account-key-file={sa_key}",
            f"--service-account-signing-key-file={sa_key}",
            "--service-account-issuer=https://kubernetes.default.svc",
            # Only an address range for Service objects; nothing is routed to it.
            "--service-cluster-ip-range=10.96.0.0/16",
            # No Pods run here, so no Endpoints for the `kubernetes` Service.
            "--endpoint-reconciler-type=none",
            "--profiling=false",
            f"--audit-policy-file={audit_policy}",
            f"--audit-log-path={self.audit_log}",
            "--audit-log-format=json",
            "--audit-log-maxsize=200",  # MB; then one older file is kept
            "--audit-log-maxbackup=1",
        )
        self._wait_ready(f"{self.server}/readyz", ca.pair, admin, timeout)
        self._spawn(
            "kube-controller-manager",
            self.bin_dir / "kube-controller-manager",
            f"--kubeconfig={kcm_kubeconfig}",
            f"--authentication-kubeconfig={kcm_kubeconfig}",
            f"--authorization-kubeconfig={kcm_kubeconfig}",
            "--bind-address=127.0.0.1",
            f"--secure-port={kcm_port}",
            f"--cert-dir={pki / 'kcm'}",
            "--leader-elect=false",
            f"--root-ca-file={ca.pair.cert}",
            f"--service-account-private-key-file={sa_key}",
            "--use-service-account-credentials=true",
            f"--cluster-signing-cert-file={ca.pair.cert}",
            f"--cluster-signing-key-file={ca.pair.key}",
            "--profiling=false",
        )
        # kube-controller-manager serves with a self-signed certificate of its own.
        self._wait_ready(
            f"https://127.0.0.1:{kcm_port}/healthz", ca.pair, admin, timeout, verify=False
        )

    def _spawn(self, name: str, *argv: str | os.PathLike[str]) -> None:
        self.procs.append(
            procs.start(name, argv, self.state_dir, tie_to_parent=self.tie_to_parent)
        )

    def _wait_ready(
        self, url: str, ca: KeyPair, client: KeyPair, timeout: float, *, verify: bool = True
    ) -> None:
        ctx = ssl.create_default_context(cafile=str(ca.cert))
        if not verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        ctx.load_cert_chain(str(client.cert), str(client.key))
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            for p in self.procs:
                if not p.alive():
                    raise ClusterError(f"{p.name} exited early:\n{p.log_tail()}")
            try:
                with urllib.request.urlopen(url, context=ctx, timeout=5) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError) as e:
                last = str(e)
            time.sleep(0.2)
        raise ClusterError(f"{url} not ready after {timeout:.0f}s: {last}")

    def _write_kubeconfig(self, path: Path, ca: KeyPair, client: KeyPair, user: str) -> None:
        cfg = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "edgeplane-local",
                    "cluster": {"server": self.server, "certificate-authority": str(ca.cert)},
                }
            ],
            "users": [
                {
                    "name": user,
                    "user": {
                        "client-certificate": str(client.cert),
                        "client-key": str(client.key),
                    },
                }
            ],
            "contexts": [
                {"name": "edgeplane-local", "context": {"cluster": "edgeplane-local", "user": user}}
            ],
            "current-context": "edgeplane-local",
        }
        path.write_text(yaml.safe_dump(cfg))
        path.chmod(0o600)

    # -- faults, for tests ---------------------------------------------------------------

    def proc(self, name: str) -> procs.Proc:
        return next(p for p in self.procs if p.name == name)

    def restart(self, name: str, *, kill: bool = True, down_for: float = 0.0,
                timeout: float = 120) -> None:
        """SIGKILL (or, with kill=False, stop gracefully) one of etcd, kube-apiserver or
        kube-controller-manager, keep it down for `down_for` seconds, and start it again
        with the same argv (same ports, same data) and wait until the apiserver is ready."""
        self.wait_namespaces_deleted()
        old = self.proc(name)
        if kill:
            procs.signal_group(old.popen.pid, signal.SIGKILL)
            old.popen.wait(10)
        else:
            procs.stop(old)
        time.sleep(down_for)
        new = procs.start(name, old.popen.args, self.state_dir, tie_to_parent=self.tie_to_parent)
        self.procs[self.procs.index(old)] = new
        self.wait_ready(timeout)

    def pause(self, name: str) -> None:
        """SIGSTOP one process: it keeps its sockets open and answers nothing."""
        self.wait_namespaces_deleted()
        procs.signal_group(self.proc(name).popen.pid, signal.SIGSTOP)

    def resume(self, name: str) -> None:
        procs.signal_group(self.proc(name).popen.pid, signal.SIGCONT)

    def wait_namespaces_deleted(self, timeout: float = 60) -> None:
        """Before a fault: until no namespace is being deleted (at most `timeout`). While the
        apiserver restarts, its discovery lacks the CRDs for a moment; a namespace emptied
        then is deleted with its Workers left in etcd, where no write can reach them (found
        when a later test counted the writes a new operator made to them)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            res = self.kubectl("get", "namespaces", "-o", "json", check=False, timeout=10)
            if res.returncode == 0 and not any(
                (n.get("status") or {}).get("phase") == "Terminating"
                for n in json.loads(res.stdout)["items"]
            ):
                return
            time.sleep(0.5)

    def wait_ready(self, timeout: float = 120) -> None:
        """Until the apiserver's /readyz answers ok (it checks etcd too) and its discovery
        names every custom resource. A restarted apiserver is ready before it serves the
        CRDs' paths; a namespace deleted in that window is emptied by a namespace controller
        that does not see them, and the Workers in it are left in etcd for good."""
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            try:
                res = self.kubectl("get", "--raw", "/readyz", check=False, timeout=10)
                if res.returncode == 0 and res.stdout.strip() == "ok":
                    missing = self._undiscovered()
                    if not missing:
                        return
                    last = f"not yet in discovery: {', '.join(missing)}"
                else:
                    last = res.stderr.strip() or res.stdout.strip()
            except subprocess.TimeoutExpired:
                last = "no answer within 10s"
            time.sleep(0.3)
        raise ClusterError(f"the apiserver is not ready after {timeout:.0f}s: {last}")

    def _undiscovered(self) -> list[str]:
        """The custom resources (plural.group/version) its discovery does not list yet."""
        res = self.kubectl("get", "crd", "-o", "json", check=False, timeout=10)
        if res.returncode != 0:
            return ["customresourcedefinitions"]
        missing = []
        for crd in json.loads(res.stdout)["items"]:
            group, plural = crd["spec"]["group"], crd["spec"]["names"]["plural"]
            for version in (v["name"] for v in crd["spec"]["versions"] if v.get("served")):
                found = self.kubectl("get", "--raw", f"/apis/{group}/{version}", check=False,
                                     timeout=10)
                names = ({r["name"] for r in json.loads(found.stdout).get("resources", [])}
                         if found.returncode == 0 else set())
                if plural not in names:
                    missing.append(f"{plural}.{group}/{version}")
        return missing

    def down(self) -> None:
        for p in reversed(self.procs):
            procs.stop(p)
        self.procs.clear()
        procs.stop_recorded(self.state_dir)
        shutil.rmtree(self.state_dir, ignore_errors=True)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="edgeplane cluster", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["up", "down", "env"])
    parser.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR,
                        help=f"where the cluster keeps its state (default {DEFAULT_STATE_DIR})")
    args = parser.parse_args(argv)
    state_dir: Path = args.state_dir.resolve()
    if args.action == "up":
        cluster = Cluster(state_dir)
        try:
            cluster.up()
        except ClusterError as e:
            print(f"edgeplane cluster: {e}", file=sys.stderr)
            return 1
        print(f"cluster ready at {cluster.server}; kubeconfig: {cluster.kubeconfig}")
        print(f"use it:  eval \"$(edgeplane cluster env --state-dir {state_dir})\"")
        return 0
    if args.action == "env":
        if not (state_dir / "kubeconfig").exists():
            print(f"edgeplane cluster: no cluster in {state_dir}", file=sys.stderr)
            return 1
        print(f"export KUBECONFIG={state_dir / 'kubeconfig'}")
        print(f"export PATH={k8s_bin_dir()}:$PATH")
        return 0
    stopped = procs.stop_recorded(state_dir)
    shutil.rmtree(state_dir, ignore_errors=True)
    print(f"stopped {', '.join(stopped) or 'nothing'}; removed {state_dir}")
    return 0
