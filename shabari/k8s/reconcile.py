"""What the cluster should look like for one policy: pure functions, no I/O, `now` passed in.

The kopf handlers (`handlers.py`) read objects, call these functions and write back what
they return. Everything that decides something (validation, conditions, the registry
document, Knative variants, the in-place resize patch, derived policies, statistics) lives
here so it is tested without an API server.
"""

from __future__ import annotations

import copy
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import yaml

# Variant names are shared with the knative backend so both address the same objects.
from shabari.backends.knative import INITIAL_SCALE, configuration_name, variant_tag
from shabari.backends.knative import dns_name as dns_name
from shabari.backends.knative import route_name as route_name
from shabari.core.errors import SpecError
from shabari.core.spec import FunctionSpec, Size
from shabari.core.specdict import spec_from_mapping, spec_to_mapping
from shabari.core.units import format_cpu, format_memory
from shabari.k8s import sizing
from shabari.k8s.types import (
    API_VERSION,
    KIND,
    KNATIVE_API_VERSION,
    MODES,
    Allocation,
    Condition,
    ConditionStatus,
    Container,
    GatewayStats,
    Mode,
    OwnerReference,
    PolicyBody,
    PolicySpec,
    PolicyStatus,
    Recommendation,
    RouteBody,
    TargetRef,
    TrafficTarget,
    WorkloadBody,
)

#: label on every object the operator creates; value = the policy's name
POLICY_LABEL = "shabari.dev/policy"
#: label on derived policies; value = the annotated workload's name
DERIVED_LABEL = "shabari.dev/derived-from"
#: annotation on a derived policy: why the workload's annotations were rejected
ANNOTATION_ERROR = "shabari.dev/annotation-error"
#: annotation on a policy without sizes: the grid its target's container implies (written
#: when the container changes, so the change re-reconciles the policy). Not under
#: `shabari.dev/`: kopf keeps its own state there and ignores those annotations in diffs.
DERIVED_SIZES = "sizing.shabari.dev/derived-grid"
#: label naming a variant's size tag (as the knative backend labels its own variants)
VARIANT_LABEL = "shabari.dev/variant"
MANAGED_BY = {"app.kubernetes.io/managed-by": "shabari-operator"}

#: condition types written to `.status.conditions`
SPEC_VALID = "SpecValid"
PLATFORM_READY = "PlatformReady"
PUBLISHED = "Published"
GATEWAY_STATS = "GatewayStats"
READY = "Ready"

#: PlatformReady reason: InPlace asked of a Knative Service
INPLACE_ON_KNATIVE = "InPlaceUnsupportedOnKnative"
INPLACE_ON_KNATIVE_MESSAGE = (
    "Knative Serving cannot resize a revision's pods in place (its container field mask has "
    "no resizePolicy, knative/serving#15716, and the pods are Knative's, not the gateway's); "
    "use mode Variants for a Knative Service")
#: PlatformReady reasons that mean "the platform cannot do what this mode needs"
PLATFORM_LIMITS = frozenset({INPLACE_ON_KNATIVE, "VariantsNeedKnativeService"})


# --------------------------------------------------------------------------- validation


@dataclass(frozen=True, slots=True)
class PolicyPlan:
    """The validated reading of one FunctionSizingPolicy."""

    function: str
    mode: Mode
    spec: FunctionSpec | None
    #: why the spec (or the annotations it came from) is invalid; None when valid
    error: str | None = None
    error_reason: str = ""
    #: the grid is derived from the target, which could not be read yet (not an error)
    pending: str | None = None
    #: where the function lives: the policy's namespace and its target's name
    namespace: str = ""
    target: str = ""

    @property
    def registry_entry(self) -> dict[str, Any] | None:
        """The gateway registry entry: `spec_to_mapping` plus where the function lives
        (`namespace`, `target`: backend keys of the gateway config), or None (not served)."""
        if self.spec is None or self.mode == "Off":
            return None
        entry = spec_to_mapping(self.spec)
        if self.namespace:
            entry["namespace"] = self.namespace
        if self.target:
            entry["target"] = self.target
        return entry


