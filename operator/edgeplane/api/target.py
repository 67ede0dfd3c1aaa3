"""EdgeTarget: one edge location, reached through its agent's HTTP API."""

from __future__ import annotations

import re
from typing import Any, ClassVar, Literal, Self
from urllib.parse import urlsplit

from pydantic import AwareDatetime, Field, model_validator

from edgeplane.api.common import (
    AGE_COLUMN,
    DATA_KEY_RE,
    DNS_LABEL_RE,
    DNS_SUBDOMAIN_RE,
    MAX_KEY,
    MAX_NAME,
    READY_COLUMN,
    Condition,
    Resource,
    Wire,
    cel,
    conditions_field,
    observed_generation_field,
    validations,
)

MAX_ENDPOINT = 2048
MAX_CA_BUNDLE = 64 * 1024
PEM_CERT = "-----BEGIN CERTIFICATE-----"
REGION_LABEL = "edgeplane.io/region"
# Keys of a kubernetes.io/tls Secret.
TLS_CERT_KEY = "tls.crt"
TLS_KEY_KEY = "tls.key"
# Plain http only to the machine itself: localhost, 127.0.0.0/8 or [::1], spelt exactly so
# (no user info, no other forms of an address). One regular expression for the model and
# CEL: the apiserver's cost budget refuses ip() or isIP() on a parsed URL's hostname.
_OCTET = r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
LOOPBACK_HTTP_RE = rf"http://(localhost|127(\.{_OCTET}){{3}}|\[::1\])(:[0-9]{{1,5}})?(/.*)?"
HTTPS_ONLY = (
    "http:// is allowed only to an agent on the operator's own machine (127.0.0.0/8, ::1, "
    "localhost): the bearer token would cross the network in clear text; serve the agent "
    "with --tls-cert/--tls-key and use https:// (with caBundle for a private CA)"
)


def endpoint_refusal(endpoint: str) -> str | None:
    """Why the operator must not send its credentials to `endpoint`: plain http to anything
    but the loopback. None when it may."""
    if not endpoint.lower().startswith("http://") or re.fullmatch(LOOPBACK_HTTP_RE, endpoint):
        return None
    return f"spec.endpoint: {endpoint}: {HTTPS_ONLY}"


class SecretKeySelector(Wire):
    """A key of a Secret in a named namespace."""

    namespace: str = Field(
        pattern=DNS_LABEL_RE, max_length=63, description="Namespace of the Secret."
    )
    name: str = Field(
        pattern=DNS_SUBDOMAIN_RE, max_length=MAX_NAME, description="Name of the Secret."
    )
    key: str = Field(
        pattern=DATA_KEY_RE, max_length=MAX_KEY, description="Key in the Secret's data."
    )


class SecretReference(Wire):
    """A Secret in a named namespace."""

    namespace: str = Field(
        pattern=DNS_LABEL_RE, max_length=63, description="Namespace of the Secret."
    )
    name: str = Field(
        pattern=DNS_SUBDOMAIN_RE, max_length=MAX_NAME, description="Name of the Secret."
    )


