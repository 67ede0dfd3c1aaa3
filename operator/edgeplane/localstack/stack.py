"""The whole stack on one machine: the local control plane, edge locations (an agent with
its workerd each) on loopback ports, and the operator, each a real process. Used by the
end-to-end tests and by `edgeplane demo`."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import ssl
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from edgeplane.edge.cells import recorded_pids
from edgeplane.localstack import procs
from edgeplane.localstack.cluster import REPO, Cluster
from edgeplane.localstack.pki import CertificateAuthority, KeyPair

SYSTEM_NAMESPACE = "edgeplane-system"
# The regions the examples in manifests/examples select.
REGIONS = ("eu-central", "us-east", "ap-south")


def _wait_http(
    url: str,
    proc: procs.Proc,
    timeout: float,
    token: str | None = None,
    context: ssl.SSLContext | None = None,
) -> None:
    deadline = time.monotonic() + timeout
    req = urllib.request.Request(url)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited early:\n{proc.log_tail()}")
        try:
            with urllib.request.urlopen(req, timeout=2, context=context) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{proc.name}: {url} not ready after {timeout:.0f}s:\n{proc.log_tail()}")


@dataclass(frozen=True)
class AgentTls:
    """An agent's API over TLS: its certificate, the CA that signed it (the EdgeTarget's
    caBundle) and, for --tls-client-ca, the CA its clients' certificates must come from."""

    server: KeyPair
    ca: Path
    client_ca: Path | None = None

    def args(self) -> list[str]:
        out = ["--tls-cert", str(self.server.cert), "--tls-key", str(self.server.key)]
        return out + (["--tls-client-ca", str(self.client_ca)] if self.client_ca else [])


@dataclass
class Agent:
    """One edge location: `edgeplane agent` (which runs workerd) on two loopback ports;
    its API speaks https with `tls`."""

    name: str
    region: str
    root: Path
    tie_to_parent: bool = True
    api_port: int = field(default_factory=procs.free_port)
    http_port: int = field(default_factory=procs.free_port)
    token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    tls: AgentTls | None = None
    proc: procs.Proc | None = None
    extra_args: tuple[str, ...] = ()  # more `edgeplane agent` flags, from the next start

    @property
    def state_dir(self) -> Path:
        return self.root / f"agent-{self.name}"

    @property
    def api_url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.api_port}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def fetch(
        self, host: str, path: str = "/", headers: dict[str, str] | None = None
    ) -> tuple[int, str]:
        """(status, body) of a request to this location's public socket; status 0 when
        nothing answered."""
        req = urllib.request.Request(
            self.http_url + path, headers={"Host": host, **(headers or {})}
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()
        except OSError as e:
            return 0, str(e)

    def start(self, timeout: float = 60) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        token_file = self.root / f"agent-{self.name}.token"
        token_file.write_text(self.token)
        token_file.chmod(0o600)
        self.proc = procs.start(
            f"agent-{self.name}",
            [
                sys.executable, "-m", "edgeplane.cli", "agent",
                "--listen-api", f"127.0.0.1:{self.api_port}",
                "--listen-http", f"127.0.0.1:{self.http_port}",
                "--state-dir", str(self.state_dir / "state"),
                "--token-file", str(token_file),
                *(self.tls.args() if self.tls else []),
                *self.extra_args,
            ],
            self.root,
            tie_to_parent=self.tie_to_parent,
        )
        context = ssl.create_default_context(cafile=self.tls.ca) if self.tls else None
        _wait_http(f"{self.api_url}/healthz", self.proc, timeout, context=context)

    def stop(self) -> None:
        if self.proc is not None:
            procs.stop(self.proc)
            self.proc = None
        self._end_data_plane()

    def kill(self) -> None:
        """SIGKILL the agent and its workerds, as a crash of the whole location would."""
        if self.proc is not None:
            try:
                os.killpg(self.proc.popen.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.popen.wait(10)
            self.proc = None
        self._end_data_plane()

    def ensure_started(self) -> None:
        """Start it again if it was stopped or killed (a test's `finally`)."""
        if self.proc is None:
            self.start()

    def kill_agent(self) -> None:
        """SIGKILL the agent alone: its workerds (the data plane) keep serving, and the
        next `start` adopts them."""
        if self.proc is not None:
            self.proc.popen.kill()
            self.proc.popen.wait(10)
            self.proc = None

    def _end_data_plane(self) -> None:
        # Workerds an earlier agent process started (adopted since) are not in this
        # agent's process group: end them by the list the agent keeps.
        for pid in recorded_pids(self.state_dir / "state" / "run"):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def manifests(self) -> list[dict[str, object]]:
        secret_name = f"edge-{self.name}-token"
        return [
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": secret_name, "namespace": SYSTEM_NAMESPACE},
                "stringData": {"token": self.token},
            },
            {
                "apiVersion": "edgeplane.io/v1alpha1",
                "kind": "EdgeTarget",
                "metadata": {
                    "name": self.name,
                    "labels": {"edgeplane.io/region": self.region},
                },
                "spec": {
                    "endpoint": self.api_url,
                    "credentialsSecretRef": {
                        "namespace": SYSTEM_NAMESPACE, "name": secret_name, "key": "token",
                    },
                    **({"caBundle": self.tls.ca.read_text()} if self.tls else {}),
                },
            },
        ]


@dataclass(frozen=True)
class TailEndpoint:
    """The operator's live-log endpoint (`edgeplane tail --endpoint URL --ca-file CA`)."""

    port: int
    server: KeyPair
    ca: Path
    client_ca: Path | None = None  # the cluster's: kubeconfig client certificates count

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def args(self) -> list[str]:
        return [
            "--tail-address", f"127.0.0.1:{self.port}",
            "--tail-tls-cert", str(self.server.cert), "--tail-tls-key", str(self.server.key),
            *(["--tail-client-ca", str(self.client_ca)] if self.client_ca else []),
            "--tail-review-interval", "3",  # tests see a revoked right end a stream
        ]

    @staticmethod
    def issue(directory: Path, client_ca: Path | None = None) -> TailEndpoint:
        ca = CertificateAuthority(directory)
        server = ca.issue("tail", "edgeplane-operator-tail", server_hosts=("127.0.0.1",))
        return TailEndpoint(procs.free_port(), server, ca.pair.cert, client_ca)


@dataclass
class Operator:
    """`edgeplane operator` as its own process, so it can be killed and restarted."""

    root: Path
    kubeconfig: Path
    tie_to_parent: bool = True
    metrics_port: int = field(default_factory=procs.free_port)
    extra_args: tuple[str, ...] = ()
    proc: procs.Proc | None = None
    tail: TailEndpoint | None = None

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def start(self, timeout: float = 60) -> None:
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig)}
        self.proc = procs.start(
            "operator",
            [
                sys.executable, "-m", "edgeplane.cli", "operator",
                "--metrics-address", f"127.0.0.1:{self.metrics_port}",
                "--health-interval", "2",
                *(self.tail.args() if self.tail else []),
                *self.extra_args,
            ],
            self.root,
            env=env,
            tie_to_parent=self.tie_to_parent,
        )
        _wait_http(self.metrics_url, self.proc, timeout)

    def stop(self) -> None:
        if self.proc is not None:
            procs.stop(self.proc, timeout=15)
            self.proc = None

    def kill(self) -> None:
        if self.proc is not None:
            os.killpg(self.proc.popen.pid, signal.SIGKILL)
            self.proc.popen.wait(10)
            self.proc = None

    def ensure_started(self) -> None:
        """Start it again if it was stopped or killed (a test's `finally`)."""
        if self.proc is None:
            self.start()


