"""kopf handlers: the plumbing between the API server and `reconcile`.

Start with `kopf run -m shabari.k8s.handlers` (or `shabari operator`). Handlers:

- FunctionSizingPolicy create/update/resume: validate, prepare the platform per mode,
  publish the function to the gateway registry ConfigMap, write status conditions;
  delete: unpublish and remove the Knative variants; a timer copies the gateway's
  statistics into the status.
- Knative Service / Deployment events: annotated workloads become derived
  FunctionSizingPolicies (owned by the workload). These are `on.event` handlers: they keep
  no state on the workload and never write its status (Knative owns it).

Invalid specs and annotations produce a Warning Event and a `SpecValid=False` condition;
nothing here raises on user input.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Collection, Mapping
from datetime import UTC, datetime
from typing import Any, cast

import kopf

from shabari.core.errors import BackendUnavailableError, SpecError
from shabari.k8s import reconcile as rc
from shabari.k8s.annotations import MODE as MODE_ANNOTATION
from shabari.k8s.annotations import has_shabari_annotations, policy_spec_from_annotations
from shabari.k8s.gateway import fetch_functions
from shabari.k8s.kube import APIForbiddenError, Kube
from shabari.k8s.settings import REGISTRY_KEY, OperatorSettings
from shabari.k8s.sizing import derived_sizes, needs_derived_sizes, target_container
from shabari.k8s.types import (
    API_VERSION,
    GROUP,
    KIND,
    KNATIVE_API_VERSION,
    PLURAL,
    VERSION,
    Condition,
    PolicyBody,
    PolicyStatus,
    WorkloadBody,
)

Log = logging.Logger | logging.LoggerAdapter[Any]

#: read at import: kopf needs the timer interval when the handler is registered
SETTINGS = OperatorSettings.from_env()


def _cfg(memo: Any) -> OperatorSettings:
    cfg = getattr(memo, "shabari_settings", None)
    return cfg if isinstance(cfg, OperatorSettings) else SETTINGS


def _lock(memo: Any) -> asyncio.Lock:
    lock = getattr(memo, "registry_lock", None)
    if not isinstance(lock, asyncio.Lock):
        lock = asyncio.Lock()
        memo.registry_lock = lock
    return lock


def _kube(memo: Any) -> Kube:
    kube = getattr(memo, "kube", None)
    if not isinstance(kube, Kube):
        raise kopf.TemporaryError("the operator's API client is not connected yet", delay=1)
    return kube


def _now() -> datetime:
    return datetime.now(UTC)


# --------------------------------------------------------------------------- operator set-up


@kopf.on.startup()
async def configure(*, settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    # Progress and diff-base go to annotations so `.status` holds only our schema's fields.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=GROUP)
    settings.persistence.finalizer = f"{GROUP}/operator"
    settings.posting.level = logging.WARNING
    memo.kopf_settings = settings
    memo.shabari_settings = OperatorSettings.from_env()
    memo.registry_lock = asyncio.Lock()
    memo.warned = set()
    memo.kube = await Kube.connect({"kubeconfig": os.environ.get("KUBECONFIG") or None})


@kopf.on.cleanup()
async def disconnect(*, memo: kopf.Memo, **_: Any) -> None:
    kube = getattr(memo, "kube", None)
    if isinstance(kube, Kube):
        await kube.close()


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """In-cluster service account first, then $KUBECONFIG / ~/.kube/config."""
    info: kopf.ConnectionInfo | None = kopf.login_with_service_account(**kwargs)
    return info or kopf.login_with_kubeconfig(**kwargs)


@kopf.index(GROUP, VERSION, PLURAL, labels={rc.DERIVED_LABEL: kopf.PRESENT})
def derived_policies(*, namespace: str | None, name: str, **_: Any) -> dict[tuple[str, str], bool]:
    """Which workloads currently have a derived policy (saves an API call per event)."""
    return {(namespace or "", name): True}


@kopf.index(GROUP, VERSION, PLURAL)
def sizeless_policies(*, namespace: str | None, name: str, spec: kopf.Spec, **_: Any
                      ) -> dict[tuple[str, str, str], str] | None:
    """Policies whose grid is derived from their target: (namespace, kind, target) -> name."""
    if not needs_derived_sizes(spec):
        return None
    ref = spec.get("targetRef") or {}
    return {(namespace or "", str(ref.get("kind", "")), str(ref.get("name", ""))): name}


# --------------------------------------------------------------------------- registry


async def publish(kube: Kube, cfg: OperatorSettings, memo: Any, function: str,
                  entry: Mapping[str, Any] | None, generation: int | None) -> Condition:
    """Set (or remove) one function in the registry ConfigMap the gateway reads."""
    async with _lock(memo):
        cm = await kube.get("v1", "ConfigMap", cfg.namespace, cfg.registry_configmap)
        text = (cm or {}).get("data", {}).get(REGISTRY_KEY) if cm else None
        new = rc.update_registry(text, function, entry)
        if new is not None:
            if cm is None:
                await kube.create({
                    "apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": cfg.registry_configmap, "namespace": cfg.namespace,
                                 "labels": dict(rc.MANAGED_BY)},
                    "data": {REGISTRY_KEY: new},
                })
            else:
                await kube.patch("v1", "ConfigMap", cfg.namespace, cfg.registry_configmap,
                                 {"data": {REGISTRY_KEY: new}})
    where = f"{cfg.namespace}/{cfg.registry_configmap}"
    if entry is None:
        return rc.condition(rc.PUBLISHED, "False", "NotServed",
                            f"not in the gateway registry {where}", generation)
    return rc.condition(rc.PUBLISHED, "True", "Published",
                        f"function {function!r} in {where}", generation)


# --------------------------------------------------------------------------- platform


async def prepare_platform(kube: Kube, cfg: OperatorSettings, body: PolicyBody,
                           plan: rc.PolicyPlan, generation: int | None,
                           target: Mapping[str, Any] | None = None) -> Condition:
    """`target`: the workload already read in this reconcile (None: read it here)."""
    def cond(status: Any, reason: str, message: str = "") -> Condition:
        return rc.condition(rc.PLATFORM_READY, status, reason, message, generation)

    if plan.error is not None:
        return cond("False", plan.error_reason, "fix the spec first")
    if plan.pending is not None:
        return cond("False", "TargetNotFound", plan.pending)
    if plan.mode == "Off" or plan.spec is None:
        return cond("True", "ModeOff", "Shabari does not size this function")
    if plan.mode == "Recommend":
        return cond("True", "RecommendOnly",
                    f"nothing is applied: every invocation runs at {plan.spec.safe_default}; "
                    "the status shows what Shabari would choose")
    namespace = body.get("metadata", {}).get("namespace", "")
    ref = body.get("spec", {}).get("targetRef", {})
    api_version, kind, name = ref.get("apiVersion", ""), ref.get("kind", ""), ref.get("name", "")
    if (api_version, kind) not in {(KNATIVE_API_VERSION, "Service"), ("apps/v1", "Deployment")}:
        return cond("False", "UnsupportedTarget",
                    f"{api_version} {kind}: the operator prepares Knative Services and "
                    "Deployments only; other targets are sized by the gateway alone")
    if target is None:
        target = await kube.get(api_version, kind, namespace, name)
    if target is None:
        return cond("False", "TargetNotFound", f"{kind} {namespace}/{name} does not exist")
    workload = cast(WorkloadBody, target)
    if plan.mode == "InPlace":
        # The target itself is never patched (docs/platforms.md, "What InPlace means"): the
        # gateway's kubernetes backend starts and resizes pods of its own, and a patched
        # template would only restart every pod of the target.
        if not cfg.inplace_enabled:
            return cond("False", "InPlaceDisabled",
                        "the chart was installed with inPlace.enabled=false")
        if kind == "Service":
            return cond("False", rc.INPLACE_ON_KNATIVE, rc.INPLACE_ON_KNATIVE_MESSAGE)
        return cond("True", "InPlaceByGateway",
                    "the gateway's kubernetes backend runs this function in pods it resizes "
                    "in place; the Deployment is left unchanged")
    # Variants
    if kind != "Service":
        return cond("False", "VariantsNeedKnativeService",
                    "the Variants mode creates Knative Configurations; use InPlace for a "
                    "Deployment")
    if not cfg.variants_enabled:
        return cond("False", "VariantsDisabled",
                    "the chart was installed with variants.enabled=false")
    zero = await _zero_initial_scale_allowed(kube)
    configs, route = rc.variant_resources(body, workload, plan.spec, zero_initial_scale=zero)
    for config in configs:
        await kube.apply(config)
    await kube.apply(route)
    await remove_variants(kube, body, keep={c["metadata"]["name"] for c in configs},
                          keep_route=route["metadata"]["name"])
    scale = ("sizes start at zero pods" if zero else
             "each size starts one pod when created (knative-serving/config-autoscaler "
             "allow-zero-initial-scale is off): a size that cannot be scheduled keeps the "
             "Route from Ready")
    return cond("True", "VariantsReady",
                f"{len(configs)} Configurations, Route {route['metadata']['name']}; {scale}")


async def _zero_initial_scale_allowed(kube: Kube) -> bool:
    """Does Knative accept `initial-scale: "0"` (config-autoscaler; unreadable: no)?"""
    try:
        cm = await kube.get("v1", "ConfigMap", "knative-serving", "config-autoscaler")
    except APIForbiddenError:
        return False
    data = (cm or {}).get("data") or {}
    return str(data.get("allow-zero-initial-scale", "")).lower() == "true"


async def remove_variants(kube: Kube, body: PolicyBody, keep: Collection[str] = (),
                          keep_route: str | None = None) -> None:
    """Delete the Configurations (and Route) this policy created that are no longer wanted."""
    meta = body.get("metadata", {})
    namespace, name = meta.get("namespace", ""), meta.get("name", "")
    selector = {rc.POLICY_LABEL: name}
    try:
        configs = await kube.list(KNATIVE_API_VERSION, "Configuration", namespace, selector)
    except APIForbiddenError:
        # RBAC without Knative rights (variants.enabled=false after an upgrade): the owner
        # references let the garbage collector remove them with the policy; never retry
        # forever, or a deleted policy stays Terminating
        return
    for config in configs:
        cname = config.get("metadata", {}).get("name", "")
        if cname not in keep:
            await kube.delete(KNATIVE_API_VERSION, "Configuration", namespace, cname)
    for route in await kube.list(KNATIVE_API_VERSION, "Route", namespace, selector):
        rname = route.get("metadata", {}).get("name", "")
        if rname != keep_route:
            await kube.delete(KNATIVE_API_VERSION, "Route", namespace, rname)


# --------------------------------------------------------------------------- policies


def _gateway_condition(cfg: OperatorSettings, old: list[Condition],
                       generation: int | None) -> Condition:
    if not cfg.gateway_url:
        return rc.condition(rc.GATEWAY_STATS, "Unknown", "GatewayNotConfigured",
                            "SHABARI_GATEWAY_URL is not set; no statistics", generation)
    for c in old:
        if c.get("type") == rc.GATEWAY_STATS:
            return c
    return rc.condition(rc.GATEWAY_STATS, "Unknown", "Pending",
                        "statistics are read every "
                        f"{cfg.stats_interval_s:g}s", generation)


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL)
async def reconcile_policy(*, body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo,
                           logger: Log, **kwargs: Any) -> None:
    policy = cast(PolicyBody, dict(body))
    cfg = _cfg(memo)
    kube = _kube(memo)
    generation = policy.get("metadata", {}).get("generation")
    derived, derive_error, target = await _derive(kube, cfg, policy)
    plan = rc.plan_policy(policy, rc.known_featurizers(), derived, cfg.home_namespace)
    if derive_error is not None and plan.error is None:
        plan = rc.PolicyPlan(plan.function, plan.mode, None, derive_error, "InvalidTarget")
    old_body = cast(PolicyBody, kwargs.get("old") or {})
    if old_body and not old_body.get("metadata", {}).get("namespace"):
        old_body["metadata"] = {**old_body.get("metadata", {}),
                                "namespace": policy.get("metadata", {}).get("namespace", "")}
    previous = rc.function_name(old_body, cfg.home_namespace) if old_body else ""
    if previous and previous != plan.function:  # retargeted: the old name is no longer ours
        await publish(kube, cfg, memo, previous, None, generation)
    if plan.error is not None:
        kopf.warn(body, reason=plan.error_reason, message=plan.error)
        logger.warning(f"invalid policy: {plan.error}")
    old: list[Condition] = list(policy.get("status", {}).get("conditions") or [])
    platform = await prepare_platform(kube, cfg, policy, plan, generation, target)
    if platform.get("reason") in rc.PLATFORM_LIMITS and not _same_condition(policy, platform):
        # a mode the platform cannot serve: an Event and one log line per change, and the
        # PlatformReady=False condition below (never a silent fallback)
        kopf.warn(body, reason=platform["reason"], message=platform.get("message", ""))
        logger.warning(f"{platform['reason']}: {platform.get('message', '')}")
    conditions = [
        rc.spec_condition(plan, generation),
        platform,
        await publish(kube, cfg, memo, plan.function, plan.registry_entry, generation),
        _gateway_condition(cfg, old, generation),
    ]
    if plan.mode != "Variants" and cfg.variants_enabled:
        # with variants disabled the operator never created any (and has no RBAC to look)
        await remove_variants(kube, policy)
    conditions.append(rc.ready_condition(conditions, generation))
    status = rc.base_status(plan, generation)
    status["conditions"] = rc.merge_conditions(old, conditions, _now())
    _write_status(patch, status)
    if conditions[1].get("reason") == "TargetNotFound" or plan.pending is not None:
        # kopf still applies the status patch; the handler runs again after the delay.
        raise kopf.TemporaryError(conditions[1].get("message", ""), delay=cfg.retry_s)


async def _derive(kube: Kube, cfg: OperatorSettings, policy: PolicyBody
                  ) -> tuple[dict[str, Any] | None, str | None, Mapping[str, Any] | None]:
    """The derived grid of a policy without sizes (None when it has sizes or no target yet),
    or why the target's resources cannot be read, and the target when it was read."""
    spec = policy.get("spec") or {}
    if not needs_derived_sizes(spec) or spec.get("mode") == "Off":
        return None, None, None
    ref = spec.get("targetRef") or {}
    api_version, kind, name = ref.get("apiVersion", ""), ref.get("kind", ""), ref.get("name")
    if (api_version, kind) not in {(KNATIVE_API_VERSION, "Service"), ("apps/v1", "Deployment")}:
        return None, (f"sizes: {api_version} {kind} targets need sizes or resourcePolicy "
                      "(the grid is derived only from Knative Services and Deployments)"), None
    if not name:
        return None, None, None
    target = await kube.get(api_version, kind, policy.get("metadata", {}).get("namespace", ""),
                            name)
    if target is None:
        return None, None, None
    try:
        return derived_sizes(target_container(cast(WorkloadBody, target)),
                             cfg.default_sizes), None, target
    except SpecError as exc:
        return None, f"target {kind} {name}: {exc}", target


