"""The Helm chart and the kustomize manifests, rendered by the real helm and kubectl and
applied to the real apiserver with a server-side dry run; the chart's RBAC is the same as
the kustomize base's, and no role anywhere is broader than it should be."""

from __future__ import annotations

import base64
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
import yaml

from edgeplane.distribute.client import ssl_context
from edgeplane.distribute.tls import ClientCertificate, ClientTls
from edgeplane.localstack.cluster import REPO, Cluster
from tests.integration.edge_fixtures import start_agent
from tests.unit.test_packaging import role_problems

pytestmark = pytest.mark.integration

CHART = REPO / "charts" / "edgeplane"
KUBE_VERSION = "1.35.4"
# Value sets the tests render; every optional part appears in at least one.
VARIANTS: dict[str, list[str]] = {
    "defaults": [],
    "agent-and-peering": ["agent.enabled=true", "peering.enabled=true",
                          "operator.namespaces={apps,web}", "agent.tls.clientCertificates=true"],
    "daemonset-agent": ["agent.enabled=true", "agent.kind=DaemonSet",
                        "agent.existingSecret=my-token", "agent.tls.existingSecret=my-tls"],
    "no-rbac": ["rbac.create=false", "serviceAccount.create=false",
                "serviceAccount.name=existing"],
    "url-downloads": ["operator.urls.allowNetworks={10.20.0.0/16,fd00::/8}",
                      "operator.urls.caBundle.configMap=corp-ca", "operator.urls.timeout=10"],
    "live-logs": ["tail.enabled=true", "tail.tlsSecret=tail-tls",
                  "tail.clientCAConfigMap=kube-root-ca.crt"],
    "replicas": ["replicas=3", "buckets=16"],
    "version-registry": ["operator.versionRegistry.url=oci://registry.example/edgeplane/v",
                         "operator.versionRegistry.secret=registry-push",
                         "operator.versionRegistry.caBundle.configMap=corp-ca"],
    "agent-pulls": ["agent.enabled=true",
                    "operator.versionRegistry.url=oci://registry.example/edgeplane/v",
                    "operator.versionRegistry.secret=registry-push",
                    "operator.versionRegistry.caBundle.configMap=corp-ca",
                    "agent.registry.secret=registry-pull"],
}


def helm_binary() -> Path:
    """The real helm, built from the Go module proxy (cached) by tools/build-helm.sh."""
    out = subprocess.run([str(REPO / "tools" / "build-helm.sh")], check=True,
                         capture_output=True, text=True)
    return Path(out.stdout.strip().splitlines()[-1]) / "helm"


@pytest.fixture(scope="session")
def helm() -> Path:
    return helm_binary()


def run(*cmd: str | Path, input: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, input=input,
                          timeout=120)


def template(helm: Path, namespace: str, sets: Sequence[str], *extra: str) -> str:
    args: list[str | Path] = [helm, "template", "ep", CHART, "-n", namespace,
                              "--kube-version", KUBE_VERSION, *extra]
    for s in sets:
        args += ["--set", s]
    res = run(*args)
    assert res.returncode == 0, res.stderr
    return res.stdout


