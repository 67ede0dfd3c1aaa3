"""Least privilege, proven: the operator runs as the ServiceAccount of manifests/base, bound
only to its ClusterRole and authenticated with a TokenRequest token (not as the cluster
admin), and still deploys, updates and removes a Worker, with no 403 in its log; it may
review tokens and access (for `edgeplane tail`) and nothing it does not need."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from edgeplane.localstack.cluster import REPO, Cluster
from edgeplane.localstack.stack import Operator, Stack
from tests.e2e.conftest import Kube, eventually, fetch, responder, route, worker

pytestmark = pytest.mark.integration

SA_NAMESPACE = "edgeplane-system"
SA_NAME = "edgeplane-operator"
RBAC_KINDS = ("ServiceAccount", "ClusterRole", "ClusterRoleBinding")


def rbac_docs(cluster: Cluster) -> list[dict]:
    """The ServiceAccount, ClusterRole and ClusterRoleBinding exactly as `kubectl apply -k
    manifests/` would create them."""
    rendered = cluster.kubectl("kustomize", str(REPO / "manifests")).stdout
    docs = [d for d in yaml.safe_load_all(rendered) if d and d["kind"] in RBAC_KINDS]
    assert sorted(d["kind"] for d in docs) == sorted(RBAC_KINDS)
    return docs


def token_kubeconfig(cluster: Cluster, token: str, path: Path) -> Path:
    """A kubeconfig with the admin's server and CA, and only the ServiceAccount's token."""
    admin = yaml.safe_load(cluster.kubeconfig.read_text())
    server = admin["clusters"][0]["cluster"]
    cfg = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "local", "cluster": {
            "server": server["server"],
            "certificate-authority": server["certificate-authority"],
        }}],
        "users": [{"name": SA_NAME, "user": {"token": token}}],
        "contexts": [{"name": SA_NAME, "context": {"cluster": "local", "user": SA_NAME}}],
        "current-context": SA_NAME,
    }
    path.write_text(yaml.safe_dump(cfg))
    path.chmod(0o600)
    return path


@pytest.fixture
def restricted_operator(stack: Stack) -> Iterator[Operator]:
    """The shared operator is stopped (two operators would fight over the same Workers)
    and one running as the ServiceAccount takes its place; the shared one comes back after."""
    cluster, shared = stack.cluster, stack.operator
    assert cluster is not None and shared is not None
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(rbac_docs(cluster)))
    # TokenRequest, as a projected token in a Pod would be.
    token = cluster.kubectl(
        "create", "token", SA_NAME, "-n", SA_NAMESPACE, "--duration=1h"
    ).stdout.strip()
    root = stack.root / "rbac-operator"
    root.mkdir(parents=True, exist_ok=True)
    kubeconfig = token_kubeconfig(cluster, token, root / "kubeconfig")
    # The token alone is who the operator is: no other credentials reach it.
    whoami = cluster.kubectl("auth", "whoami", "--kubeconfig", str(kubeconfig), "-o", "json")
    assert json.loads(whoami.stdout)["status"]["userInfo"]["username"] == (
        f"system:serviceaccount:{SA_NAMESPACE}:{SA_NAME}"
    )
    shared.stop()
    op = Operator(root, kubeconfig)
    try:
        op.start()
        yield op
    finally:
        op.stop()
        shared.start()


def forbidden_lines(op: Operator) -> list[str]:
    log = op.root / "logs" / "operator.log"
    return [ln for ln in log.read_text(errors="replace").splitlines()
            # (?<!,): not the milliseconds of a log timestamp such as 12:00:01,403
            if re.search(r"(?<!,)\b403\b|[Ff]orbidden|[Nn]ot enough permissions", ln)]


def test_operator_as_its_service_account_deploys_updates_and_removes(
    stack: Stack, kube: Kube, restricted_operator: Operator
) -> None:
    host = f"rbac.{kube.namespace}.example.com"
    # Sources from a ConfigMap and a Secret, so reading both is exercised.
    kube.apply(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "rbac-code"},
         "data": {"suffix.txt": "from a ConfigMap"}},
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "rbac-secret"},
         "stringData": {"token": "s3cret"}},
    )
    script = (
        'import suffix from "./suffix.txt";\n'
        + responder("'v1 ' + suffix + ' ' + env.TOKEN.length")
    )
    spec = {
        "modules": [
            {"name": "index.js", "inline": script},
            {"name": "suffix.txt", "type": "text",
             "configMapKeyRef": {"name": "rbac-code", "key": "suffix.txt"}},
        ],
        "bindings": [{"name": "TOKEN", "secretKeyRef": {"name": "rbac-secret", "key": "token"}}],
    }
    kube.apply(worker("rbac", "", **spec), route("rbac", f"{host}/*", "rbac"))
    obj = kube.wait_ready("rbac", generation=1, timeout=90)
    n = len(stack.agents)
    assert obj["status"]["readyTargets"] == f"{n}/{n}"

    def serves(text: str) -> bool:
        got = [fetch(a, host) for a in stack.agents]
        assert got == [(200, text)] * n, got
        return True

    eventually(lambda: serves("v1 from a ConfigMap 6"))
    # The route's status is written too.
    eventually(lambda: (kube.condition("workerroute", "rbac", "Ready") or {}).get("status")
               == "True")

    # An update: a new WorkerVersion, and the Worker's status and Events.
    spec["modules"][0]["inline"] = script.replace("'v1 '", "'v2 '")
    kube.apply(worker("rbac", "", **spec))
    kube.wait_ready("rbac", generation=2, timeout=90)
    eventually(lambda: serves("v2 from a ConfigMap 6"))
    assert len(kube.list("workerversions")) == 2
    # The update's Deployed Event (a first rollout makes none), posted after the status.
    eventually(lambda: any(e["reason"] == "Deployed" for e in kube.list("events")) or None)

    # Removal through the finalizer: every location stops serving it.
    kube.delete("worker", "rbac")
    eventually(lambda: all(fetch(a, host)[0] == 404 for a in stack.agents))

    # EdgeTargets were health-checked and reported by this operator too.
    targets = json.loads(kube.cluster.kubectl("get", "edgetargets", "-o", "json").stdout)
    assert all(
        any(c["type"] == "Ready" for c in (t.get("status") or {}).get("conditions", []))
        for t in targets["items"]
    )
    forbidden = forbidden_lines(restricted_operator)
    assert forbidden == [], "\n".join(forbidden)


# What the operator's ServiceAccount must NOT be able to do: (verb, resource, extra args).
# (It may create ConfigMaps, its version archives, in any namespace that has Workers: a
# ClusterRole cannot narrow that to those namespaces.)
CANNOT = [
    ("create", "secrets", ()), ("update", "secrets", ()), ("patch", "secrets", ()),
    ("delete", "secrets", ()), ("delete", "configmaps", ("-n", "kube-system")),
    ("update", "configmaps", ()), ("patch", "configmaps", ()),
    ("create", "pods", ()), ("create", "deployments.apps", ()), ("delete", "namespaces", ()),
    ("create", "clusterrolebindings.rbac.authorization.k8s.io", ()),
    ("escalate", "clusterroles.rbac.authorization.k8s.io", ()),
    ("impersonate", "serviceaccounts", ()), ("create", "serviceaccounts", ("--subresource=token",)),
    ("create", "workerroutes.edgeplane.io", ()), ("delete", "workers.edgeplane.io", ()),
    ("update", "workers.edgeplane.io", ()), ("create", "hostclaims.edgeplane.io", ()),
    ("patch", "hostclaims.edgeplane.io", ()), ("delete", "edgetargets.edgeplane.io", ()),
    ("create", "edgetargets.edgeplane.io", ()), ("create", "customresourcedefinitions", ()),
    ("*", "*", ()),
]


@pytest.mark.parametrize(("verb", "resource", "extra"), CANNOT,
                         ids=[f"{v}-{r}" for v, r, _ in CANNOT])
def test_the_service_account_cannot(stack: Stack, verb: str, resource: str,
                                    extra: tuple[str, ...]) -> None:
    cluster = stack.cluster
    assert cluster is not None
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(rbac_docs(cluster)))
    where = list(extra) if "-n" in extra else ["-A", *extra]
    res = cluster.kubectl("auth", "can-i", verb, resource, *where,
                          "--as", f"system:serviceaccount:{SA_NAMESPACE}:{SA_NAME}", check=False)
    assert res.stdout.strip() == "no", f"{verb} {resource}: {res.stdout}{res.stderr}"
    # The check itself can say yes: the operator may read Workers and patch their status.
    yes = cluster.kubectl("auth", "can-i", "patch", "workers.edgeplane.io", "--subresource",
                          "status", "-A", "--as",
                          f"system:serviceaccount:{SA_NAMESPACE}:{SA_NAME}", check=False)
    assert yes.stdout.strip() == "yes", yes.stdout + yes.stderr


# What it must be able to do besides its watches: prove `edgeplane tail` callers with their
# own tokens (TokenReview) and ask whether they may get the Worker (SubjectAccessReview).
CAN = [("create", "tokenreviews.authentication.k8s.io"),
       ("create", "subjectaccessreviews.authorization.k8s.io")]


@pytest.mark.parametrize(("verb", "resource"), CAN, ids=[f"{v}-{r}" for v, r in CAN])
def test_the_service_account_can(stack: Stack, verb: str, resource: str) -> None:
    cluster = stack.cluster
    assert cluster is not None
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(rbac_docs(cluster)))
    res = cluster.kubectl("auth", "can-i", verb, resource, "--as",
                          f"system:serviceaccount:{SA_NAMESPACE}:{SA_NAME}", check=False)
    assert res.stdout.strip() == "yes", f"{verb} {resource}: {res.stdout}{res.stderr}"
