"""Pieces shared by every edgeplane resource: the wire base class, metav1-shaped
conditions and label selectors, object references, and the limits that keep CEL cheap.

Every field carries a description: the CRD generator copies it into the schema, so it is
what `kubectl explain` prints.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

GROUP = "edgeplane.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

# Cloudflare script names: lowercase letters, digits and '-', not starting or ending with
# '-', at most 63 characters. Also a DNS label, so "<namespace>.<name>" stays a valid
# bundle worker name.
DNS_LABEL_RE = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
# Kubernetes object names of Secrets and ConfigMaps (DNS subdomain, RFC 1123).
DNS_SUBDOMAIN_RE = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
# Keys inside a Secret or ConfigMap's data.
DATA_KEY_RE = r"^[-._a-zA-Z0-9]+$"
# Label keys: optional DNS-subdomain prefix and a name part (qualified name).
LABEL_KEY_RE = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)
LABEL_VALUE_RE = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"
CONDITION_TYPE_RE = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$"
)
CONDITION_REASON_RE = r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"

# Limits. Every string and list in a schema has one: the apiserver estimates the worst-case
# cost of each CEL rule from them and refuses a CRD whose rules could run too long.
MAX_NAME = 253
MAX_KEY = 253
MAX_MESSAGE = 32768
MAX_SHORT_TEXT = 1024
MAX_CONDITIONS = 16
MAX_TARGETS = 1024


class Wire(BaseModel):
    """Base of every spec and status model: camelCase on the wire, snake_case in Python.

    Unknown fields are an error: the CRD is generated from these models, so anything the
    apiserver hands us is known, and a typo in a test or a manifest fails loudly.
    """

    model_config = ConfigDict(
        extra="forbid",
        populate_by_name=True,
        use_enum_values=False,
        validate_default=True,
    )

    def to_wire(self) -> dict[str, Any]:
        """The JSON-ready dict to send to the apiserver (aliases, no unset optionals)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


def cel(rule: str, message: str, field_path: str | None = None) -> dict[str, str]:
    """One `x-kubernetes-validations` entry."""
    out = {"rule": rule, "message": message}
    if field_path is not None:
        out["fieldPath"] = field_path
    return out


def validations(*rules: dict[str, str]) -> ConfigDict:
    """A model_config that puts CEL rules on the model's schema."""
    return ConfigDict(json_schema_extra={"x-kubernetes-validations": list(rules)})


READY_COLUMN: dict[str, Any] = {
    "name": "Ready",
    "type": "string",
    "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
}
AGE_COLUMN: dict[str, Any] = {
    "name": "Age",
    "type": "date",
    "jsonPath": ".metadata.creationTimestamp",
}


def exactly_one(obj: BaseModel, fields: tuple[str, ...]) -> list[str]:
    """The names (wire aliases) of the listed fields that are set."""
    info = type(obj).model_fields
    return [info[f].alias or f for f in fields if getattr(obj, f) is not None]


