"""The install manifests, read as files: CRD copies current, RBAC least privilege, security
contexts in place. (Rendering with the real helm and kubectl is in
tests/integration/test_packaging.py.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CRDS = REPO / "crds"
COPIES = [REPO / "manifests" / "base" / "crds", REPO / "charts" / "edgeplane" / "crds"]
WRITE_VERBS = {"create", "update", "patch", "delete", "deletecollection", "*"}
DANGEROUS_VERBS = {"escalate", "bind", "impersonate", "*"}


def role_problems(role: dict[str, Any]) -> list[str]:
    """Why a (Cluster)Role is not least privilege: wildcards, writes to Secrets, RBAC
    escalation. Empty when it is fine."""
    problems = []
    for i, rule in enumerate(role.get("rules", [])):
        for field in ("apiGroups", "resources", "verbs", "resourceNames", "nonResourceURLs"):
            if any("*" in v for v in rule.get(field, [])):
                problems.append(f"rules[{i}].{field} has a wildcard: {rule[field]}")
        verbs = set(rule.get("verbs", []))
        core = "" in rule.get("apiGroups", [])
        secrets = any(r.split("/")[0] == "secrets" for r in rule.get("resources", []))
        if core and secrets and verbs & WRITE_VERBS:
            problems.append(f"rules[{i}] writes Secrets: {sorted(verbs & WRITE_VERBS)}")
        if verbs & DANGEROUS_VERBS:
            problems.append(f"rules[{i}] has {sorted(verbs & DANGEROUS_VERBS)}")
    return problems


def base_docs() -> list[dict[str, Any]]:
    out = []
    for p in sorted((REPO / "manifests" / "base").glob("*.yaml")):
        out += [d for d in yaml.safe_load_all(p.read_text()) if d and "kind" in d]
    return out


@pytest.mark.parametrize("copy", COPIES, ids=lambda p: str(p.relative_to(REPO)))
def test_crd_copies_are_current(copy: Path) -> None:
    generated = {p.name: p.read_text() for p in CRDS.glob("*.yaml")}
    copied = {p.name: p.read_text() for p in copy.glob("*.edgeplane.io.yaml")}
    assert copied == generated, (
        f"{copy.relative_to(REPO)} differs from crds/: run tools/sync-copies.sh"
    )


@pytest.mark.parametrize("name", ["prometheus-rule.yaml", "grafana-dashboard.json"])
def test_chart_monitoring_copies_are_current(name: str) -> None:
    source = REPO / "manifests" / "monitoring" / name
    copy = REPO / "charts" / "edgeplane" / "files" / name
    assert copy.read_text() == source.read_text(), f"{copy}: run tools/sync-copies.sh"


def test_kustomization_lists_every_crd_and_manifest() -> None:
    k = yaml.safe_load((REPO / "manifests" / "base" / "kustomization.yaml").read_text())
    listed = set(k["resources"])
    crds = {f"crds/{p.name}" for p in CRDS.glob("*.yaml")}
    assert crds <= listed, f"add to manifests/base/kustomization.yaml: {sorted(crds - listed)}"
    files = {p.name for p in (REPO / "manifests" / "base").glob("*.yaml")} - {
        "kustomization.yaml"
    }
    assert files <= listed


def test_the_checker_catches_what_it_must() -> None:
    bad = {"rules": [
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "update"]},
        {"apiGroups": ["*"], "resources": ["pods"], "verbs": ["get"]},
        {"apiGroups": ["apps"], "resources": ["*"], "verbs": ["list"]},
        {"apiGroups": ["edgeplane.io"], "resources": ["workers"], "verbs": ["*"]},
        {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["clusterroles"],
         "verbs": ["escalate"]},
    ]}
    assert len(role_problems(bad)) == 6
    ok = {"rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "watch"]}]}
    assert role_problems(ok) == []


def test_base_rbac_is_least_privilege() -> None:
    roles = [d for d in base_docs() if d["kind"] in ("ClusterRole", "Role")]
    assert roles
    for role in roles:
        assert role_problems(role) == [], role["metadata"]["name"]
    binding = next(d for d in base_docs() if d["kind"] == "ClusterRoleBinding")
    sa = next(d for d in base_docs() if d["kind"] == "ServiceAccount")
    assert binding["subjects"] == [{
        "kind": "ServiceAccount", "name": sa["metadata"]["name"],
        "namespace": sa["metadata"]["namespace"],
    }]
    assert binding["roleRef"]["name"] == roles[0]["metadata"]["name"]


def test_base_deployment_runs_restricted() -> None:
    dep = next(d for d in base_docs() if d["kind"] == "Deployment")
    pod = dep["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["serviceAccountName"] == "edgeplane-operator"
    for c in pod["containers"]:
        sc = c["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["capabilities"]["drop"] == ["ALL"]
        assert c["livenessProbe"] and c["readinessProbe"]
        assert c["args"][0] == "operator"


def test_containerfile_runs_as_the_user_the_manifests_expect() -> None:
    text = (REPO / "Containerfile").read_text()
    users = [ln.split()[1] for ln in text.splitlines() if ln.startswith("USER ")]
    assert users and users[-1] == "10001:10001"
    dep = next(d for d in base_docs() if d["kind"] == "Deployment")
    pod_sc = dep["spec"]["template"]["spec"]["securityContext"]
    assert f"{pod_sc['runAsUser']}:{pod_sc['runAsGroup']}" == users[-1]
    values = yaml.safe_load((REPO / "charts" / "edgeplane" / "values.yaml").read_text())
    chart_sc = values["podSecurityContext"]
    assert f"{chart_sc['runAsUser']}:{chart_sc['runAsGroup']}" == users[-1]


def test_containerfile_installs_like_make_setup() -> None:
    text = (REPO / "Containerfile").read_text()
    makefile = (REPO / "Makefile").read_text()
    # The same steps as the Makefile's setup: a venv, pip from pyproject, npm ci.
    assert "-m venv" in text and "pip install --quiet --upgrade pip" in text
    assert "pip install --quiet -e ." in text and "pip install --quiet -e '.[dev]'" in makefile
    assert "npm ci" in text and "npm ci" in makefile
    assert "COPY package.json package-lock.json" in text
    # No download besides the package registries' clients.
    assert "curl" not in text and "wget" not in text
    assert 'ENTRYPOINT ["edgeplane"]' in text