def known_featurizers() -> Collection[str] | None:
    """Registered featurizer kinds plus `auto`; None (skip the check) if unavailable."""
    try:
        import featurizers

        kinds = featurizers.kinds()
    except Exception:  # the featurizer registry is optional for the control plane
        return None
    return {str(k) for k in kinds} | {"auto"}


def function_name(body: PolicyBody, home_namespace: str = "default") -> str:
    """The gateway function a policy sizes: its target's name (the policy's name if none),
    qualified by its namespace outside the home namespace (`sizing.function_name`)."""
    meta = body.get("metadata", {})
    target = body.get("spec", {}).get("targetRef", {})
    name = str(target.get("name") or meta.get("name", ""))
    return sizing.function_name(str(meta.get("namespace") or ""), name, home_namespace)


def plan_policy(body: PolicyBody, known_featurizers: Collection[str] | None,
                derived: Mapping[str, Any] | None = None,
                home_namespace: str = "default") -> PolicyPlan:
    """Validate a policy through the shared parser (core.specdict); never raises.

    A policy without `sizes` and `resourcePolicy` takes `derived` (`sizing.derived_sizes`
    of its target; an explicit `defaultSize` wins); without it the plan is `pending`.
    """
    spec_data: Mapping[str, Any] = body.get("spec") or {}
    name = function_name(body, home_namespace)
    raw_mode = spec_data.get("mode", "InPlace")
    mode: Mode = raw_mode if raw_mode in MODES else "Off"
    annotation_error = body.get("metadata", {}).get("annotations", {}).get(ANNOTATION_ERROR)
    if annotation_error:
        return PolicyPlan(name, "Off", None, annotation_error, "InvalidAnnotations")
    if raw_mode not in MODES:
        return PolicyPlan(name, "Off", None,
                          f"mode: must be one of {', '.join(MODES)}, got {raw_mode!r}",
                          "InvalidSpec")
    target = spec_data.get("targetRef")
    if not isinstance(target, Mapping) or not target.get("name") or not target.get("kind"):
        return PolicyPlan(name, mode, None, "targetRef: needs kind and name", "InvalidSpec")
    if sizing.needs_derived_sizes(spec_data):
        if mode == "Off":
            return PolicyPlan(name, mode, None)
        if derived is None:
            return PolicyPlan(name, mode, None, pending="the size grid is derived from the "
                              "target's container, which could not be read yet")
        spec_data = {**derived, **spec_data}
    try:
        spec = spec_from_mapping(name, spec_data)
        if known_featurizers is not None:
            spec.check_featurizer(known_featurizers)
    except SpecError as exc:
        return PolicyPlan(name, mode, None, str(exc), "InvalidSpec")
    return PolicyPlan(name, mode, spec, namespace=str(body.get("metadata", {}).get(
        "namespace") or ""), target=str(target.get("name")))


# --------------------------------------------------------------------------- status


def timestamp(now: datetime) -> str:
    return now.strftime("%Y-%m-%dT%H:%M:%SZ")


def condition(
    type_: str, status: ConditionStatus, reason: str, message: str = "",
    generation: int | None = None,
) -> Condition:
    out = Condition(type=type_, status=status, reason=reason, message=message)
    if generation is not None:
        out["observedGeneration"] = generation
    return out


def merge_conditions(
    old: Sequence[Condition], new: Sequence[Condition], now: datetime
) -> list[Condition]:
    """Replace conditions by type; keep lastTransitionTime where the status did not change."""
    previous = {c.get("type"): c for c in old}
    merged: dict[str, Condition] = {str(c.get("type")): dict(c) for c in old}  # type: ignore[misc]
    for cond in new:
        kind = str(cond["type"])
        before = previous.get(kind)
        fresh: Condition = dict(cond)  # type: ignore[assignment]
        if before is not None and before.get("status") == cond["status"] and before.get(
            "lastTransitionTime"
        ):
            fresh["lastTransitionTime"] = before["lastTransitionTime"]
        else:
            fresh["lastTransitionTime"] = timestamp(now)
        merged[kind] = fresh
    order = [SPEC_VALID, PLATFORM_READY, PUBLISHED, GATEWAY_STATS, READY]
    return sorted(merged.values(), key=lambda c: (
        order.index(c["type"]) if c.get("type") in order else len(order), c.get("type", "")))