def _same_condition(policy: PolicyBody, cond: Condition) -> bool:
    """Was this condition (type, status, reason) already reported on the policy?"""
    for old in policy.get("status", {}).get("conditions") or []:
        if old.get("type") == cond.get("type"):
            return bool(old.get("status") == cond.get("status")
                        and old.get("reason") == cond.get("reason"))
    return False


def _write_status(patch: kopf.Patch, status: Mapping[str, Any]) -> None:
    for key, value in status.items():
        patch.status[key] = value


@kopf.on.delete(GROUP, VERSION, PLURAL)
async def delete_policy(*, body: kopf.Body, memo: kopf.Memo, logger: Log,
                        **_: Any) -> None:
    policy = cast(PolicyBody, dict(body))
    cfg = _cfg(memo)
    kube = _kube(memo)
    await publish(kube, cfg, memo, rc.function_name(policy, cfg.home_namespace), None, None)
    if cfg.variants_enabled:  # else there are none, and no RBAC to list them: never block
        await remove_variants(kube, policy)


@kopf.timer(GROUP, VERSION, PLURAL, interval=SETTINGS.stats_interval_s,
            initial_delay=min(5.0, SETTINGS.stats_interval_s))
async def refresh_stats(*, body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo,
                        logger: Log, **_: Any) -> None:
    """Copy the gateway's invocations and SLO attainment into the status."""
    policy = cast(PolicyBody, dict(body))
    if policy.get("metadata", {}).get("deletionTimestamp"):
        return
    cfg = _cfg(memo)
    generation = policy.get("metadata", {}).get("generation")
    old_status = policy.get("status", {})
    if old_status.get("observedGeneration") != generation:
        return  # a reconciliation is pending; it writes the conditions list first
    old: list[Condition] = list(old_status.get("conditions") or [])
    fields = PolicyStatus()
    if not cfg.gateway_url:
        cond = _gateway_condition(cfg, [], generation)
    else:
        try:
            functions = await fetch_functions(cfg.gateway_url)
        except BackendUnavailableError as exc:
            cond = rc.condition(rc.GATEWAY_STATS, "Unknown", "GatewayUnreachable", str(exc),
                                generation)
        else:
            fields, cond = rc.stats_from_gateway(
                functions, rc.function_name(policy, cfg.home_namespace), generation)
    merged = rc.merge_conditions(old, [cond], _now())
    if any(old_status.get(k) != v for k, v in fields.items()) or merged != old:
        fields["conditions"] = merged
        _write_status(patch, fields)