class ConditionStatus(StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Condition(Wire):
    """One observation of the object's state, in the shape of metav1.Condition."""

    type: str = Field(
        pattern=CONDITION_TYPE_RE,
        max_length=316,
        description="Type of condition in CamelCase, e.g. Ready, Reconciling or Stalled.",
    )
    status: ConditionStatus = Field(description="Status of the condition: True, False or Unknown.")
    observed_generation: int | None = Field(
        default=None,
        alias="observedGeneration",
        ge=0,
        description="The metadata.generation the condition was set from; if older than the "
        "object's generation, the condition is out of date.",
    )
    last_transition_time: AwareDatetime = Field(
        alias="lastTransitionTime",
        description="When the condition last changed from one status to another (RFC 3339).",
    )
    reason: str = Field(
        pattern=CONDITION_REASON_RE,
        min_length=1,
        max_length=1024,
        description="Programmatic identifier, in CamelCase, of the reason for the last "
        "transition.",
    )
    message: str = Field(
        default="",
        max_length=MAX_MESSAGE,
        description="Human-readable details about the transition; may be empty.",
    )


def now() -> datetime:
    # metav1.Time has whole seconds; dropping microseconds keeps round trips equal.
    return datetime.now(UTC).replace(microsecond=0)


def set_condition(
    conditions: list[Condition],
    type_: str,
    status: ConditionStatus | bool,
    reason: str,
    message: str = "",
    observed_generation: int | None = None,
    at: datetime | None = None,
) -> list[Condition]:
    """A new condition list with `type_` set; lastTransitionTime only moves when the
    status changes, as Kubernetes conventions require."""
    if isinstance(status, bool):
        status = ConditionStatus.TRUE if status else ConditionStatus.FALSE
    old = next((c for c in conditions if c.type == type_), None)
    when = old.last_transition_time if old is not None and old.status == status else None
    new = Condition(
        type=type_,
        status=status,
        reason=reason,
        message=message[:MAX_MESSAGE],
        observed_generation=observed_generation,
        last_transition_time=when or at or now(),
    )
    return [new if c.type == type_ else c for c in conditions] if old else [*conditions, new]


def get_condition(conditions: list[Condition], type_: str) -> Condition | None:
    return next((c for c in conditions if c.type == type_), None)


class SelectorOperator(StrEnum):
    IN = "In"
    NOT_IN = "NotIn"
    EXISTS = "Exists"
    DOES_NOT_EXIST = "DoesNotExist"


LabelValue = Annotated[str, Field(max_length=63, pattern=LABEL_VALUE_RE)]


class LabelSelectorRequirement(Wire):
    """A selector requirement: a label key, an operator and (for In and NotIn) values."""

    model_config = validations(
        cel(
            "self.operator in ['In', 'NotIn'] ? (has(self.values) && size(self.values) > 0)"
            " : (!has(self.values) || size(self.values) == 0)",
            "matchExpressions[].values: In and NotIn need at least one value; "
            "Exists and DoesNotExist take none (remove values)",
            ".values",
        )
    )

    key: str = Field(
        pattern=LABEL_KEY_RE,
        max_length=317,
        description="The label key the requirement applies to.",
    )
    operator: SelectorOperator = Field(
        description="How the key relates to the values: In, NotIn, Exists or DoesNotExist."
    )
    values: list[LabelValue] = Field(
        default_factory=list,
        max_length=64,
        description="Label values; non-empty for In and NotIn, empty for Exists and "
        "DoesNotExist.",
    )

    @model_validator(mode="after")
    def _values_match_operator(self) -> Self:
        needs = self.operator in (SelectorOperator.IN, SelectorOperator.NOT_IN)
        if needs != bool(self.values):
            raise ValueError(
                "matchExpressions[].values: In and NotIn need at least one value; "
                "Exists and DoesNotExist take none"
            )
        return self

    def matches(self, labels: dict[str, str]) -> bool:
        if self.operator is SelectorOperator.EXISTS:
            return self.key in labels
        if self.operator is SelectorOperator.DOES_NOT_EXIST:
            return self.key not in labels
        inside = self.key in labels and labels[self.key] in self.values
        return inside if self.operator is SelectorOperator.IN else not inside


class LabelSelector(Wire):
    """A label selector in the shape of metav1.LabelSelector; all terms are ANDed and an
    empty selector matches everything."""

    match_labels: dict[str, LabelValue] = Field(
        default_factory=dict,
        alias="matchLabels",
        max_length=64,
        description="Labels the object must carry with exactly these values.",
    )
    match_expressions: list[LabelSelectorRequirement] = Field(
        default_factory=list,
        alias="matchExpressions",
        max_length=32,
        description="Requirements on labels, all of which must hold.",
    )

    def matches(self, labels: dict[str, str]) -> bool:
        if any(labels.get(k) != v for k, v in self.match_labels.items()):
            return False
        return all(r.matches(labels) for r in self.match_expressions)


class ObjectMeta(BaseModel):
    """The metadata fields the operator reads; everything else is kept as-is."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    name: str = ""
    namespace: str | None = None
    uid: str | None = None
    generation: int | None = None
    resource_version: str | None = Field(default=None, alias="resourceVersion")
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class Resource(BaseModel):
    """A whole custom object as the apiserver returns it: `Kind.model_validate(body)`.

    Subclasses declare `spec` and `status` with their models and the CRD facts below.
    """

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    KIND: ClassVar[str]
    PLURAL: ClassVar[str]
    SHORT_NAMES: ClassVar[tuple[str, ...]]
    SCOPE: ClassVar[Literal["Namespaced", "Cluster"]] = "Namespaced"
    DESCRIPTION: ClassVar[str]
    PRINTER_COLUMNS: ClassVar[tuple[dict[str, Any], ...]] = ()
    # CEL rules on the whole object (they may read metadata.name).
    ROOT_RULES: ClassVar[tuple[dict[str, str], ...]] = ()
    # A stricter rule for metadata.name than Kubernetes' own (the only part of metadata a
    # CRD may restrict); the schema error names the field, a ROOT_RULE can explain why.
    NAME_PATTERN: ClassVar[str | None] = None

    api_version: str = Field(default=API_VERSION, alias="apiVersion")
    kind: str = ""
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)

    @model_validator(mode="after")
    def _default_kind(self) -> Self:
        if not self.kind:
            self.kind = self.KIND
        elif self.kind != self.KIND:
            raise ValueError(f"kind {self.kind!r} is not {self.KIND}")
        return self

    def to_wire(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


def observed_generation_field() -> Any:
    """`status.observedGeneration`, the same on every kind."""
    return Field(
        default=None,
        alias="observedGeneration",
        ge=0,
        description="The metadata.generation this status describes.",
    )


def conditions_field(description: str) -> Any:
    """`status.conditions`: a list keyed by type, as metav1 conventions want."""
    return Field(
        default_factory=list,
        max_length=MAX_CONDITIONS,
        description=description,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