def ready_condition(conditions: Sequence[Condition], generation: int | None) -> Condition:
    """Ready = the spec is valid, the platform is prepared and the function is published."""
    by_type = {c.get("type"): c for c in conditions}
    for kind in (SPEC_VALID, PLATFORM_READY, PUBLISHED):
        cond = by_type.get(kind)
        if cond is None or cond.get("status") != "True":
            reason = cond.get("reason", "Pending") if cond else "Pending"
            message = cond.get("message", "") if cond else f"{kind} not evaluated yet"
            return condition(READY, "False" if cond else "Unknown", reason, message, generation)
    return condition(READY, "True", "Reconciled", "", generation)


def slo_summary(spec: FunctionSpec | None) -> str:
    if spec is None:
        return ""
    if spec.slo.latency_ms is not None:
        return f"{spec.slo.latency_ms:g}ms"
    return f"{spec.slo.slowdown:g}x"


def allocation_summary(spec: FunctionSpec) -> Allocation:
    out = Allocation(
        gridSizes=len(spec.sizes),
        minCpu=format_cpu(spec.cpu_options[0]),
        maxCpu=format_cpu(spec.cpu_options[-1]),
        minMemory=format_memory(spec.memory_options[0]),
        maxMemory=format_memory(spec.memory_options[-1]),
    )
    out["defaultSize"] = str(spec.safe_default)
    return out


def base_status(plan: PolicyPlan, generation: int | None) -> PolicyStatus:
    status = PolicyStatus(function=plan.function, slo=slo_summary(plan.spec))
    if generation is not None:
        status["observedGeneration"] = generation
    if plan.spec is not None:
        status["allocation"] = allocation_summary(plan.spec)
    return status


def spec_condition(plan: PolicyPlan, generation: int | None) -> Condition:
    if plan.error is not None:
        return condition(SPEC_VALID, "False", plan.error_reason, plan.error, generation)
    if plan.pending is not None:
        return condition(SPEC_VALID, "Unknown", "SizesPending", plan.pending, generation)
    if plan.spec is None:
        return condition(SPEC_VALID, "True", "Off", "mode Off without a size grid", generation)
    return condition(SPEC_VALID, "True", "Valid",
                     f"{len(plan.spec.sizes)} sizes up to {plan.spec.largest}, "
                     f"SLO {slo_summary(plan.spec)}", generation)


# --------------------------------------------------------------------------- registry


def parse_registry(text: str | None) -> dict[str, Any]:
    """The `functions:` mapping of a registry document; empty for a missing or broken one."""
    if not text:
        return {}
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError:
        return {}
    functions = doc.get("functions") if isinstance(doc, Mapping) else None
    return dict(functions) if isinstance(functions, Mapping) else {}


def render_registry(functions: Mapping[str, Any]) -> str:
    return yaml.safe_dump({"functions": {k: functions[k] for k in sorted(functions)}},
                          sort_keys=False)


def update_registry(text: str | None, name: str, entry: Mapping[str, Any] | None) -> str | None:
    """The registry document with `name` set to `entry` (removed if None); None if unchanged."""
    functions = parse_registry(text)
    if entry is None:
        if name not in functions:
            return None if text else render_registry(functions)
        del functions[name]
    else:
        if functions.get(name) == dict(entry):
            return None
        functions[name] = dict(entry)
    new = render_registry(functions)
    return None if new == text else new


# --------------------------------------------------------------------------- platform