class EdgeTargetSpec(Wire):
    """How the operator reaches the location's edge agent."""

    model_config = validations(
        cel(
            "!has(self.caBundle) || self.endpoint.startsWith('https://')",
            "caBundle: only used with an https:// endpoint; remove it or use https",
            ".caBundle",
        ),
        cel(
            "!has(self.clientCertificateSecretRef) || self.endpoint.startsWith('https://')",
            "clientCertificateSecretRef: only used with an https:// endpoint; remove it or "
            "use https",
            ".clientCertificateSecretRef",
        ),
    )

    endpoint: str = Field(
        max_length=MAX_ENDPOINT,
        description="Base URL of the edge agent's API, e.g. https://edge-fra.example.net:8443; "
        "http:// only to an agent on the operator's machine (127.0.0.0/8, ::1, localhost).",
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "isURL(self) && url(self).getScheme() in ['http', 'https']"
                    " && url(self).getHostname() != '' && size(url(self).getQuery()) == 0",
                    "endpoint: must be an absolute http:// or https:// URL without a query, "
                    "e.g. https://edge-fra.example.net:8443",
                ),
                cel(
                    "!self.startsWith('http://') || self.matches('^"
                    + LOOPBACK_HTTP_RE.replace("\\", "\\\\")
                    + "$')",
                    f"endpoint: {HTTPS_ONLY}",
                ),
            ]
        },
    )
    credentials_secret_ref: SecretKeySelector = Field(
        alias="credentialsSecretRef",
        description="Secret key holding the bearer token the agent expects.",
    )
    ca_bundle: str | None = Field(
        default=None,
        alias="caBundle",
        max_length=MAX_CA_BUNDLE,
        description="PEM certificates to trust for an https endpoint, instead of the "
        "system roots.",
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    f"self.contains('{PEM_CERT}')",
                    "caBundle: must hold PEM certificates (-----BEGIN CERTIFICATE-----)",
                )
            ]
        },
    )

    client_certificate_secret_ref: SecretReference | None = Field(
        default=None,
        alias="clientCertificateSecretRef",
        description="Secret (kubernetes.io/tls: tls.crt, tls.key) with the client certificate "
        "the operator presents to an agent started with --tls-client-ca; in a namespace the "
        "operator reads edge credentials from, like credentialsSecretRef.",
    )

    @model_validator(mode="after")
    def _endpoint(self) -> Self:
        try:
            parts = urlsplit(self.endpoint)
            ok = parts.scheme in ("http", "https") and bool(parts.hostname) and not parts.query
            _ = parts.port
        except ValueError:
            ok = False
        if not ok or any(c.isspace() for c in self.endpoint):
            raise ValueError("endpoint: must be an absolute http:// or https:// URL")
        if (refusal := endpoint_refusal(self.endpoint)) is not None:
            raise ValueError(refusal)
        if self.ca_bundle is not None:
            if parts.scheme != "https":
                raise ValueError("caBundle: only used with an https:// endpoint")
            if PEM_CERT not in self.ca_bundle:
                raise ValueError("caBundle: must hold PEM certificates")
        if self.client_certificate_secret_ref is not None and parts.scheme != "https":
            raise ValueError("clientCertificateSecretRef: only used with an https:// endpoint")
        return self


class EdgeTargetStatus(Wire):
    """What the operator last heard from the location's agent."""

    observed_generation: int | None = observed_generation_field()
    conditions: list[Condition] = conditions_field(
        "Ready (the agent answers and its workerd serves) and Reconciling."
    )
    last_heartbeat: AwareDatetime | None = Field(
        default=None,
        alias="lastHeartbeat",
        description="When the agent last answered (RFC 3339).",
    )
    agent_version: str | None = Field(
        default=None,
        alias="agentVersion",
        max_length=128,
        description="Version of the edge agent.",
    )
    runtime_version: str | None = Field(
        default=None,
        alias="runtimeVersion",
        max_length=128,
        description="Version of workerd the agent runs.",
    )
    workers: int | None = Field(
        default=None, ge=0, description="Number of Workers the location serves, as of "
        "its last health check: during a deploy written at most every 10 s."
    )


class EdgeTarget(Resource):
    """One edge location running an edgeplane agent in front of workerd. Its identity
    (region, colo) comes from labels such as edgeplane.io/region, which Workers select."""

    KIND: ClassVar[str] = "EdgeTarget"
    PLURAL: ClassVar[str] = "edgetargets"
    SHORT_NAMES: ClassVar[tuple[str, ...]] = ("et",)
    SCOPE: ClassVar[Literal["Namespaced", "Cluster"]] = "Cluster"
    PRINTER_COLUMNS: ClassVar[tuple[dict[str, Any], ...]] = (
        READY_COLUMN,
        {"name": "Endpoint", "type": "string", "jsonPath": ".spec.endpoint"},
        {"name": "Workers", "type": "integer", "jsonPath": ".status.workers"},
        AGE_COLUMN,
        {
            "name": "Region",
            "type": "string",
            "priority": 1,
            "jsonPath": ".metadata.labels.edgeplane\\.io/region",
        },
        {"name": "Runtime", "type": "string", "priority": 1, "jsonPath": ".status.runtimeVersion"},
    )

    spec: EdgeTargetSpec
    status: EdgeTargetStatus | None = None