def docs(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


def dry_run(cluster: Cluster, text: str) -> None:
    res = cluster.kubectl("apply", "--dry-run=server", "-f", "-", input=text, check=False)
    assert res.returncode == 0, res.stderr
    lines = [ln for ln in res.stdout.splitlines() if ln.strip()]
    assert len(lines) == len(docs(text)), res.stdout
    assert all(ln.endswith("(server dry run)") for ln in lines), res.stdout


def cluster_role(objs: list[dict[str, Any]]) -> dict[str, Any]:
    roles = [d for d in objs if d["kind"] == "ClusterRole"]
    assert len(roles) == 1, [d["metadata"]["name"] for d in roles]
    return roles[0]


# --- helm --------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
def test_helm_lint(helm: Path, variant: str) -> None:
    args: list[str | Path] = [helm, "lint", "--strict", CHART, "--kube-version", KUBE_VERSION]
    for s in VARIANTS[variant]:
        args += ["--set", s]
    res = run(*args)
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.parametrize("bad", [
    "replicas=-1",
    "buckets=0",
    "securityContext.allowPrivilegeEscalation=true",
    "podSecurityContext.runAsNonRoot=false",
    "operator.logLevel=LOUD",
    "operator.watchIdleTimeout=0",
    "agent.kind=StatefulSet",
    "operator.urls.caBundle.configMap=Not_A_Name",
    "operator.urls.allowNetworks={example.com}",
    "agent.tls.caBundle=not-a-certificate",
    "agent.tls.days=0",
    "typo=1",
    "tail.clientCAConfigMap=Not_A_Name",
    "operator.versionRegistry.url=https://registry.example/v",
    "operator.versionRegistry.secret=Not_A_Name",
])
def test_values_schema_refuses_bad_values(helm: Path, bad: str) -> None:
    res = run(helm, "lint", CHART, "--kube-version", KUBE_VERSION, "--set", bad)
    assert res.returncode != 0
    assert "schema" in (res.stdout + res.stderr)


@pytest.mark.parametrize("variant", VARIANTS)
def test_chart_renders_and_the_apiserver_accepts_it(
    helm: Path, cluster: Cluster, crds_installed: list[str], namespace: str, variant: str
) -> None:
    sets = VARIANTS[variant]
    # The chart's crds/ (edgeplane's and kopf's peering CRDs), installed as helm would
    # before the templates.
    crd_text = "\n---\n".join(p.read_text() for p in sorted((CHART / "crds").glob("*.yaml")))
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", input=crd_text)
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s",
                    "crd/clusterkopfpeerings.kopf.dev", "crd/kopfpeerings.kopf.dev")
    if any(s.startswith("operator.namespaces") for s in sets):
        for ns in ("apps", "web"):
            cluster.kubectl("create", "namespace", ns, check=False)
    text = template(helm, namespace, sets)
    objs = docs(text)
    dry_run(cluster, text)

    kinds = {d["kind"] for d in objs}
    assert {"Deployment", "Service"} <= kinds
    assert ("ClusterRole" in kinds) == ("rbac.create=false" not in sets)
    assert ("ServiceAccount" in kinds) == ("serviceAccount.create=false" not in sets)
    for d in objs:
        if d["kind"] in ("ClusterRole", "Role"):
            assert role_problems(d) == []
    operator = next(d for d in objs if d["kind"] == "Deployment"
                    and d["metadata"]["name"].endswith("-operator"))
    pod = operator["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    c = pod["containers"][0]
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
    if "peering.enabled=true" in sets:
        assert "--peering=edgeplane" in c["args"]
        assert {"--namespace=apps", "--namespace=web"} <= set(c["args"])
        assert sorted(d["metadata"]["namespace"] for d in objs if d["kind"] == "KopfPeering") == [
            "apps", "web"]
        assert operator["spec"]["strategy"]["type"] == "RollingUpdate"
    elif "replicas=3" not in sets:
        assert operator["spec"]["strategy"]["type"] == "Recreate"
    _check_replicas(objs, operator, "replicas=3" in sets)
    if "operator.urls.caBundle.configMap=corp-ca" in sets:
        assert {"--url-ca-bundle=/etc/edgeplane/url-ca/ca.crt", "--url-timeout=10",
                "--url-allow-network=10.20.0.0/16", "--url-allow-network=fd00::/8"} <= set(
            c["args"])
        mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
        assert mounts["url-ca"] == "/etc/edgeplane/url-ca"
        assert {"name": "url-ca", "configMap": {"name": "corp-ca"}} in pod["volumes"]
    else:
        assert not any(a.startswith(("--url-ca-bundle", "--url-allow")) for a in c["args"])
    check_version_registry(c, pod, sets)
    if "agent.enabled=true" in sets:
        check_agent(objs, namespace, sets)


def check_version_registry(c: dict[str, Any], pod: dict[str, Any], sets: Sequence[str]) -> None:
    """With operator.versionRegistry the flags point at the mounted Secret and CA, and the
    operator keeps 100 versions by default; without, neither flag nor mount is there."""
    reg = [a for a in c["args"] if a.startswith(("--version-registry", "--versions-retained"))]
    if "operator.versionRegistry.secret=registry-push" not in sets:
        assert reg == []  # the operator's own default: 10 without a registry
        assert not any(v["name"].startswith("version-registry") for v in pod["volumes"])
        return
    assert reg == [
        "--version-registry=oci://registry.example/edgeplane/v",
        "--version-registry-credentials=/etc/edgeplane/version-registry/.dockerconfigjson",
        "--version-registry-ca=/etc/edgeplane/version-registry-ca/ca.crt",
    ]
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    assert mounts["version-registry"] == "/etc/edgeplane/version-registry"
    assert mounts["version-registry-ca"] == "/etc/edgeplane/version-registry-ca"
    assert {"name": "version-registry-ca", "configMap": {"name": "corp-ca"}} in pod["volumes"]
    secret = next(v for v in pod["volumes"] if v["name"] == "version-registry")["secret"]
    assert secret["secretName"] == "registry-push"


def check_agent_pulls(pod: dict[str, Any], sets: Sequence[str]) -> None:
    """With a version registry the agent pulls modules with its own pull Secret (or the
    operator's) and the registry's CA; without, no flag and no mount."""
    c = pod["containers"][0]
    flags = [a for a in c["args"] if a.startswith("--registry-")]
    vols = {v["name"]: v for v in pod["volumes"]}
    if not any(s.startswith("operator.versionRegistry.url=") for s in sets):
        assert flags == [] and "registry" not in vols and "registry-ca" not in vols
        return
    assert flags == ["--registry-credentials=/etc/edgeplane/registry/.dockerconfigjson",
                     "--registry-ca=/etc/edgeplane/registry-ca/ca.crt"]
    assert vols["registry"]["secret"]["secretName"] == "registry-pull"
    assert vols["registry-ca"]["configMap"]["name"] == "corp-ca"
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    assert mounts["registry"] == "/etc/edgeplane/registry"


def check_agent(objs: list[dict[str, Any]], namespace: str, sets: Sequence[str]) -> None:
    """The in-cluster agent serves https with the chart's (or the given) certificate, and
    its EdgeTarget trusts that certificate's CA and holds the credentials it needs."""
    target = next(d for d in objs if d["kind"] == "EdgeTarget")
    spec = target["spec"]
    ref = spec["credentialsSecretRef"]
    assert ref["namespace"] == namespace
    workload = next(d for d in objs if d["metadata"]["name"].endswith("-agent")
                    and d["kind"] in ("Deployment", "DaemonSet"))
    pod = workload["spec"]["template"]["spec"]
    vols = {v["name"]: v for v in pod["volumes"]}
    assert vols["token"]["secret"]["secretName"] == ref["name"]
    secrets = {d["metadata"]["name"]: d for d in objs if d["kind"] == "Secret"}
    assert (ref["name"] in secrets) == ("agent.existingSecret=my-token" not in sets)

    assert spec["endpoint"] == f"https://{workload['metadata']['name']}.{namespace}.svc:8443"
    args = pod["containers"][0]["args"]
    assert {"--tls-cert=/etc/edgeplane/tls/tls.crt", "--tls-key=/etc/edgeplane/tls/tls.key"
            } <= set(args)
    mounts = {m["name"]: m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
    assert mounts["tls"] == "/etc/edgeplane/tls"
    for probe in ("readinessProbe", "livenessProbe"):
        assert pod["containers"][0][probe]["httpGet"]["scheme"] == "HTTPS"
    tls_secret = vols["tls"]["secret"]["secretName"]
    if "agent.tls.existingSecret=my-tls" in sets:
        assert tls_secret == "my-tls" and "my-tls" not in secrets
        assert "caBundle" not in spec  # the system's roots unless agent.tls.caBundle
    else:
        generated = secrets[tls_secret]
        assert generated["type"] == "kubernetes.io/tls"
        ca = base64.b64decode(generated["data"]["ca.crt"]).decode()
        assert spec["caBundle"].strip() == ca.strip() and "BEGIN CERTIFICATE" in ca
    check_agent_pulls(pod, sets)
    client = spec.get("clientCertificateSecretRef")
    if "agent.tls.clientCertificates=true" in sets:
        assert "--tls-client-ca=/etc/edgeplane/tls/ca.crt" in args
        assert client["namespace"] == namespace
        assert set(secrets[client["name"]]["data"]) == {"tls.crt", "tls.key"}
    else:
        assert client is None and not any(a.startswith("--tls-client-ca") for a in args)


def test_live_logs_render_with_their_certificate_and_client_ca(helm: Path) -> None:
    objs = docs(template(helm, "edgeplane-system", VARIANTS["live-logs"]))
    deploy = next(d for d in objs if d["kind"] == "Deployment")
    pod = deploy["spec"]["template"]["spec"]
    container = pod["containers"][0]
    args = container["args"]
    assert "--tail-address=0.0.0.0:8443" in args
    assert "--tail-client-ca=/etc/edgeplane/tail-client-ca/ca.crt" in args
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert mounts["tail-client-ca"] == "/etc/edgeplane/tail-client-ca"
    assert volumes["tail-client-ca"]["configMap"]["name"] == "kube-root-ca.crt"
    assert volumes["tail-tls"]["secret"]["secretName"] == "tail-tls"
    service = next(d for d in objs if d["kind"] == "Service"
                   and d["metadata"]["name"].endswith("-operator-tail"))
    assert [p["port"] for p in service["spec"]["ports"]] == [8443]
    # Without a client CA the endpoint takes bearer tokens only.
    plain = docs(template(helm, "edgeplane-system", VARIANTS["live-logs"][:2]))
    plain_args = next(d for d in plain if d["kind"] == "Deployment")["spec"]["template"][
        "spec"]["containers"][0]["args"]
    assert not any(a.startswith("--tail-client-ca") for a in plain_args)


def test_monitoring_objects_render_when_enabled(helm: Path) -> None:
    objs = docs(template(helm, "edgeplane-system", [
        "metrics.serviceMonitor.enabled=true", "metrics.prometheusRule.enabled=true",
    ]))
    monitor = next(d for d in objs if d["kind"] == "ServiceMonitor")
    service = next(d for d in objs if d["kind"] == "Service")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"][
        "labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"]
    # With the in-cluster agent, its metrics are scraped too, with its bearer token.
    objs_agent = docs(template(helm, "edgeplane-system", [
        "metrics.serviceMonitor.enabled=true", "agent.enabled=true",
    ]))
    agent_monitor = next(d for d in objs_agent if d["kind"] == "ServiceMonitor"
                         and d["metadata"]["name"].endswith("-agent"))
    token_secret = next(d for d in objs_agent if d["kind"] == "Secret"
                        and d["metadata"]["name"].endswith("-agent-token"))
    endpoint = agent_monitor["spec"]["endpoints"][0]
    assert endpoint["bearerTokenSecret"] == {"name": token_secret["metadata"]["name"],
                                             "key": "token"}
    # https, trusting the agent's CA, under the name its certificate carries.
    target = next(d for d in objs_agent if d["kind"] == "EdgeTarget")
    assert endpoint["scheme"] == "https"
    assert endpoint["tlsConfig"]["serverName"] in target["spec"]["endpoint"]
    assert endpoint["tlsConfig"]["ca"]["secret"]["key"] == "ca.crt"
    agent_service = next(d for d in objs_agent if d["kind"] == "Service"
                         and d["metadata"]["name"].endswith("-agent"))
    assert endpoint["port"] in {p["name"] for p in agent_service["spec"]["ports"]}
    rule = next(d for d in objs if d["kind"] == "PrometheusRule")
    alerts = [r["alert"] for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r]
    assert alerts


async def test_the_charts_certificates_secure_a_real_agent(helm: Path, tmp_path: Path) -> None:
    """What Helm's genCA/genSignedCert make, as the chart renders it, works: a real agent
    with the chart's server certificate and client CA serves the operator's client that
    trusts the EdgeTarget's caBundle, checks the Service's DNS name and presents the chart's
    client certificate; without that certificate it is refused."""
    objs = docs(template(helm, "edge", ["agent.enabled=true",
                                        "agent.tls.clientCertificates=true"]))
    data = {d["metadata"]["name"]: d["data"] for d in objs if d["kind"] == "Secret"}
    spec = next(d for d in objs if d["kind"] == "EdgeTarget")["spec"]
    pod = next(d for d in objs if d["kind"] == "Deployment"
               and d["metadata"]["name"].endswith("-agent"))["spec"]["template"]["spec"]
    server = data[next(v for v in pod["volumes"] if v["name"] == "tls")["secret"]["secretName"]]
    client = data[spec["clientCertificateSecretRef"]["name"]]
    files = tmp_path / "tls"
    files.mkdir()
    for key, value in server.items():  # as the Secret volume mounts it
        (files / key).write_bytes(base64.b64decode(value))
    agent = start_agent(
        tmp_path / "agent",
        extra_args=tuple(a.replace("/etc/edgeplane/tls", str(files))
                         for a in pod["containers"][0]["args"] if a.startswith("--tls-")),
        ca_cert=files / "ca.crt",
        check_hostname=False,  # the certificate names the Service, not 127.0.0.1
    )
    host = urlsplit(spec["endpoint"]).hostname
    pair = ClientCertificate(*(base64.b64decode(client[k]).decode()
                               for k in ("tls.crt", "tls.key")))
    url = f"{agent.api_url}/v1/info"
    try:
        async with aiohttp.ClientSession() as s:
            ctx = ssl_context(ClientTls(spec["caBundle"], pair))
            async with s.get(url, ssl=ctx, server_hostname=host, headers=agent.headers()) as r:
                assert r.status == 200, await r.text()
            bare = ssl_context(ClientTls(spec["caBundle"]))
            async with s.get(url, ssl=bare, server_hostname=host, headers=agent.headers()) as r:
                assert r.status == 401 and "client certificate" in await r.text()
            with pytest.raises(aiohttp.ClientConnectorCertificateError):
                await s.get(url, ssl=ctx, server_hostname="elsewhere.example.net")
    finally:
        agent.stop()


def test_the_agents_certificates_and_token_survive_an_upgrade(
    helm: Path, cluster: Cluster, namespace: str
) -> None:
    """An upgrade (Helm's lookup of the Secrets the install made) renders the same CA,
    certificates and token: the EdgeTarget keeps trusting the agent, which is not
    restarted (the same checksum)."""
    sets = ["agent.enabled=true", "agent.tls.clientCertificates=true"]

    def rendered(*extra: str) -> tuple[dict[str, Any], dict[str, Any], str]:
        objs = docs(template(helm, namespace, sets, *extra))
        data = {d["metadata"]["name"]: d["data"] for d in objs if d["kind"] == "Secret"}
        spec = next(d for d in objs if d["kind"] == "EdgeTarget")["spec"]
        pod = next(d for d in objs if d["kind"] == "Deployment"
                   and d["metadata"]["name"].endswith("-agent"))["spec"]["template"]
        return data, spec, pod["metadata"]["annotations"]["checksum/tls"]

    first = rendered()
    secrets = [d for d in docs(template(helm, namespace, sets)) if d["kind"] == "Secret"]
    # The agent's token, server and client certificates, and the operator's signing key.
    assert len(secrets) == 4
    # Installed as the first render made them (another render makes new keys).
    for d in secrets:
        d["data"] = first[0][d["metadata"]["name"]]
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(secrets))
    assert rendered("--dry-run=server") == first
    assert rendered() != first  # without the cluster: new ones (and a restart)