def owner_reference(body: Mapping[str, Any], controller: bool = True) -> OwnerReference:
    """An owner reference for garbage collection, without `blockOwnerDeletion`.

    `blockOwnerDeletion: true` only matters for foreground deletion, and setting it needs
    `update` on the owner's `finalizers` subresource wherever the
    OwnerReferencesPermissionEnforcement admission plugin runs (OpenShift, by default): there
    every create would be refused. Background deletion (kubectl's default) collects the
    owned objects all the same.
    """
    meta = body.get("metadata", {})
    ref = OwnerReference(apiVersion=str(body.get("apiVersion", "")), kind=str(body.get("kind", "")),
                         name=str(meta.get("name", "")), uid=str(meta.get("uid", "")))
    if controller:
        ref["controller"] = True
    return ref


#: the Route tag of a size (the knative backend's `variant_tag`)
size_tag = variant_tag


def _resources(size: Size) -> dict[str, dict[str, str]]:
    amounts = {"cpu": format_cpu(size.cpu_millicores), "memory": format_memory(size.memory_mib)}
    limits = dict(amounts)
    if size.gpu:
        limits["nvidia.com/gpu"] = str(size.gpu)
    return {"requests": amounts, "limits": limits}


def variant_resources(
    policy: PolicyBody, service: WorkloadBody, spec: FunctionSpec,
    zero_initial_scale: bool = False,
) -> tuple[list[WorkloadBody], RouteBody]:
    """Variants mode: one Knative Configuration per size and one Route tagging each of them.

    Each Configuration is the Service's own template with the size's requests and limits
    (and `initial-scale: "0"` when the cluster's config-autoscaler allows it, so a size that
    cannot be scheduled does not keep the Route from becoming Ready);
    the Route sends all untagged traffic to the safe default and exposes every size at its
    tag URL (`<tag>-<route>.<namespace>...`) so the gateway can pick one per invocation.
    """
    svc_name = service.get("metadata", {}).get("name", "")
    namespace = policy.get("metadata", {}).get("namespace", "")
    policy_name = policy.get("metadata", {}).get("name", "")
    labels = {POLICY_LABEL: policy_name, **MANAGED_BY}
    owner = owner_reference(policy)
    default = spec.safe_default
    configs: list[WorkloadBody] = []
    traffic: list[TrafficTarget] = []
    for size in spec.sizes:
        tag = variant_tag(size)
        template = copy.deepcopy(service.get("spec", {}).get("template", {}))
        tmeta = template.setdefault("metadata", {})
        tmeta.pop("name", None)  # Knative revision names must be unique per Configuration
        tmeta.setdefault("labels", {})[VARIANT_LABEL] = tag
        if zero_initial_scale:  # no pod per size at creation (Knative allows it: checked)
            tmeta.setdefault("annotations", {})[INITIAL_SCALE] = "0"
        containers = template.setdefault("spec", {}).setdefault("containers", [])
        if not containers:
            containers.append(Container(name="user-container"))
        containers[0]["resources"] = _resources(size)
        name = configuration_name(svc_name, size)
        configs.append(WorkloadBody(
            apiVersion=KNATIVE_API_VERSION, kind="Configuration",
            metadata={"name": name, "namespace": namespace,
                      "labels": {**labels, VARIANT_LABEL: tag}, "ownerReferences": [owner]},
            spec={"template": template},
        ))
        traffic.append(TrafficTarget(configurationName=name, tag=tag, latestRevision=True,
                                     percent=100 if size == default else 0))
    route = RouteBody(
        apiVersion=KNATIVE_API_VERSION, kind="Route",
        metadata={"name": route_name(svc_name), "namespace": namespace, "labels": labels,
                  "ownerReferences": [owner]},
        spec={"traffic": traffic},
    )
    return configs, route


# --------------------------------------------------------------------------- derived policies


def derived_summary(derived: Mapping[str, Any]) -> str:
    """`cpu=250m,500m,1,2;memory=128Mi,...;default=2/1Gi`: a derived grid in one line."""
    sizes = derived.get("sizes", {})
    default = derived.get("defaultSize", {})
    return (f"cpu={','.join(map(str, sizes.get('cpu', [])))};"
            f"memory={','.join(map(str, sizes.get('memory', [])))};"
            f"default={default.get('cpu', '')}/{default.get('memory', '')}")


