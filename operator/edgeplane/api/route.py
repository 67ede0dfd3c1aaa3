"""WorkerRoute: which requests reach a Worker, and how they split between its versions."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Self

from pydantic import AfterValidator, Field, model_validator

from edgeplane.api.common import (
    AGE_COLUMN,
    READY_COLUMN,
    Condition,
    Resource,
    Wire,
    cel,
    conditions_field,
    observed_generation_field,
    validations,
)
from edgeplane.api.worker import WorkerName
from edgeplane.fieldpath import duplicate
from edgeplane.routing import CEL_RULES, MAX_PATTERN, check_pattern

# A full version id, a unique prefix of at least 8 hex digits, or "latest".
VERSION_REF_RE = r"^([0-9a-f]{8,64}|latest)$"

RoutePattern = Annotated[
    str, Field(min_length=1, max_length=MAX_PATTERN), AfterValidator(check_pattern)
]


class TrafficTarget(Wire):
    """A share of the route's requests for one version of the Worker."""

    version: str = Field(
        pattern=VERSION_REF_RE,
        max_length=64,
        description="Version id (as in the Worker's status or `kubectl get workerversions`; "
        "a unique prefix of at least 8 hex digits is enough), or `latest` for the Worker's "
        "newest version.",
    )
    percent: int = Field(
        ge=0, le=100, description="Percent of requests for this version, 0 to 100."
    )


MSG_EXCLUSION_TRAFFIC = (
    "traffic: a route without a worker excludes its pattern and sends no traffic; set "
    "worker or remove traffic"
)


class WorkerRouteSpec(Wire):
    """Requests matching pattern go to worker, optionally split between versions; without a
    worker, the pattern is excluded from less specific routes."""

    model_config = validations(
        cel(
            "has(self.worker) || !has(self.traffic) || size(self.traffic) == 0",
            MSG_EXCLUSION_TRAFFIC,
            ".traffic",
        )
    )

    pattern: RoutePattern = Field(
        description="Cloudflare route pattern, e.g. `*.example.com/api/*`: optional http:// "
        "or https://, '*' only at the start of the host and the end of the path, no query "
        "string; no path means `/`. A path ending in '*' also matches URLs with a query, "
        "an exact path only URLs without one. The most specific matching route wins (see "
        "docs/routes.md).",
        json_schema_extra={"x-kubernetes-validations": [cel(r, m) for r, m in CEL_RULES]},
    )
    worker: WorkerName | None = Field(
        default=None,
        description="Name of the Worker, in the same namespace. Omitted: requests matching "
        "the pattern bypass Workers, as a Cloudflare route without a Worker does: less "
        "specific routes do not see them, and each location answers them with its bypass "
        "response (see docs/routes.md).",
    )
    traffic: list[TrafficTarget] = Field(
        default_factory=list,
        max_length=16,
        description="Split of requests between versions, percents summing to 100; omitted "
        "sends everything to the Worker's ready version.",
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["version"],
            "x-kubernetes-validations": [
                cel(
                    "size(self) == 0 || self.map(t, t.percent).sum() == 100",
                    "traffic: percents must sum to 100",
                )
            ],
        },
    )

    @model_validator(mode="after")
    def _traffic(self) -> Self:
        if self.worker is None and self.traffic:
            raise ValueError(MSG_EXCLUSION_TRAFFIC)
        if self.traffic and sum(t.percent for t in self.traffic) != 100:
            raise ValueError("traffic: percents must sum to 100")
        dup = duplicate([t.version for t in self.traffic], "traffic", "version")
        if dup:
            raise ValueError(dup)
        return self


class WorkerRouteStatus(Wire):
    """What the operator observed about the route."""

    observed_generation: int | None = observed_generation_field()
    conditions: list[Condition] = conditions_field(
        "Ready: False with reason RouteConflict when another route claims the same pattern."
    )


class WorkerRoute(Resource):
    """Sends requests whose host and path match a Cloudflare-style pattern to a Worker."""

    KIND: ClassVar[str] = "WorkerRoute"
    PLURAL: ClassVar[str] = "workerroutes"
    SHORT_NAMES: ClassVar[tuple[str, ...]] = ("ewr",)
    PRINTER_COLUMNS: ClassVar[tuple[dict[str, Any], ...]] = (
        {"name": "Pattern", "type": "string", "jsonPath": ".spec.pattern"},
        {"name": "Worker", "type": "string", "jsonPath": ".spec.worker"},
        READY_COLUMN,
        AGE_COLUMN,
    )

    spec: WorkerRouteSpec
    status: WorkerRouteStatus | None = None