def test_chart_crds_are_the_generated_ones(helm: Path) -> None:
    objs = docs(template(helm, "edgeplane-system", [], "--include-crds"))
    names = {d["metadata"]["name"] for d in objs if d["kind"] == "CustomResourceDefinition"}
    generated = {p.name.removesuffix(".yaml") for p in (REPO / "crds").glob("*.yaml")}
    assert names == generated | {"clusterkopfpeerings.kopf.dev", "kopfpeerings.kopf.dev"}


# --- kustomize ---------------------------------------------------------------------------


def test_kustomize_manifests_apply_server_side(
    cluster: Cluster, crds_installed: list[str]
) -> None:
    rendered = cluster.kubectl("kustomize", str(REPO / "manifests")).stdout
    objs = docs(rendered)
    # Namespaced objects can only be dry-run into a namespace that exists.
    ns = next(d for d in objs if d["kind"] == "Namespace")
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(ns))
    res = cluster.kubectl("apply", "-k", str(REPO / "manifests"), "--dry-run=server")
    lines = [ln for ln in res.stdout.splitlines() if ln.strip()]
    assert len(lines) == len(objs)
    assert all("(server dry run)" in ln for ln in lines), res.stdout
    assert {d["kind"] for d in objs} == {
        "Namespace", "CustomResourceDefinition", "ServiceAccount", "ClusterRole",
        "ClusterRoleBinding", "Deployment", "Service",
    }
    for d in objs:
        if d["kind"] in ("ClusterRole", "Role"):
            assert role_problems(d) == []


