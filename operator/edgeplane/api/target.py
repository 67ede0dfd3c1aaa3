"""EdgeTarget: one edge location, reached through its agent's HTTP API."""

from __future__ import annotations

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


class EdgeTargetSpec(Wire):
    """How the operator reaches the location's edge agent."""

    model_config = validations(
        cel(
            "!has(self.caBundle) || self.endpoint.startsWith('https://')",
            "caBundle: only used with an https:// endpoint; remove it or use https",
            ".caBundle",
        )
    )

    endpoint: str = Field(
        max_length=MAX_ENDPOINT,
        description="Base URL of the edge agent's API, http:// or https://, e.g. "
        "https://edge-fra.example.net:8443.",
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "isURL(self) && url(self).getScheme() in ['http', 'https']"
                    " && url(self).getHostname() != '' && size(url(self).getQuery()) == 0",
                    "endpoint: must be an absolute http:// or https:// URL without a query, "
                    "e.g. https://edge-fra.example.net:8443",
                )
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
        if self.ca_bundle is not None:
            if parts.scheme != "https":
                raise ValueError("caBundle: only used with an https:// endpoint")
            if PEM_CERT not in self.ca_bundle:
                raise ValueError("caBundle: must hold PEM certificates")
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
        default=None, ge=0, description="Number of Workers the location serves."
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
