"""The chart's own RBAC, with peering on, is enough for the operator: it runs as the chart's
ServiceAccount (a TokenRequest token, bound only to the chart's ClusterRole) with
`--peering`, announces itself in the chart's KopfPeering and reconciles a Worker, with no
403 in its log. (tests/e2e/test_rbac.py proves the same RBAC against real edge agents.)"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from edgeplane.localstack.cluster import Cluster
from edgeplane.localstack.stack import Operator
from tests.integration.test_packaging import CHART, KUBE_VERSION, docs, helm_binary

pytestmark = pytest.mark.integration

RELEASE = "rbac"
PEERING = "edgeplane-rbac"


@pytest.fixture(scope="module")
def helm() -> Path:
    return helm_binary()


def token_kubeconfig(cluster: Cluster, token: str, path: Path) -> Path:
    admin = yaml.safe_load(cluster.kubeconfig.read_text())["clusters"][0]["cluster"]
    cfg = {
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "local", "cluster": {
            "server": admin["server"], "certificate-authority": admin["certificate-authority"]}}],
        "users": [{"name": "sa", "user": {"token": token}}],
        "contexts": [{"name": "sa", "context": {"cluster": "local", "user": "sa"}}],
        "current-context": "sa",
    }
    path.write_text(yaml.safe_dump(cfg))
    path.chmod(0o600)
    return path


def test_operator_with_peering_runs_on_the_charts_rbac(
    helm: Path, cluster: Cluster, crds_installed: list[str], namespace: str, tmp_path: Path
) -> None:
    rendered = subprocess.run(
        [str(helm), "template", RELEASE, str(CHART), "-n", namespace, "--kube-version",
         KUBE_VERSION, "--include-crds", "--set", "peering.enabled=true",
         "--set", f"peering.name={PEERING}", "--set", f"operator.namespaces={{{namespace}}}"],
        capture_output=True, text=True, check=True,
    ).stdout
    objs = docs(rendered)
    crds = [d for d in objs if d["kind"] == "CustomResourceDefinition"]
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-",
                    input=yaml.safe_dump_all(crds))
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s",
                    *(f"crd/{d['metadata']['name']}" for d in crds))
    keep = ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "KopfPeering")
    rbac = [d for d in objs if d["kind"] in keep]
    assert sorted({d["kind"] for d in rbac}) == sorted(keep)
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(rbac))
    role = next(d for d in rbac if d["kind"] == "ClusterRole")["metadata"]["name"]
    sa = next(d for d in rbac if d["kind"] == "ServiceAccount")["metadata"]["name"]
    token = cluster.kubectl("create", "token", sa, "-n", namespace, "--duration=1h").stdout
    kubeconfig = token_kubeconfig(cluster, token.strip(), tmp_path / "kubeconfig")

    deployment = next(d for d in objs if d["kind"] == "Deployment")
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    # The chart's own operator arguments, but metrics on a free local port.
    extra = tuple(a for a in args[1:] if a.startswith(("--peering", "--namespace")))
    assert extra == (f"--namespace={namespace}", f"--peering={PEERING}")
    op = Operator(tmp_path, kubeconfig, extra_args=extra)
    try:
        op.start()
        _lonely_worker_stalled(cluster, namespace, timeout=60)
        obj = json.loads(cluster.kubectl("get", "-n", namespace, "worker", "lonely", "-o",
                                         "json").stdout)
        stalled = next(c for c in obj["status"]["conditions"] if c["type"] == "Stalled")
        assert stalled["reason"] == "NoTargets"
        # The operator announced itself in the chart's peering object.
        peering = json.loads(cluster.kubectl("get", "-n", namespace, "kopfpeering", PEERING,
                                             "-o", "json").stdout)
        assert peering.get("status"), peering
        cluster.kubectl("delete", "-n", namespace, "worker", "lonely", "--timeout=60s")
    finally:
        op.stop()
        cluster.kubectl("delete", "clusterrolebinding,clusterrole", role, check=False)
    log = (tmp_path / "logs" / "operator.log").read_text(errors="replace")
    forbidden = [ln for ln in log.splitlines()
                 if re.search(r"\b403\b|[Ff]orbidden|[Nn]ot enough permissions", ln)]
    assert forbidden == []


def _lonely_worker_stalled(cluster: Cluster, namespace: str, timeout: int) -> None:
    """A Worker selecting no location, until its status says so: the operator read it and
    wrote its status (and an Event) as the ServiceAccount."""
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump({
        "apiVersion": "edgeplane.io/v1alpha1", "kind": "Worker",
        "metadata": {"name": "lonely"},
        "spec": {"compatibilityDate": "2025-01-01",
                 "modules": [{"name": "index.js", "inline": "export default {};"}],
                 "targets": {"matchLabels": {"edgeplane.io/region": "nowhere"}}},
    }))
    cluster.kubectl("wait", "-n", namespace, "--for=condition=Stalled", f"--timeout={timeout}s",
                    "worker/lonely")


def test_several_replicas_hold_leases_on_the_charts_rbac(
    helm: Path, cluster: Cluster, crds_installed: list[str], namespace: str, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """replicas=2: the chart's Role for Leases (in the release's namespace) is enough for a
    replica to hold buckets, and its writes are its own (field manager) with no 403."""
    rendered = subprocess.run(
        [str(helm), "template", RELEASE, str(CHART), "-n", namespace, "--kube-version",
         KUBE_VERSION, "--set", "replicas=2", "--set", f"operator.namespaces={{{namespace}}}"],
        capture_output=True, text=True, check=True,
    ).stdout
    objs = docs(rendered)
    keep = ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")
    rbac = [d for d in objs if d["kind"] in keep]
    assert sorted({d["kind"] for d in rbac}) == sorted(keep)
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(rbac))
    role = next(d for d in rbac if d["kind"] == "ClusterRole")["metadata"]["name"]
    sa = next(d for d in rbac if d["kind"] == "ServiceAccount")["metadata"]["name"]
    token = cluster.kubectl("create", "token", sa, "-n", namespace, "--duration=1h").stdout
    kubeconfig = token_kubeconfig(cluster, token.strip(), tmp_path / "kubeconfig")
    args = next(d for d in objs if d["kind"] == "Deployment")["spec"]["template"]["spec"][
        "containers"][0]["args"]
    extra = tuple(a for a in args[1:] if a.startswith(("--replicas", "--buckets", "--namespace")))
    assert extra == (f"--namespace={namespace}", "--replicas=2", "--buckets=10")
    monkeypatch.setenv("POD_NAME", "rbac-replica-0")  # as the downward API sets them
    monkeypatch.setenv("POD_NAMESPACE", namespace)
    op = Operator(tmp_path, kubeconfig, extra_args=extra)
    try:
        op.start()
        _lonely_worker_stalled(cluster, namespace, timeout=90)
        leases = json.loads(cluster.kubectl("get", "leases", "-n", namespace, "-o",
                                            "json").stdout)["items"]
        holders = {x["metadata"]["name"]: x["spec"].get("holderIdentity") for x in leases}
        assert {holders.get(f"edgeplane-bucket-{b:02d}") for b in range(10)} == {"rbac-replica-0"}
        obj = json.loads(cluster.kubectl("get", "-n", namespace, "worker", "lonely", "-o", "json",
                                         "--show-managed-fields").stdout)
        managers = {m["manager"] for m in obj["metadata"]["managedFields"]}
        assert "edgeplane/rbac-replica-0" in managers
        cluster.kubectl("delete", "-n", namespace, "worker", "lonely", "--timeout=60s")
    finally:
        op.stop()
        cluster.kubectl("delete", "clusterrolebinding,clusterrole", role, check=False)
    log = (tmp_path / "logs" / "operator.log").read_text(errors="replace")
    forbidden = [ln for ln in log.splitlines()
                 if re.search(r"\b403\b|[Ff]orbidden|[Nn]ot enough permissions", ln)]
    assert forbidden == []