def test_chart_and_kustomize_grant_the_same_rbac(helm: Path, cluster: Cluster) -> None:
    chart = docs(template(helm, "edgeplane-system", []))
    kustomize = docs(cluster.kubectl("kustomize", str(REPO / "manifests")).stdout)
    assert cluster_role(chart)["rules"] == cluster_role(kustomize)["rules"]
    # Peering adds kopf's peering objects and nothing else.
    peering = cluster_role(docs(template(helm, "edgeplane-system", ["peering.enabled=true"])))
    extra = [r for r in peering["rules"] if r not in cluster_role(kustomize)["rules"]]
    assert extra == [{"apiGroups": ["kopf.dev"],
                      "resources": ["clusterkopfpeerings", "kopfpeerings"],
                      "verbs": ["list", "watch", "patch"]}]
    # Same Deployment shape: arguments, probes and security contexts.
    def operator(objs: list[dict[str, Any]]) -> dict[str, Any]:
        dep = next(d for d in objs if d["kind"] == "Deployment")
        return dep["spec"]["template"]["spec"]

    c, k = operator(chart), operator(kustomize)
    assert c["securityContext"] == k["securityContext"]
    cc, kc = c["containers"][0], k["containers"][0]
    for key in ("securityContext", "livenessProbe", "readinessProbe", "ports", "resources",
                "volumeMounts"):
        assert cc[key] == kc[key], key
    assert set(kc["args"]) <= set(cc["args"])


