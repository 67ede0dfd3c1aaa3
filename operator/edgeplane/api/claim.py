"""HostClaim: which hostnames which namespaces may route (cluster-scoped, written by the
platform team). No claim, no route: a WorkerRoute whose host no claim grants its
namespace is never served. The models are Knative's ClusterDomainClaim and Gateway API's
`allowedRoutes`."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import Field, model_validator

from edgeplane.api.common import (
    AGE_COLUMN,
    DNS_LABEL_RE,
    READY_COLUMN,
    Condition,
    Resource,
    Wire,
    conditions_field,
    observed_generation_field,
)
from edgeplane.fieldpath import duplicate

_LABEL = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
# An exact DNS name, `*.` and a DNS name (its subdomains only), or `*` (every host).
CLAIMED_HOST_RE = rf"^(\*|(\*\.)?{_LABEL}(\.{_LABEL})*)$"

ClaimedHost = Annotated[str, Field(pattern=CLAIMED_HOST_RE, max_length=253)]
NamespaceName = Annotated[str, Field(pattern=DNS_LABEL_RE, max_length=63)]


class HostClaimSpec(Wire):
    """The hosts, and the namespaces whose WorkerRoutes may use them."""

    hosts: list[ClaimedHost] = Field(
        min_length=1,
        max_length=256,
        description="Hostnames granted, lower case: `shop.example.com` (that host), "
        "`*.example.com` (its subdomains, not example.com itself), or `*` (every host: "
        "catch-all patterns such as `*/*` need it).",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    namespaces: list[NamespaceName] = Field(
        min_length=1,
        max_length=256,
        description="Namespaces whose WorkerRoutes may use the hosts.",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )

    @model_validator(mode="after")
    def _distinct(self) -> Self:
        # Sets at the apiserver: a repeated item is refused there, so here as well.
        dup = duplicate(self.hosts, "hosts", "host") or duplicate(
            self.namespaces, "namespaces", "namespace"
        )
        if dup:
            raise ValueError(dup)
        return self


class HostClaimStatus(Wire):
    """What the operator observed about the claim."""

    observed_generation: int | None = observed_generation_field()
    conditions: list[Condition] = conditions_field(
        "Ready: True once the operator applies the claim to the routes."
    )


class HostClaim(Resource):
    """Grants hostnames to namespaces: a WorkerRoute is served only if a HostClaim grants
    its pattern's host to the route's namespace."""

    KIND: ClassVar[str] = "HostClaim"
    PLURAL: ClassVar[str] = "hostclaims"
    SHORT_NAMES: ClassVar[tuple[str, ...]] = ("ehc",)
    SCOPE: ClassVar[Literal["Namespaced", "Cluster"]] = "Cluster"
    PRINTER_COLUMNS: ClassVar[tuple[dict[str, Any], ...]] = (
        {"name": "Hosts", "type": "string", "jsonPath": ".spec.hosts"},
        {"name": "Namespaces", "type": "string", "jsonPath": ".spec.namespaces"},
        READY_COLUMN,
        AGE_COLUMN,
    )

    spec: HostClaimSpec
    status: HostClaimStatus | None = None
