"""WorkerVersion: one compiled, immutable version of a Worker, written by the operator.

It records the version's identity and a summary that is safe to show (module digests,
binding kinds; never a secret value), plus the Worker spec it was built from: resolving
that spec again and checking the module digests rebuilds the same bundle for a rollback.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, ClassVar

from pydantic import AfterValidator, AwareDatetime, Field

from edgeplane.api.common import (
    AGE_COLUMN,
    Condition,
    Resource,
    Wire,
    cel,
    conditions_field,
    validations,
)
from edgeplane.api.worker import (
    MAX_BINDINGS,
    MAX_MODULES,
    MAX_OCI_REF,
    SHA256_RE,
    STRICT_COMPAT_DATE_RE,
    CompatFlag,
    ModuleName,
    VersionId,
    WorkerName,
    WorkerSpec,
)
from edgeplane.resolve.artifact import OCI_REF_FORM, OCI_REF_RE, parse_ref
from edgeplane.wire import JS_IDENTIFIER_RE, ModuleType


class BindingKind(StrEnum):
    PLAIN_TEXT = "plainText"
    JSON = "json"
    SECRET_KEY_REF = "secretKeyRef"
    SERVICE = "service"
    KV_NAMESPACE = "kvNamespace"
    DURABLE_OBJECT_NAMESPACE = "durableObjectNamespace"


class ModuleSummary(Wire):
    """A module of the version: its name, type and content digest."""

    name: ModuleName = Field(description="Module name.")
    type: ModuleType = Field(description="Module type.")
    sha256: str = Field(
        pattern=SHA256_RE, max_length=64, description="SHA-256 of the module's content."
    )
    size: int = Field(ge=0, description="Size of the module's content in bytes.")


class BindingSummary(Wire):
    """A binding of the version: its name and kind, never its value."""

    name: str = Field(
        pattern=JS_IDENTIFIER_RE, max_length=64, description="Binding name on `env`."
    )
    kind: BindingKind = Field(description="Kind of binding, e.g. secretKeyRef or service.")


def _check_ref(value: str) -> str:
    try:
        parse_ref(value)
    except ValueError as e:
        raise ValueError(f"artifact.ref: {e}") from None
    return value


class VersionArtifact(Wire):
    """Where the version's code is kept when the operator has a version registry."""

    ref: Annotated[str, AfterValidator(_check_ref)] = Field(
        max_length=MAX_OCI_REF,
        description="The version's OCI artifact, `<host>/<repository>@sha256:<64 hex>`: one "
        "layer per module, each layer's digest the module's sha256 in `modules`.",
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(f"self.matches(r'{OCI_REF_RE}')", f"artifact.ref: {OCI_REF_FORM}")
            ]
        },
    )
    assets: str | None = Field(
        default=None,
        pattern=r"^sha256:[0-9a-f]{64}$",
        max_length=71,
        description="Digest of the layer describing the version's static assets (their "
        "files are layers named by sha256 in it); unset without assets.",
    )


class WorkerVersionSpec(Wire):
    """The identity and content summary of one compiled version; immutable."""

    model_config = validations(
        cel(
            "self == oldSelf",
            "spec: a WorkerVersion is immutable; change the Worker to get a new version",
        )
    )
    # Written whole, once, by the operator: its managedFields name `f:spec` alone rather
    # than each field in it again (about a quarter of a record's etcd bytes).
    model_config["json_schema_extra"]["x-kubernetes-map-type"] = "atomic"  # type: ignore[index]

    worker: WorkerName = Field(description="Name of the Worker this is a version of.")
    version_id: VersionId = Field(
        alias="versionId",
        description="sha256 of the compiled bundle: the same inputs always give the same id.",
    )
    created: AwareDatetime = Field(description="When the operator compiled the version (RFC 3339).")
    worker_generation: int = Field(
        alias="workerGeneration",
        ge=0,
        description="metadata.generation of the Worker the version was compiled from.",
    )
    main_module: ModuleName = Field(alias="mainModule", description="Module workerd runs.")
    compatibility_date: str = Field(
        alias="compatibilityDate",
        pattern=STRICT_COMPAT_DATE_RE,
        max_length=10,
        description="workerd compatibility date of the version.",
    )
    compatibility_flags: list[CompatFlag] = Field(
        default_factory=list,
        alias="compatibilityFlags",
        max_length=64,
        description="workerd compatibility flags of the version.",
    )
    modules: list[ModuleSummary] = Field(
        min_length=1, max_length=MAX_MODULES, description="Modules with their digests."
    )
    bindings: list[BindingSummary] = Field(
        default_factory=list,
        max_length=MAX_BINDINGS,
        description="Binding names and kinds; values are never recorded here.",
    )
    source: WorkerSpec = Field(
        description="The Worker spec the version was compiled from (secrets by reference "
        "only); resolving it again and matching the module digests rebuilds this version."
    )
    archive_parts: int = Field(
        default=0,
        alias="archiveParts",
        ge=0,
        le=100,
        description="How many ConfigMaps `<name>-m<i>` (owned by this object) hold the "
        "version's modules that are not inline in `source` (0 when all are), so it can be "
        "served again without its original sources.",
    )
    artifact: VersionArtifact | None = Field(
        default=None,
        description="Set when the version is kept in the operator's version registry "
        "(--version-registry) instead of ConfigMaps: its modules are pulled from there by "
        "digest, and `source` names their layers instead of holding inline content.",
    )
    message: str | None = Field(
        default=None,
        max_length=1024,
        description="Optional note about the version, e.g. the change that produced it.",
    )


class WorkerVersionStatus(Wire):
    """The version's conditions. Where it serves is the Worker's `status.targets` (each
    location's version): kept there alone, as a count here cost a write on every version
    that starts or stops serving."""

    conditions: list[Condition] = conditions_field(
        "Conditions of the version, e.g. Ready when it passed validation."
    )


class WorkerVersion(Resource):
    """One compiled, immutable version of a Worker. Created by the operator and owned by
    its Worker; the most recent ones are kept for rollback."""

    KIND: ClassVar[str] = "WorkerVersion"
    PLURAL: ClassVar[str] = "workerversions"
    SHORT_NAMES: ClassVar[tuple[str, ...]] = ("ewv",)
    PRINTER_COLUMNS: ClassVar[tuple[dict[str, Any], ...]] = (
        {"name": "Worker", "type": "string", "jsonPath": ".spec.worker"},
        {"name": "Generation", "type": "integer", "jsonPath": ".spec.workerGeneration"},
        AGE_COLUMN,
        {"name": "Version", "type": "string", "priority": 1, "jsonPath": ".spec.versionId"},
    )

    spec: WorkerVersionSpec
    status: WorkerVersionStatus | None = None

    def to_wire(self) -> dict[str, Any]:
        """Fields of the spec at their defaults (empty lists, the default rollout...) are left
        out: etcd keeps every retained version, and its managedFields name each field
        written a second time. Reading the object back gives the same defaults."""
        wire = super().to_wire()
        wire["spec"] = self.spec.model_dump(
            mode="json", by_alias=True, exclude_none=True, exclude_defaults=True
        )
        return wire

    @staticmethod
    def name_for(worker: str, version_id: str) -> str:
        """The object name of a Worker's version: `<worker>-<first 12 hex of the id>`."""
        return f"{worker}-{version_id[:12]}"