def test_monitoring_kustomization_renders(cluster: Cluster) -> None:
    import json

    objs = docs(cluster.kubectl("kustomize", str(REPO / "manifests" / "monitoring")).stdout)
    assert sorted(d["kind"] for d in objs) == ["ConfigMap", "PrometheusRule"]
    cm = next(d for d in objs if d["kind"] == "ConfigMap")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["metadata"]["namespace"] == "edgeplane-system"
    source = REPO / "manifests" / "monitoring" / "grafana-dashboard.json"
    assert json.loads(cm["data"]["edgeplane.json"]) == json.loads(source.read_text())


def test_examples_kustomization_applies_server_side(
    cluster: Cluster, crds_installed: list[str]
) -> None:
    examples = REPO / "manifests" / "examples"
    objs = docs(cluster.kubectl("kustomize", str(examples)).stdout)
    listed = {p.name for p in examples.glob("*.yaml")}
    expected = sum(len(docs((examples / name).read_text())) for name in listed)
    assert len(objs) == expected  # every example file is in the kustomization
    cluster.kubectl("create", "namespace", "edgeplane-system", check=False)
    # Into the default namespace, as `kubectl apply -k` without -n would.
    res = cluster.kubectl("apply", "-k", str(examples), "--dry-run=server")
    lines = [ln for ln in res.stdout.splitlines() if ln.strip()]
    assert len(lines) == len(objs) and all("(server dry run)" in ln for ln in lines), res.stdout


