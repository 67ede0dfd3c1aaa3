"""The edgeplane API (group edgeplane.io, version v1alpha1): pydantic models of every
resource's spec and status, from which `edgeplane crds` generates the CRDs.

Parse an object from the apiserver with `Worker.model_validate(body)`; write status with
`WorkerStatus(...).to_wire()` as the body of a status patch.
"""

from edgeplane.api.claim import HostClaim, HostClaimSpec, HostClaimStatus
from edgeplane.api.common import (
    API_VERSION,
    GROUP,
    VERSION,
    Condition,
    ConditionStatus,
    LabelSelector,
    LabelSelectorRequirement,
    ObjectMeta,
    Resource,
    SelectorOperator,
    get_condition,
    set_condition,
)
from edgeplane.api.route import TrafficTarget, WorkerRoute, WorkerRouteSpec, WorkerRouteStatus
from edgeplane.api.target import EdgeTarget, EdgeTargetSpec, EdgeTargetStatus, SecretKeySelector
from edgeplane.api.version import (
    BindingKind,
    BindingSummary,
    ModuleSummary,
    WorkerVersion,
    WorkerVersionSpec,
    WorkerVersionStatus,
)
from edgeplane.api.worker import (
    ConfigMapKeyRef,
    DurableObjectNamespaceBinding,
    Gate,
    GateResult,
    KvNamespaceBinding,
    Probe,
    RequestCount,
    Rollout,
    RolloutAction,
    RolloutActionKind,
    RolloutPause,
    RolloutPhase,
    RolloutStatus,
    RolloutStep,
    RolloutStrategy,
    SecretKeyRef,
    ServiceBinding,
    TargetStatus,
    Worker,
    WorkerBinding,
    WorkerModule,
    WorkerSpec,
    WorkerStatus,
)
from edgeplane.wire import ModuleType

# Every kind, in the order the CRDs are written.
RESOURCES: tuple[type[Resource], ...] = (
    Worker,
    WorkerVersion,
    WorkerRoute,
    EdgeTarget,
    HostClaim,
)

__all__ = [
    "API_VERSION",
    "GROUP",
    "RESOURCES",
    "VERSION",
    "BindingKind",
    "BindingSummary",
    "Condition",
    "ConditionStatus",
    "ConfigMapKeyRef",
    "DurableObjectNamespaceBinding",
    "EdgeTarget",
    "EdgeTargetSpec",
    "EdgeTargetStatus",
    "Gate",
    "GateResult",
    "HostClaim",
    "HostClaimSpec",
    "HostClaimStatus",
    "KvNamespaceBinding",
    "LabelSelector",
    "LabelSelectorRequirement",
    "ModuleSummary",
    "ModuleType",
    "ObjectMeta",
    "Probe",
    "RequestCount",
    "Resource",
    "Rollout",
    "RolloutAction",
    "RolloutActionKind",
    "RolloutPause",
    "RolloutPhase",
    "RolloutStatus",
    "RolloutStep",
    "RolloutStrategy",
    "SecretKeyRef",
    "SecretKeySelector",
    "SelectorOperator",
    "ServiceBinding",
    "TargetStatus",
    "TrafficTarget",
    "Worker",
    "WorkerBinding",
    "WorkerModule",
    "WorkerRoute",
    "WorkerRouteSpec",
    "WorkerRouteStatus",
    "WorkerSpec",
    "WorkerStatus",
    "WorkerVersion",
    "WorkerVersionSpec",
    "WorkerVersionStatus",
    "get_condition",
    "set_condition",
]