def apply_crds(cluster: Cluster) -> None:
    files = sorted((REPO / "crds").glob("*.yaml"))
    args = ["apply", "--server-side", "--force-conflicts"]
    for f in files:
        args += ["-f", str(f)]
    cluster.kubectl(*args)
    cluster.kubectl(
        "wait", "--for=condition=Established", "--timeout=60s",
        *(f"crd/{f.name.removesuffix('.yaml')}" for f in files),
    )


def register_agents(cluster: Cluster, agents: list[Agent]) -> None:
    docs = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": SYSTEM_NAMESPACE}},
        *(m for a in agents for m in a.manifests()),
    ]
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(docs))


@dataclass
class Stack:
    """Agents and the operator around a cluster; the cluster is started here unless one is
    passed in (the tests share theirs), and only a cluster started here is stopped here."""

    root: Path
    agent_count: int = 3
    tie_to_parent: bool = True
    cluster: Cluster | None = None
    agents: list[Agent] = field(default_factory=list)
    operator: Operator | None = None
    owns_cluster: bool = False
    # Signs version override headers at the stack's locations (`edgeplane sign`, tests).
    signing_key: str = field(default_factory=lambda: secrets.token_urlsafe(32), repr=False)

    def up(self) -> None:
        try:
            if self.cluster is None:
                self.cluster = Cluster(self.root / "cluster", tie_to_parent=self.tie_to_parent)
                self.owns_cluster = True
                self.cluster.up()
            apply_crds(self.cluster)
            self.agents = [
                Agent(f"edge-{i + 1}", REGIONS[i % len(REGIONS)], self.root, self.tie_to_parent)
                for i in range(self.agent_count)
            ]
            for a in self.agents:
                a.start()
            register_agents(self.cluster, self.agents)
            key_file = self.root / "signing-key"
            key_file.write_text(self.signing_key)
            key_file.chmod(0o600)
            self.operator = Operator(
                self.root,
                self.cluster.kubeconfig,
                self.tie_to_parent,
                extra_args=("--signing-key-file", str(key_file)),
                tail=TailEndpoint.issue(self.root / "tail-pki", self.cluster.client_ca),
            )
            self.operator.start()
        except BaseException:
            self.down()
            raise

    def down(self) -> None:
        if self.operator is not None:
            self.operator.stop()
        for a in self.agents:
            a.stop()
        if self.cluster is not None and self.owns_cluster:
            self.cluster.down()
        procs.stop_recorded(self.root)
        shutil.rmtree(self.root, ignore_errors=True)