def _check_replicas(objs: list[dict[str, Any]], operator: dict[str, Any], several: bool) -> None:
    """Several replicas: their flags, a RollingUpdate, Lease RBAC in the release's
    namespace, a PodDisruptionBudget and spread over nodes; one: none of it."""
    pod = operator["spec"]["template"]["spec"]
    c = pod["containers"][0]
    env = {e["name"]: e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
           for e in c["env"]}
    assert env["POD_NAME"] == "metadata.name" and env["POD_NAMESPACE"] == "metadata.namespace"
    kinds = {d["kind"] for d in objs}
    if not several:
        assert not any(a.startswith(("--replicas", "--buckets")) for a in c["args"])
        assert "PodDisruptionBudget" not in kinds and "topologySpreadConstraints" not in pod
        return
    assert {"--replicas=3", "--buckets=16"} <= set(c["args"])
    assert operator["spec"]["replicas"] == 3
    assert operator["spec"]["strategy"]["type"] == "RollingUpdate"
    role = next(d for d in objs
                if d["kind"] == "Role" and d["metadata"]["name"].endswith("-leases"))
    assert role["rules"] == [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
                              "verbs": ["get", "list", "create", "update", "delete"]}]
    assert any(d["kind"] == "RoleBinding" and d["roleRef"]["name"] == role["metadata"]["name"]
               for d in objs)
    pdb = next(d for d in objs if d["kind"] == "PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"] == operator["spec"]["selector"]["matchLabels"]
    spread = pod["topologySpreadConstraints"][0]
    assert spread["topologyKey"] == "kubernetes.io/hostname"
    assert spread["labelSelector"]["matchLabels"] == operator["spec"]["selector"]["matchLabels"]


