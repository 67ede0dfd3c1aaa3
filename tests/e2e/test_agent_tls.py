"""An edge location whose agent speaks https and requires client certificates
(--tls-client-ca): with caBundle and clientCertificateSecretRef its EdgeTarget becomes
Ready and serves a Worker; without the client certificate it is not Ready, saying why.

The agent is this test's own, beside the shared stack's three; its EdgeTarget has a region
of its own that only this test's Worker selects, and is removed at the end."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
import yaml

from edgeplane.localstack.pki import CertificateAuthority
from edgeplane.localstack.stack import SYSTEM_NAMESPACE, Agent, AgentTls, Stack
from tests.e2e.conftest import Kube, eventually, responder, route, worker

pytestmark = pytest.mark.integration

REGION = "tls-test"


def ready_condition(kube: Kube, name: str) -> dict[str, Any]:
    res = kube.cluster.kubectl("get", "edgetarget", name, "-o", "json")
    conds = (json.loads(res.stdout).get("status") or {}).get("conditions") or []
    return next((c for c in conds if c["type"] == "Ready"), {})


def client_secret(name: str, cert: bytes, key: bytes) -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
        "metadata": {"name": name, "namespace": SYSTEM_NAMESPACE},
        "data": {"tls.crt": base64.b64encode(cert).decode(),
                 "tls.key": base64.b64encode(key).decode()},
    }


def test_an_agent_requiring_client_certificates(stack: Stack, kube: Kube) -> None:
    ca = CertificateAuthority(stack.root / f"pki-{kube.namespace}", "tls-test-ca")
    tls = AgentTls(ca.issue("agent", "edge-tls", server_hosts=("127.0.0.1",)),
                   ca.pair.cert, client_ca=ca.pair.cert)
    agent = Agent(f"tls-{kube.namespace}", REGION, stack.root, tls=tls)
    pair = ca.issue("operator", "edgeplane-operator")
    token_secret, target = agent.manifests()
    client = client_secret(f"edge-{agent.name}-client", pair.cert.read_bytes(),
                           pair.key.read_bytes())
    target["spec"]["clientCertificateSecretRef"] = {
        "namespace": SYSTEM_NAMESPACE, "name": client["metadata"]["name"]}
    assert target["spec"]["endpoint"].startswith("https://") and "caBundle" in target["spec"]
    agent.start()
    try:
        kube.cluster.kubectl("apply", "-f", "-",
                             input=yaml.safe_dump_all([token_secret, client, target]))
        eventually(lambda: ready_condition(kube, agent.name).get("status") == "True", timeout=60)

        host = f"tls.{kube.namespace}.example.com"
        kube.apply(worker("mtls", responder('"over mTLS"'),
                          targets={"matchLabels": {"edgeplane.io/region": REGION}}),
                   route("mtls", f"{host}/*", "mtls"))
        kube.wait_ready("mtls")
        # The route may reach the location in a push after the one that made it Ready.
        eventually(lambda: agent.fetch(host) == (200, "over mTLS"))

        # Without its client certificate the operator is refused, and the status says why.
        kube.cluster.kubectl("patch", "edgetarget", agent.name, "--type=json", "-p", json.dumps(
            [{"op": "remove", "path": "/spec/clientCertificateSecretRef"}]))

        def refused() -> dict[str, Any] | None:
            cond = ready_condition(kube, agent.name)
            return cond if cond.get("status") == "False" else None

        cond = eventually(refused, timeout=60)
        assert cond["reason"] == "CredentialsRejected"  # the agent answered: not the network
        assert "401" in cond["message"] and "client certificate" in cond["message"]
        assert "--tls-client-ca" in cond["message"]

        # A caBundle that does not hold the agent's CA names itself too, and fixing the
        # EdgeTarget brings the location back with nothing else changed.
        other = CertificateAuthority(stack.root / f"pki-{kube.namespace}-other", "other-ca")
        kube.cluster.kubectl("patch", "edgetarget", agent.name, "--type=merge", "-p", json.dumps(
            {"spec": {"caBundle": other.pair.cert.read_text()}}))

        def unverified() -> bool:
            cond = ready_condition(kube, agent.name)
            assert cond.get("reason") == "TLSVerifyFailed", cond
            return True

        eventually(unverified, timeout=30)
        assert "CERTIFICATE_VERIFY_FAILED" in ready_condition(kube, agent.name)["message"]
        kube.cluster.kubectl("patch", "edgetarget", agent.name, "--type=merge", "-p", json.dumps(
            {"spec": {"caBundle": ca.pair.cert.read_text(),
                      "clientCertificateSecretRef": target["spec"]["clientCertificateSecretRef"]}}))
        eventually(lambda: ready_condition(kube, agent.name).get("status") == "True", timeout=30)
    finally:
        kube.cluster.kubectl("delete", "edgetarget", agent.name, "--wait=true",
                             "--timeout=60s", check=False)
        kube.cluster.kubectl("delete", "secret", "-n", SYSTEM_NAMESPACE,
                             token_secret["metadata"]["name"], client["metadata"]["name"],
                             "--ignore-not-found", check=False)
        agent.stop()