# --------------------------------------------------------------------------- annotated workloads


@kopf.on.event("serving.knative.dev", "v1", "services")
@kopf.on.event("apps", "v1", "deployments")
async def on_workload(*, event: kopf.RawEvent, body: kopf.Body, memo: kopf.Memo,
                      logger: Log, **kwargs: Any) -> None:
    """Keep the derived FunctionSizingPolicy of an annotated workload in line with it."""
    workload = cast(WorkloadBody, dict(body))
    meta = workload.get("metadata", {})
    namespace, name = meta.get("namespace", ""), meta.get("name", "")
    annotations = meta.get("annotations") or {}
    wanted = event.get("type") != "DELETED" and has_shabari_annotations(annotations)
    derived: kopf.Index[tuple[str, str], bool] = kwargs["derived_policies"]
    sizeless: kopf.Index[tuple[str, str, str], str] = kwargs["sizeless_policies"]
    followers = list(sizeless.get((namespace, str(workload.get("kind", "")), name), []))
    if not wanted and (namespace, name) not in derived and not followers:
        return  # the common case: an unrelated workload, no API call
    kube = _kube(memo)
    if followers and event.get("type") != "DELETED":
        await _touch_followers(kube, memo, namespace, followers, workload)
    existing = await kube.get(API_VERSION, KIND, namespace, name)
    ours = existing is not None and _derived_from(existing, workload)
    if not wanted:
        if ours:
            await kube.delete(API_VERSION, KIND, namespace, name)
        return
    error: str | None = None
    spec_data: dict[str, Any] | None = None
    try:
        grid = derived_sizes(target_container(workload), _cfg(memo).default_sizes)
        spec_data = policy_spec_from_annotations(name, annotations, rc.known_featurizers(),
                                                 grid)
        if MODE_ANNOTATION not in annotations and workload.get("kind") == "Service":
            spec_data["mode"] = "Variants"  # what a Knative Service can do (no InPlace)
    except SpecError as exc:
        error = str(exc)
    desired = rc.derived_policy(workload, spec_data, error)
    old_error = (existing or {}).get("metadata", {}).get("annotations", {}).get(
        rc.ANNOTATION_ERROR)
    if error is not None and (not ours or old_error != error):
        kopf.warn(body, reason="InvalidAnnotations", message=error)
    if existing is None:
        await kube.create(desired)
    elif not ours:
        key = (namespace, name, "conflict")
        if key not in memo.setdefault("warned", set()):
            memo["warned"].add(key)
            kopf.warn(body, reason="PolicyConflict",
                      message=f"FunctionSizingPolicy {name} exists and is not derived from "
                              "these annotations; the annotations are ignored")
    else:
        patch = rc.derived_patch(cast(PolicyBody, existing), desired)
        if patch is not None:
            await kube.patch(API_VERSION, KIND, namespace, name, patch)


