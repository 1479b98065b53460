"""Typed shapes of the raw Kubernetes bodies the operator reads and writes.

kopf hands handlers plain dicts; these TypedDicts document (and let mypy check) the fields
we rely on. They are `total=False` because the API server omits empty fields.
"""

from __future__ import annotations

from typing import Any, Literal, TypedDict

GROUP = "shabari.dev"
VERSION = "v1alpha1"
PLURAL = "functionsizingpolicies"
KIND = "FunctionSizingPolicy"
API_VERSION = f"{GROUP}/{VERSION}"

KNATIVE_API_VERSION = "serving.knative.dev/v1"

Mode = Literal["InPlace", "Variants", "Recommend", "Off"]
#: the same names as `shabari.core.spec.MODES` (a test keeps the two equal)
MODES: tuple[Mode, ...] = ("InPlace", "Variants", "Recommend", "Off")
ConditionStatus = Literal["True", "False", "Unknown"]


class OwnerReference(TypedDict, total=False):
    apiVersion: str
    kind: str
    name: str
    uid: str
    controller: bool
    blockOwnerDeletion: bool


class ObjectMeta(TypedDict, total=False):
    name: str
    namespace: str
    uid: str
    generation: int
    resourceVersion: str
    labels: dict[str, str]
    annotations: dict[str, str]
    ownerReferences: list[OwnerReference]
    deletionTimestamp: str


class TargetRef(TypedDict, total=False):
    apiVersion: str
    kind: str
    name: str


class Condition(TypedDict, total=False):
    type: str
    status: ConditionStatus
    reason: str
    message: str
    lastTransitionTime: str
    observedGeneration: int


class Allocation(TypedDict, total=False):
    gridSizes: int
    minCpu: str
    maxCpu: str
    minMemory: str
    maxMemory: str
    defaultSize: str


class Recommendation(TypedDict, total=False):
    """Recommend mode (and every learning mode): what the gateway would choose.

    `size` is the most frequent recommended size over the invocations so far ("" before any),
    `sizes` the recommended sizes by share, and the savings compare the allocation of the
    recommendations with the target's own size on the same invocations.
    """

    size: str
    sizes: list[dict[str, Any]]
    runSize: str
    estimatedSavings: str
    estimatedSavingsFraction: float
    estimatedSloAttainment: float
    observedSloAttainment: float
    invocations: int


class PolicyStatus(TypedDict, total=False):
    conditions: list[Condition]
    observedGeneration: int
    function: str
    slo: str
    invocations: int
    sloViolations: int
    sloAttainment: float
    allocation: Allocation
    modelVersion: str
    recommendation: Recommendation


class PolicySpec(TypedDict, total=False):
    """`.spec` of a FunctionSizingPolicy: the shared spec mapping (core.specdict) plus these."""

    targetRef: TargetRef
    mode: Mode
    slo: dict[str, float]
    featurizer: dict[str, Any]
    sizes: dict[str, list[Any]]
    resourcePolicy: dict[str, dict[str, Any]]
    defaultSize: dict[str, Any]
    gpuCapable: bool
    exploration: dict[str, Any]


class PolicyBody(TypedDict, total=False):
    apiVersion: str
    kind: str
    metadata: ObjectMeta
    spec: PolicySpec
    status: PolicyStatus


class Container(TypedDict, total=False):
    name: str
    image: str
    resources: dict[str, dict[str, str]]
    resizePolicy: list[dict[str, str]]


class PodSpec(TypedDict, total=False):
    containers: list[Container]


class PodTemplate(TypedDict, total=False):
    metadata: ObjectMeta
    spec: PodSpec


class WorkloadSpec(TypedDict, total=False):
    template: PodTemplate


class WorkloadBody(TypedDict, total=False):
    """A Knative Service, a Knative Configuration or an apps/v1 Deployment."""

    apiVersion: str
    kind: str
    metadata: ObjectMeta
    spec: WorkloadSpec


class TrafficTarget(TypedDict, total=False):
    configurationName: str
    tag: str
    percent: int
    latestRevision: bool


class RouteBody(TypedDict, total=False):
    apiVersion: str
    kind: str
    metadata: ObjectMeta
    spec: dict[str, list[TrafficTarget]]


class ConfigMapBody(TypedDict, total=False):
    apiVersion: str
    kind: str
    metadata: ObjectMeta
    data: dict[str, str]


class GatewayStats(TypedDict, total=False):
    """`stats` of one entry of the gateway's `GET /functions` (DESIGN 4.3)."""

    invocations: int
    slo_violations: int
    slo_attainment: float
    model_version: str
    recommendation: dict[str, Any]