def test_peering_and_several_replicas_are_refused(helm: Path) -> None:
    res = run(helm, "template", "x", CHART, "--kube-version", KUBE_VERSION,
              "--set", "replicas=2", "--set", "peering.enabled=true")
    assert res.returncode != 0
    assert "peering.enabled and replicas above 1 do not mix" in res.stderr


def test_kustomize_ha_overlay_runs_three_replicas_on_leases(
    cluster: Cluster, crds_installed: list[str]
) -> None:
    """manifests/ha: the base with three replicas sharing Leases, accepted by the apiserver."""
    objs = docs(cluster.kubectl("kustomize", str(REPO / "manifests" / "ha")).stdout)
    ns = next(d for d in objs if d["kind"] == "Namespace")
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(ns))
    res = cluster.kubectl("apply", "-k", str(REPO / "manifests" / "ha"), "--dry-run=server")
    assert all("(server dry run)" in ln for ln in res.stdout.splitlines() if ln.strip())
    operator = next(d for d in objs if d["kind"] == "Deployment")
    args = operator["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[-2:] == ["--replicas=3", "--buckets=10"]
    assert operator["spec"]["replicas"] == 3
    assert operator["spec"]["strategy"]["type"] == "RollingUpdate"
    kinds = {d["kind"] for d in objs}
    assert {"Role", "RoleBinding", "PodDisruptionBudget"} <= kinds
    role = next(d for d in objs if d["kind"] == "Role")
    assert role_problems(role) == []
    assert role["rules"][0]["resources"] == ["leases"]
    spread = operator["spec"]["template"]["spec"]["topologySpreadConstraints"][0]
    assert spread["topologyKey"] == "kubernetes.io/hostname"
