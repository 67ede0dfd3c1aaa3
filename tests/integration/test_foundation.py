"""Proof that the parts under every other test are real: the pinned apiserver with etcd,
RBAC, client-certificate authentication and the controller manager; kopf; and workerd."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from edgeplane.localstack import procs
from edgeplane.localstack.cluster import REPO, Cluster

pytestmark = pytest.mark.integration


def wait_for(predicate, timeout: float = 60, interval: float = 0.5):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")


def pinned_version() -> str:
    for line in (REPO / "tools" / "k8s" / "go.mod").read_text().splitlines():
        parts = line.split()
        if parts[:1] == ["k8s.io/kubernetes"]:
            return parts[1]
    raise AssertionError("k8s.io/kubernetes not found in tools/k8s/go.mod")


def test_server_is_the_pinned_release(cluster: Cluster) -> None:
    out = json.loads(cluster.kubectl("version", "-o", "json").stdout)
    assert out["serverVersion"]["gitVersion"] == pinned_version()
    assert out["clientVersion"]["gitVersion"] == pinned_version()
    assert out["serverVersion"]["gitTreeState"] == "clean"


WIDGET_CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.foundation.edgeplane.io}
spec:
  group: foundation.edgeplane.io
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget}
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec: {type: object, properties: {size: {type: integer}}}
          status: {type: object, properties: {phase: {type: string}}}
"""


def test_crd_is_established_and_serves_a_status_subresource(
    cluster: Cluster, api_client: client.ApiClient, namespace: str
) -> None:
    cluster.kubectl("apply", "-f", "-", input=WIDGET_CRD)
    cluster.kubectl(
        "wait", "--for=condition=Established", "--timeout=60s",
        "crd/widgets.foundation.edgeplane.io",
    )
    custom = client.CustomObjectsApi(api_client)
    args = ("foundation.edgeplane.io", "v1", namespace, "widgets")
    body = {
        "apiVersion": "foundation.edgeplane.io/v1", "kind": "Widget",
        "metadata": {"name": "w"}, "spec": {"size": 1}, "status": {"phase": "ignored"},
    }
    created = wait_for(lambda: _try_create(custom, args, body))
    # The status subresource makes the main resource ignore status...
    assert "status" not in created or created["status"] == {}
    custom.patch_namespaced_custom_object_status(*args, "w", {"status": {"phase": "Ready"}})
    obj = custom.get_namespaced_custom_object(*args, "w")
    assert obj["status"] == {"phase": "Ready"}
    # ...and status writes do not bump the generation, spec writes do.
    assert obj["metadata"]["generation"] == 1
    custom.patch_namespaced_custom_object(*args, "w", {"spec": {"size": 2}})
    assert custom.get_namespaced_custom_object(*args, "w")["metadata"]["generation"] == 2


def _try_create(custom: client.CustomObjectsApi, args: tuple[str, ...], body: dict) -> dict | None:
    try:
        return custom.create_namespaced_custom_object(*args, body)
    except ApiException as e:
        if e.status == 404:  # discovery can lag just behind Established
            return None
        raise


def test_controller_manager_collects_garbage(api_client: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(api_client)
    owner = core.create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="owner"))
    )
    ref = client.V1OwnerReference(
        api_version="v1", kind="ConfigMap", name="owner", uid=owner.metadata.uid
    )
    core.create_namespaced_config_map(
        namespace,
        client.V1ConfigMap(metadata=client.V1ObjectMeta(name="dependent", owner_references=[ref])),
    )
    core.delete_namespaced_config_map("owner", namespace, propagation_policy="Background")

    def dependent_gone() -> bool:
        try:
            core.read_namespaced_config_map("dependent", namespace)
        except ApiException as e:
            return e.status == 404
        return False

    wait_for(dependent_gone, timeout=90)