def derived_policy(
    target: WorkloadBody, spec_data: Mapping[str, Any] | None, error: str | None
) -> PolicyBody:
    """The FunctionSizingPolicy an annotated workload stands for (owned by the workload).

    With invalid annotations the policy is still written, with `mode: Off`, no grid and the
    error in an annotation, so `kubectl get fsp` shows the problem in its status.
    """
    meta = target.get("metadata", {})
    name = meta.get("name", "")
    target_ref = TargetRef(apiVersion=str(target.get("apiVersion", "")),
                           kind=str(target.get("kind", "")), name=name)
    spec = cast(PolicySpec, dict(spec_data) if spec_data is not None and error is None
                else {"mode": "Off"})
    spec["targetRef"] = target_ref
    annotations = {ANNOTATION_ERROR: error} if error else {}
    return PolicyBody(
        apiVersion=API_VERSION, kind=KIND,
        metadata={"name": name, "namespace": meta.get("namespace", ""),
                  "labels": {DERIVED_LABEL: name, **MANAGED_BY},
                  "annotations": annotations,
                  "ownerReferences": [owner_reference(target)]},
        spec=spec,
    )


def derived_patch(existing: PolicyBody, desired: PolicyBody) -> dict[str, Any] | None:
    """Merge patch turning an existing derived policy into the desired one; None if equal."""
    patch: dict[str, Any] = {}
    old_spec: Mapping[str, Any] = existing.get("spec", {})
    new_spec: Mapping[str, Any] = desired.get("spec", {})
    if dict(old_spec) != dict(new_spec):
        # merge-patch semantics: keys that disappeared must be nulled explicitly
        spec_patch: dict[str, Any] = {k: None for k in old_spec if k not in new_spec}
        spec_patch.update(new_spec)
        patch["spec"] = spec_patch
    old_error = existing.get("metadata", {}).get("annotations", {}).get(ANNOTATION_ERROR)
    new_error = desired.get("metadata", {}).get("annotations", {}).get(ANNOTATION_ERROR)
    if old_error != new_error:
        patch["metadata"] = {"annotations": {ANNOTATION_ERROR: new_error}}
    return patch or None


# --------------------------------------------------------------------------- statistics

#: the gateway's `recommendation` keys the CRD status schema holds (others would be pruned)
RECOMMENDATION_KEYS = frozenset(Recommendation.__annotations__)


def stats_from_gateway(
    functions: object, name: str, generation: int | None
) -> tuple[PolicyStatus, Condition]:
    """Status fields and the GatewayStats condition from the gateway's `GET /functions`."""
    entries: list[Any] = []
    if isinstance(functions, Mapping):
        raw = functions.get("functions", [])
        entries = list(raw) if isinstance(raw, list) else []
    elif isinstance(functions, list):
        entries = functions
    for entry in entries:
        if isinstance(entry, Mapping) and entry.get("name") == name:
            stats = cast(GatewayStats, entry.get("stats") or {})
            status = PolicyStatus()
            invocations = stats.get("invocations")
            if isinstance(invocations, int):
                status["invocations"] = invocations
            violations = stats.get("slo_violations")
            if isinstance(violations, int):
                status["sloViolations"] = violations
            attainment = stats.get("slo_attainment")
            if isinstance(attainment, int | float) and not isinstance(attainment, bool):
                status["sloAttainment"] = round(float(attainment), 4)
            learning = entry.get("learning")
            version = stats.get("model_version")
            if version is None and isinstance(learning, Mapping):
                version = learning.get("model_version")
            if isinstance(version, str | int) and not isinstance(version, bool):
                status["modelVersion"] = str(version)
            recommendation = entry.get("recommendation")
            if isinstance(recommendation, Mapping):
                status["recommendation"] = cast(Recommendation, {
                    k: v for k, v in recommendation.items() if k in RECOMMENDATION_KEYS})
            return status, condition(GATEWAY_STATS, "True", "Reporting",
                                     f"{status.get('invocations', 0)} invocations", generation)
    return PolicyStatus(), condition(GATEWAY_STATS, "False", "FunctionNotServed",
                                     f"the gateway does not list function {name!r} yet",
                                     generation)