async def _touch_followers(kube: Kube, memo: Any, namespace: str, policies: list[str],
                           workload: WorkloadBody) -> None:
    """Stamp the target's derived grid on each policy that derives its grid from it, so a
    change of the container's requests or limits re-reconciles the policy (kopf reacts to
    annotation changes)."""
    try:
        summary = rc.derived_summary(derived_sizes(target_container(workload),
                                                   _cfg(memo).default_sizes))
    except SpecError as exc:
        summary = f"invalid: {exc}"
    for policy_name in policies:
        policy = await kube.get(API_VERSION, KIND, namespace, policy_name)
        if policy is None:
            continue
        current = (policy.get("metadata", {}).get("annotations") or {}).get(rc.DERIVED_SIZES)
        if current != summary:
            await kube.patch(API_VERSION, KIND, namespace, policy_name,
                             {"metadata": {"annotations": {rc.DERIVED_SIZES: summary}}})


def _derived_from(policy: Mapping[str, Any], workload: WorkloadBody) -> bool:
    meta = policy.get("metadata", {})
    if (meta.get("labels") or {}).get(rc.DERIVED_LABEL) != workload.get("metadata", {}).get(
        "name"
    ):
        return False
    kinds = {o.get("kind") for o in meta.get("ownerReferences") or []}
    return workload.get("kind") in kinds