def test_rbac_denies_a_service_account_without_a_role(
    cluster: Cluster, api_client: client.ApiClient, namespace: str
) -> None:
    core = client.CoreV1Api(api_client)
    core.create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="nobody"))
    )
    token = core.create_namespaced_service_account_token(
        "nobody", namespace, client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=600)
        ),
    ).status.token

    cfg = client.Configuration()
    cfg.host = cluster.server
    cfg.ssl_ca_cert = api_client.configuration.ssl_ca_cert
    cfg.api_key = {"authorization": token}
    cfg.api_key_prefix = {"authorization": "Bearer"}
    with client.ApiClient(cfg) as as_nobody:
        with pytest.raises(ApiException) as denied:
            client.CoreV1Api(as_nobody).list_namespaced_config_map(namespace)
        assert denied.value.status == 403
        assert f"system:serviceaccount:{namespace}:nobody" in denied.value.body
        # A wrong token is not authenticated at all.
        cfg.api_key = {"authorization": token[:-4] + "AAAA"}
        with pytest.raises(ApiException) as unauthenticated:
            client.CoreV1Api(as_nobody).list_namespaced_config_map(namespace)
        assert unauthenticated.value.status == 401
    assert core.list_namespaced_config_map(namespace).items is not None


def test_kopf_sees_and_patches_objects(cluster: Cluster, namespace: str) -> None:
    from kopf.testing import KopfRunner

    probe = Path(__file__).with_name("kopf_probe.py")
    core = client.CoreV1Api(cluster.api_client())
    with KopfRunner(["run", "--standalone", "--namespace", namespace, str(probe)]) as runner:
        core.create_namespaced_config_map(
            namespace,
            client.V1ConfigMap(
                metadata=client.V1ObjectMeta(name="probe", labels={"edgeplane.io/probe": "kopf"})
            ),
        )
        wait_for(
            lambda: (core.read_namespaced_config_map("probe", namespace).metadata.annotations or {})
            .get("edgeplane.io/seen-by") == "kopf",
            timeout=30,
        )
    assert runner.exit_code == 0, runner.output
    assert runner.exception is None


def test_workerd_serves_an_es_module_worker(tmp_path: Path, workerd_bin: Path) -> None:
    port = procs.free_port()
    (tmp_path / "hello.js").write_text(
        'export default { fetch(req) { return new Response("hello from workerd " + '
        'new URL(req.url).pathname); } };\n'
    )
    (tmp_path / "config.capnp").write_text(f"""
using Workerd = import "/workerd/workerd.capnp";
const config :Workerd.Config = (
  services = [(name = "hello", worker = (
    modules = [(name = "hello.js", esModule = embed "hello.js")],
    compatibilityDate = "2025-01-01"))],
  sockets = [(name = "http", address = "127.0.0.1:{port}", http = (), service = "hello")],
);
""")
    proc = subprocess.Popen(
        [str(workerd_bin), "serve", str(tmp_path / "config.capnp")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        def answer() -> str | None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/x", timeout=2) as r:
                    return r.read().decode()
            except OSError:
                assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
                return None

        assert wait_for(answer, timeout=30, interval=0.1) == "hello from workerd /x"
    finally:
        proc.kill()
        proc.wait()


def test_the_audit_log_names_each_write_to_an_edgeplane_object(
    cluster: Cluster, crds_installed: list[str], namespace: str
) -> None:
    """What a test that counts writes shows when it finds some: verb, object, who, code."""
    since = time.time()
    worker = {"apiVersion": "edgeplane.io/v1alpha1", "kind": "Worker",
              "metadata": {"name": "audited", "namespace": namespace},
              "spec": {"compatibilityDate": "2025-01-01",
                       "modules": [{"name": "index.js", "inline": "export default {};"}]}}
    wait_for(lambda: cluster.kubectl("create", "-f", "-", input=json.dumps(worker),
                                     check=False).returncode == 0 or None)
    cluster.kubectl("patch", "worker", "audited", "-n", namespace, "--subresource=status",
                    "--type=merge", "-p", '{"status": {"observedGeneration": 1}}')
    cluster.kubectl("create", "secret", "generic", "s", "-n", namespace, "--from-literal=k=v")
    cluster.kubectl("delete", "worker", "missing", "-n", namespace, check=False)
    got = cluster.writes_since(since)
    assert f"create workers {namespace}/audited by edgeplane-admin (201)" in got, got
    assert f"patch workers/status {namespace}/audited by edgeplane-admin (200)" in got, got
    assert f"delete workers {namespace}/missing by edgeplane-admin (404)" in got, got
    assert not any("secrets" in w for w in got), got  # nothing else is logged
    assert cluster.writes_since(time.time() + 60) == []
