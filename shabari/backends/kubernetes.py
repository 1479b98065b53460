"""The kubernetes backend: warm pods whose CPU is resized in place before each invocation.

Kubernetes >= 1.33 lets a running pod's CPU change without a restart (`pods/resize`
subresource, `resizePolicy: cpu NotRequired`). That is exactly what per-invocation right-sizing
needs: the scheduler keeps a pool of warm pods, memory fixed at creation (shrinking memory of a
live process is unsafe), and before routing an invocation to a warm pod the backend patches the
pod's CPU to the decided size and waits until the kubelet reports it applied.

Life of a pod here:
  start_pod  -> POST a pod built from the function's template (labels, requests = limits =
                the decided size, resizePolicy), optionally bound to the node the scheduler
                chose; wait (bounded) until it is Ready and has an IP; cold start = that wait.
  resize     -> PATCH .../pods/{name}/resize; confirmed through the pod's status (container
                `resources` / `allocatedResources`; the `PodResizeInProgress` and
                `PodResizePending` conditions). Deferred or Infeasible -> the CPU is patched back
                and `ResizeRejectedError` is raised so the gateway can place the invocation on
                another pod or cold-start one.
  invoke     -> POST http://{podIP}:{port}/invoke to the worker runtime in the pod (HTTP mode);
                a pod deleted while the invocation runs -> `FunctionFailedError` saying so.
  stop_pod   -> DELETE the pod (keep-alive expiry is the scheduler's decision).

All API traffic goes through `KubeApi` (aiohttp, every call bounded): the event loop never
blocks, and an unreachable API server surfaces as `BackendUnavailableError` within the API
timeout. One watch per backend keeps a cache of its pods' status; every wait also re-reads the
pod periodically, so a broken watch slows a wait down but never hangs it.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import hashlib
import logging
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypedDict, cast

import aiohttp

from shabari.backends._http import (
    WorkerConnectionError,
    post_to_worker,
    raise_failed,
    result_from_reply,
)
from shabari.backends._k8s_api import (
    API_OPTIONS,
    KubeAdmissionError,
    KubeApi,
    KubeApiError,
    KubeConfig,
    KubeForbiddenError,
    KubeNotFoundError,
)
from shabari.backends._options import (
    check_keys,
    opt_bool,
    opt_float,
    opt_int,
    opt_mapping,
    opt_str,
    opt_str_mapping,
)
from shabari.backends.base import InvocationResult, PodHandle
from shabari.core import FunctionSpec, NodeCapacity, NodeId, PodId, Size
from shabari.core.errors import (
    BackendError,
    BackendUnavailableError,
    CapacityError,
    ConfigError,
    FunctionFailedError,
    OutOfMemoryError,
    ResizeRejectedError,
)
from shabari.core.types import Outcome, OutcomeStatus
from shabari.core.units import format_cpu, format_memory, parse_cpu, parse_memory

__all__ = ["OPTION_KEYS", "KubernetesBackend", "KubernetesOptions", "parse_nodes", "pod_name_for"]

log = logging.getLogger(__name__)

LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_FUNCTION = "shabari.dev/function"
LABEL_GATEWAY = "shabari.dev/gateway"
ANNOTATION_POD_ID = "shabari.dev/pod-id"
ANNOTATION_SIZE = "shabari.dev/size"
GPU_RESOURCE = "nvidia.com/gpu"
#: container waiting reasons that will not fix themselves: fail the start instead of waiting
_FATAL_WAITING = frozenset({
    "ErrImagePull", "ImagePullBackOff", "InvalidImageName", "CreateContainerConfigError",
    "CreateContainerError", "CrashLoopBackOff", "RunContainerError",
})
#: the kubelet's PodResizePending message on a node with the static CPU manager policy
#: (pkg/kubelet/allocation: "Resize is infeasible for Guaranteed Pods alongside CPU Manager
#: static policy"); every CPU resize of a Guaranteed pod there is Infeasible (KEP-1287)
_STATIC_CPU_MANAGER = "cpu manager static policy"
#: ResizeRejectedError reason once a node is known to have it (no PATCH is sent any more)
STATIC_CPU_MANAGER_REASON = "StaticCPUManager"


class _Condition(TypedDict, total=False):
    type: str
    status: str
    reason: str
    message: str
    observedGeneration: int


@dataclass(frozen=True, slots=True)
class KubernetesOptions:
    """What the backend needs beyond the API connection (see docs/platforms.md)."""

    #: container image per function; default `image_prefix + function name`
    images: Mapping[str, str] = field(default_factory=dict)
    image_prefix: str = "ghcr.io/shabari/function-"
    #: optional Pod manifest per function (metadata/spec); the backend fills in the rest
    pod_templates: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    container: str = "function"
    port: int = 8080
    #: pin pods to the node the scheduler chose (spec.nodeName) when it is a real node
    bind_nodes: bool = True
    #: owner label: pods of this gateway; leftovers are reclaimed at start
    gateway_id: str = "shabari-gateway"
    ready_timeout_s: float = 120.0
    resize_timeout_s: float = 15.0
    #: how long a `Deferred` resize may stay deferred before falling back
    resize_deferred_wait_s: float = 2.0
    delete_grace_period_s: int = 2
    poll_interval_s: float = 0.5
    #: capacity to report when the API server does not list nodes (no RBAC for nodes)
    fallback_nodes: tuple[NodeCapacity, ...] = (
        NodeCapacity(NodeId("cluster"), 64_000, 256 * 1024),
    )

    @classmethod
    def from_mapping(cls, options: Mapping[str, object]) -> KubernetesOptions:
        b = "kubernetes"
        check_keys(options, (*API_OPTIONS, *OPTION_KEYS), b)
        defaults = cls()
        nodes = options.get("nodes")
        return cls(
            images=opt_str_mapping(options, "images", b),
            image_prefix=opt_str(options, "image_prefix", b, defaults.image_prefix)
            or defaults.image_prefix,
            pod_templates={str(k): _template(v, str(k)) for k, v in
                           opt_mapping(options, "pod_templates", b).items()},
            container=opt_str(options, "container", b, defaults.container) or defaults.container,
            port=opt_int(options, "port", b, defaults.port),
            bind_nodes=opt_bool(options, "bind_nodes", b, defaults.bind_nodes),
            gateway_id=opt_str(options, "gateway_id", b, defaults.gateway_id)
            or defaults.gateway_id,
            ready_timeout_s=opt_float(options, "ready_timeout_s", b, defaults.ready_timeout_s),
            resize_timeout_s=opt_float(options, "resize_timeout_s", b,
                                       defaults.resize_timeout_s),
            resize_deferred_wait_s=opt_float(options, "resize_deferred_wait_s", b,
                                             defaults.resize_deferred_wait_s, positive=False),
            delete_grace_period_s=opt_int(options, "delete_grace_period_s", b,
                                          defaults.delete_grace_period_s, minimum=0),
            poll_interval_s=opt_float(options, "poll_interval_s", b, defaults.poll_interval_s),
            fallback_nodes=defaults.fallback_nodes if nodes is None else parse_nodes(nodes, b),
        )

    def image_for(self, function: str) -> str:
        return self.images.get(function) or f"{self.image_prefix}{function}"


#: KubernetesOptions keys accepted from the config file (besides the API connection's)
OPTION_KEYS = (
    "images", "image_prefix", "pod_templates", "container", "port", "bind_nodes", "gateway_id",
    "ready_timeout_s", "resize_timeout_s", "resize_deferred_wait_s", "delete_grace_period_s",
    "poll_interval_s", "nodes",
)


def _template(value: object, function: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"kubernetes backend: pod_templates.{function} must be a Pod "
                          f"manifest (mapping), got {type(value).__name__}")
    return cast(Mapping[str, Any], value)


def parse_nodes(value: object, backend: str) -> tuple[NodeCapacity, ...]:
    """The `nodes` option: a list of `{name, cpu, memory, gpu}` (Kubernetes quantities)."""
    if not isinstance(value, list | tuple) or not value:
        raise ConfigError(f"{backend} backend: option 'nodes' must be a non-empty list of "
                          "{name, cpu, memory, gpu}")
    nodes = []
    for i, raw in enumerate(value):
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{backend} backend: nodes[{i}] must be a mapping, got {raw!r}")
        try:
            nodes.append(NodeCapacity(
                NodeId(str(raw.get("name", f"node-{i}"))),
                parse_cpu(raw["cpu"]), parse_memory(raw["memory"]), int(raw.get("gpu", 0)),
            ))
        except KeyError as exc:
            raise ConfigError(f"{backend} backend: nodes[{i}] lacks {exc}") from None
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{backend} backend: nodes[{i}]: {exc}") from None
    return tuple(nodes)


_DNS_INVALID = re.compile(r"[^a-z0-9-]+")


def pod_name_for(function: str, pod_id: str) -> str:
    """A DNS-1123 pod name for a scheduler pod id (stable, at most 63 characters)."""
    raw = f"shabari-{function}-{pod_id}".lower()
    name = _DNS_INVALID.sub("-", raw).strip("-")
    if len(name) > 63 or name != raw:
        digest = hashlib.sha1(f"{function}/{pod_id}".encode()).hexdigest()[:8]
        name = f"{name[:54].strip('-')}-{digest}"
    return name


@dataclass
class _Pod:
    pod_id: PodId
    name: str
    function: str
    size: Size
    node_id: NodeId
    ip: str = ""
    #: set once the pod is gone: deleted, or Failed/Succeeded (restartPolicy Never: for good)
    deleted: asyncio.Event = field(default_factory=asyncio.Event)
    #: why the container terminated, when it did (e.g. "OOMKilled")
    terminated: str = ""
    #: the node the pod runs on (spec.nodeName, once scheduled)
    node_name: str = ""


class KubernetesBackend:
    """Pods on a Kubernetes >= 1.33 cluster with in-place CPU resize (DESIGN 2, 5)."""

    name = "kubernetes"
    supports_resize = True

    def __init__(
        self,
        options: Mapping[str, object] | None = None,
        *,
        config: KubeConfig | None = None,
    ) -> None:
        self._raw_options: Mapping[str, object] = dict(options or {})
        self.options = KubernetesOptions.from_mapping(self._raw_options)
        KubeConfig.validate(self._raw_options, "kubernetes")
        self._config = config
        self._api: KubeApi | None = None
        self._http: aiohttp.ClientSession | None = None
        self._pods: dict[PodId, _Pod] = {}
        self._by_name: dict[str, _Pod] = {}
        #: latest pod objects seen (watch or GET), by pod name
        self._objects: dict[str, dict[str, Any]] = {}
        self._changed = asyncio.Condition()
        self._watch_task: asyncio.Task[None] | None = None
        self._closing = False
        self._nodes: tuple[NodeCapacity, ...] = self.options.fallback_nodes
        self._real_nodes: frozenset[str] = frozenset()
        #: nodes whose kubelet runs the static CPU manager policy (CPU resizes Infeasible)
        self._static_cpu_nodes: set[str] = set()

    def limitations(self) -> dict[str, str]:
        """What this cluster cannot do that the mode needs: {code: explanation} (gateway
        metric `shabari_platform_limitation` and `/readyz`)."""
        if not self._static_cpu_nodes:
            return {}
        return {STATIC_CPU_MANAGER_REASON: (
            "nodes " + ", ".join(sorted(self._static_cpu_nodes)) + " run the kubelet's static "
            "CPU manager policy: in-place CPU resize of Guaranteed pods is Infeasible there, "
            "so each resize becomes a cold start (docs/platforms.md)")}

    # -- lifecycle ----------------------------------------------------------------------

    @property
    def api(self) -> KubeApi:
        if self._api is None:
            raise BackendError("kubernetes backend is not started", detail="call start() first")
        return self._api

    @property
    def namespace(self) -> str:
        return self.api.config.namespace

    def _pods_path(self, name: str = "", sub: str = "") -> str:
        path = f"/api/v1/namespaces/{self.namespace}/pods"
        if name:
            path += f"/{name}"
        if sub:
            path += f"/{sub}"
        return path

    async def start(self) -> None:
        if self._api is not None:
            return
        config = self._config or await KubeConfig.load(self._raw_options)
        api = KubeApi(config)
        await api.start()
        self._api = api
        self._http = aiohttp.ClientSession()
        self._closing = False
        try:
            await self._load_nodes()
            await self._reclaim_orphans()
        except BaseException:
            await self.close()
            raise
        self._watch_task = asyncio.create_task(self._watch_pods(), name="shabari-k8s-pod-watch")

    async def close(self) -> None:
        self._closing = True
        if self._watch_task is not None:
            self._watch_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._watch_task
            self._watch_task = None
        if self._api is not None:
            pods = list(self._pods)
            if pods:
                await asyncio.gather(*(self.stop_pod(p) for p in pods), return_exceptions=True)
            await self._api.close()
            self._api = None
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def _load_nodes(self) -> None:
        """Read node capacity once; without RBAC to list nodes, keep the configured fallback."""
        try:
            listing = await self.api.get("/api/v1/nodes")
        except (KubeForbiddenError, KubeNotFoundError):
            return  # no RBAC for nodes (optional): the configured capacity stands
        nodes = []
        for item in listing.get("items", []):
            name = str(item.get("metadata", {}).get("name", ""))
            alloc = item.get("status", {}).get("allocatable", {})
            try:
                nodes.append(NodeCapacity(
                    NodeId(name), parse_cpu(alloc["cpu"]), parse_memory(alloc["memory"]),
                    int(alloc.get(GPU_RESOURCE, 0) or 0),
                ))
            except (KeyError, ValueError, BackendError, ConfigError):
                continue  # a node without usable allocatable figures is not a target
        if nodes:
            self._nodes = tuple(nodes)
            self._real_nodes = frozenset(n.node_id for n in nodes)

    async def _reclaim_orphans(self) -> None:
        """Delete pods a previous run of this gateway left behind (crash, kill -9)."""
        selector = f"{LABEL_MANAGED_BY}=shabari,{LABEL_GATEWAY}={self.options.gateway_id}"
        listing = await self.api.get(self._pods_path(), {"labelSelector": selector})
        for item in listing.get("items", []):
            labels = item.get("metadata", {}).get("labels", {}) or {}
            if (labels.get(LABEL_MANAGED_BY) != "shabari"
                    or labels.get(LABEL_GATEWAY) != self.options.gateway_id):
                continue  # servers that ignore label selectors (emulators) list everything
            name = item.get("metadata", {}).get("name")
            if name:
                with contextlib.suppress(KubeNotFoundError):
                    await self.api.delete(self._pods_path(name), grace_period_s=0)

    def nodes(self) -> tuple[NodeCapacity, ...]:
        return self._nodes

    async def prepare(self, spec: FunctionSpec) -> None:
        """Pods are created from the template on demand; only validate the template here."""
        self._pod_manifest(PodId("prepare-check"), spec, spec.largest, NodeId(""))

    # -- watch --------------------------------------------------------------------------

    async def _watch_pods(self) -> None:
        selector = f"{LABEL_GATEWAY}={self.options.gateway_id}"
        backoff = 0.2
        while not self._closing:
            try:
                async for event in self.api.watch(self._pods_path(), {"labelSelector": selector}):
                    backoff = 0.2
                    obj = event.get("object")
                    if isinstance(obj, dict):
                        await self._observe(obj, deleted=event.get("type") == "DELETED")
            except asyncio.CancelledError:
                raise
            except Exception:
                pass  # the waits poll as well; reconnect after a pause
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)

    async def _observe(self, obj: dict[str, Any], *, deleted: bool = False) -> None:
        name = obj.get("metadata", {}).get("name")
        if not isinstance(name, str) or name not in self._by_name:
            return
        pod = self._by_name[name]
        terminated = _terminated_reason(obj, self.options.container)
        if terminated:
            pod.terminated = terminated
        pod.node_name = str((obj.get("spec") or {}).get("nodeName") or pod.node_name)
        phase = (obj.get("status") or {}).get("phase")
        if deleted or obj.get("metadata", {}).get("deletionTimestamp") or phase in (
            "Failed", "Succeeded"
        ):
            # restartPolicy Never: a Failed pod (OOM-killed, crashed) never runs again
            pod.deleted.set()
        self._objects[name] = obj
        async with self._changed:
            self._changed.notify_all()

    async def _refresh(self, pod: _Pod) -> dict[str, Any] | None:
        """GET the pod (the poll behind every wait); None once it is gone."""
        try:
            obj = await self.api.get(self._pods_path(pod.name))
        except KubeNotFoundError:
            pod.deleted.set()
            return None
        await self._observe(obj)
        return obj

    async def _wait_change(self, timeout_s: float) -> None:
        async with self._changed:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout_s):  # not wait_for: keeps cancellations
                    await self._changed.wait()

    # -- pods ---------------------------------------------------------------------------

    def _pod_manifest(
        self, pod_id: PodId, spec: FunctionSpec, size: Size, node_id: NodeId
    ) -> dict[str, Any]:
        opts = self.options
        template = copy.deepcopy(dict(opts.pod_templates.get(spec.name, {})))
        manifest: dict[str, Any] = {"apiVersion": "v1", "kind": "Pod", **template}
        manifest["apiVersion"], manifest["kind"] = "v1", "Pod"
        meta = manifest.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise ConfigError(f"pod template of {spec.name}: metadata must be a mapping")
        meta["name"] = pod_name_for(spec.name, pod_id)
        meta["namespace"] = self.namespace
        meta.pop("generateName", None)
        meta["labels"] = {**(meta.get("labels") or {}), LABEL_MANAGED_BY: "shabari",
                          LABEL_FUNCTION: spec.name, LABEL_GATEWAY: opts.gateway_id}
        meta["annotations"] = {**(meta.get("annotations") or {}), ANNOTATION_POD_ID: pod_id,
                               ANNOTATION_SIZE: str(size)}
        pod_spec = manifest.setdefault("spec", {})
        if not isinstance(pod_spec, dict):
            raise ConfigError(f"pod template of {spec.name}: spec must be a mapping")
        pod_spec.setdefault("restartPolicy", "Never")
        if opts.bind_nodes and node_id in self._real_nodes:
            pod_spec["nodeName"] = node_id
        containers = pod_spec.setdefault("containers", [])
        if not isinstance(containers, list):
            raise ConfigError(f"pod template of {spec.name}: spec.containers must be a list")
        container = next((c for c in containers if c.get("name") == opts.container), None)
        if container is None:
            container = {"name": opts.container}
            containers.insert(0, container)
        container.setdefault("image", opts.image_for(spec.name))
        container.setdefault("ports", [{"containerPort": opts.port, "name": "http"}])
        env = [e for e in container.get("env", []) if not str(e.get("name", "")).startswith(
            "SHABARI_")]
        env += [
            {"name": "SHABARI_FUNCTION", "value": spec.name},
            {"name": "SHABARI_CPU_MILLICORES", "value": str(size.cpu_millicores)},
            {"name": "SHABARI_MEMORY_MIB", "value": str(size.memory_mib)},
        ]
        container["env"] = env
        quantities: dict[str, str] = {"cpu": format_cpu(size.cpu_millicores),
                                      "memory": format_memory(size.memory_mib)}
        if size.gpu:
            quantities[GPU_RESOURCE] = str(size.gpu)
        # requests = limits: Guaranteed QoS, and the allocation the agent decided is the one
        # the function gets (no bursting that would hide an undersized decision)
        container["resources"] = {"requests": dict(quantities), "limits": dict(quantities)}
        # KEP-1287 / validateResizePolicy: with restartPolicy Never the API server accepts
        # only NotRequired. Memory is never resized here (fixed at creation), so its policy
        # matters only for pods a template lets restart.
        memory_policy = ("NotRequired" if pod_spec.get("restartPolicy") == "Never"
                         else "RestartContainer")
        container["resizePolicy"] = [
            {"resourceName": "cpu", "restartPolicy": "NotRequired"},
            {"resourceName": "memory", "restartPolicy": memory_policy},
        ]
        container.setdefault("readinessProbe", {
            "httpGet": {"path": "/readyz", "port": opts.port},
            "periodSeconds": 1, "failureThreshold": 3,
        })
        return manifest

    async def start_pod(
        self, pod_id: PodId, spec: FunctionSpec, size: Size, node_id: NodeId
    ) -> PodHandle:
        if pod_id in self._pods:
            raise BackendError(f"pod {pod_id} already exists")
        manifest = self._pod_manifest(pod_id, spec, size, node_id)
        pod = _Pod(pod_id, manifest["metadata"]["name"], spec.name, size, node_id)
        self._pods[pod_id] = pod
        self._by_name[pod.name] = pod
        t0 = time.perf_counter()
        try:
            try:
                created = await self.api.create(self._pods_path(), manifest)
            except KubeAdmissionError as exc:
                if exc.kind == "quota":  # the namespace's ResourceQuota is used up
                    raise CapacityError(f"no quota left for a {size} pod of {spec.name}",
                                        detail=exc.detail) from None
                raise
            await self._observe(created)
            pod.ip = await self._wait_ready(pod)
        except BaseException:
            await self._forget_and_delete(pod)
            raise
        cold_ms = (time.perf_counter() - t0) * 1000.0
        return PodHandle(pod_id, spec.name, size, node_id, cold_ms)

    async def _wait_ready(self, pod: _Pod) -> str:
        deadline = time.monotonic() + self.options.ready_timeout_s
        last_state = "created"
        while True:
            obj = self._objects.get(pod.name)
            if obj is not None:  # a Failed pod raises here, with the kubelet's reason
                ready, last_state = _readiness(obj)
                if ready and not pod.deleted.is_set():
                    return str(obj["status"]["podIP"])
            if pod.deleted.is_set():
                raise FunctionFailedError(f"pod {pod.name} was deleted before it became ready",
                                          detail=last_state)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BackendUnavailableError(
                    f"pod {pod.name} not ready within {self.options.ready_timeout_s:g} s",
                    detail=last_state,
                )
            await self._wait_change(min(remaining, self.options.poll_interval_s))
            if deadline - time.monotonic() > 0 and not pod.deleted.is_set():
                await self._refresh(pod)

    async def _forget_and_delete(self, pod: _Pod) -> None:
        self._pods.pop(pod.pod_id, None)
        self._by_name.pop(pod.name, None)
        self._objects.pop(pod.name, None)
        pod.deleted.set()
        with contextlib.suppress(KubeNotFoundError, BackendError):
            await self.api.delete(
                self._pods_path(pod.name), grace_period_s=self.options.delete_grace_period_s
            )

    async def stop_pod(self, pod_id: PodId) -> None:
        pod = self._pods.get(pod_id)
        if pod is None:
            return
        await self._forget_and_delete(pod)

    def _pod(self, pod_id: PodId) -> _Pod:
        pod = self._pods.get(pod_id)
        if pod is None:
            raise BackendError(f"unknown pod {pod_id}", detail="not started by this backend")
        return pod

    # -- resize -------------------------------------------------------------------------

    def _resize_patch(self, cpu_millicores: int) -> dict[str, Any]:
        cpu = format_cpu(cpu_millicores)
        return {"spec": {"containers": [{
            "name": self.options.container,
            "resources": {"requests": {"cpu": cpu}, "limits": {"cpu": cpu}},
        }]}}

    async def resize(self, pod_id: PodId, cpu_millicores: int) -> None:
        pod = self._pod(pod_id)
        if cpu_millicores == pod.size.cpu_millicores:
            return
        if pod.deleted.is_set():
            raise FunctionFailedError(f"pod {pod.name} was deleted", detail="cannot resize it")
        if pod.node_name and pod.node_name in self._static_cpu_nodes:
            raise ResizeRejectedError(
                f"node {pod.node_name} cannot resize {pod.name} in place", pod_id=pod_id,
                reason=STATIC_CPU_MANAGER_REASON,
                detail="the kubelet runs the static CPU manager policy (docs/platforms.md)")
        try:
            patched = await self.api.patch(
                self._pods_path(pod.name, "resize"), self._resize_patch(cpu_millicores)
            )
        except KubeNotFoundError as exc:
            if await self._refresh(pod) is None:
                raise FunctionFailedError(f"pod {pod.name} was deleted",
                                          detail="cannot resize it") from None
            raise ResizeRejectedError(
                "in-place resize is not supported by this API server", pod_id=pod_id,
                reason="Unsupported", detail=f"needs Kubernetes >= 1.33 ({exc.detail})",
            ) from None
        except KubeAdmissionError as exc:
            # a ResourceQuota (or LimitRange) refuses the bigger size: nothing changed
            raise ResizeRejectedError(
                f"resize of {pod.name} to {format_cpu(cpu_millicores)} CPU refused by "
                f"admission ({exc.kind})", pod_id=pod_id,
                reason="Quota" if exc.kind == "quota" else "Forbidden", detail=exc.detail,
            ) from None
        except KubeApiError as exc:
            if exc.status != 422:
                raise
            raise ResizeRejectedError(
                f"resize of {pod.name} to {format_cpu(cpu_millicores)} CPU is invalid",
                pod_id=pod_id, reason="Invalid", detail=exc.detail,
            ) from None
        await self._observe(patched)
        generation = int((patched.get("metadata") or {}).get("generation") or 0)
        try:
            await self._wait_resized(pod, cpu_millicores, generation)
        except ResizeRejectedError as exc:
            if exc.reason == "Infeasible" and _STATIC_CPU_MANAGER in exc.detail.lower():
                self._note_static_cpu_manager(pod)
            await self._revert(pod)
            raise
        pod.size = pod.size.with_cpu(cpu_millicores)

    def _note_static_cpu_manager(self, pod: _Pod) -> None:
        node = pod.node_name or "(unknown node)"
        if node in self._static_cpu_nodes:
            return
        self._static_cpu_nodes.add(node)
        log.warning(
            "node %s runs the kubelet's static CPU manager policy: in-place CPU resize of "
            "Guaranteed pods is Infeasible there (KEP-1287); warm pods on it keep their size "
            "and each resize becomes a cold start. Use cpuManagerPolicy none on function "
            "nodes, or the InPlacePodVerticalScalingExclusiveCPUs feature gate "
            "(docs/platforms.md)", node)

    async def _wait_resized(self, pod: _Pod, cpu_millicores: int, generation: int = 0) -> None:
        deadline = time.monotonic() + self.options.resize_timeout_s
        deferred_since: float | None = None
        while True:
            if pod.deleted.is_set():
                raise FunctionFailedError(f"pod {pod.name} was deleted during a resize")
            obj = self._objects.get(pod.name) or {}
            state, reason, message = _resize_state(obj, self.options.container, cpu_millicores,
                                                   generation)
            if state == "done":
                return
            if state == "pending" and reason == "Infeasible":
                raise ResizeRejectedError(
                    f"resize of {pod.name} to {format_cpu(cpu_millicores)} CPU is infeasible",
                    pod_id=pod.pod_id, reason="Infeasible", detail=message,
                )
            if state == "in-progress" and reason == "Error":
                # the kubelet tried and the runtime failed (PodResizeInProgress/Error): no
                # point waiting for the timeout
                raise ResizeRejectedError(
                    f"resize of {pod.name} to {format_cpu(cpu_millicores)} CPU failed",
                    pod_id=pod.pod_id, reason="Error", detail=message,
                )
            now = time.monotonic()
            if state == "pending":  # Deferred: may clear when other pods shrink
                deferred_since = deferred_since if deferred_since is not None else now
                if now - deferred_since >= self.options.resize_deferred_wait_s:
                    raise ResizeRejectedError(
                        f"resize of {pod.name} to {format_cpu(cpu_millicores)} CPU deferred",
                        pod_id=pod.pod_id, reason=reason or "Deferred", detail=message,
                    )
            if now >= deadline:
                raise ResizeRejectedError(
                    f"resize of {pod.name} not confirmed within "
                    f"{self.options.resize_timeout_s:g} s",
                    pod_id=pod.pod_id, reason="Timeout", detail=f"last state: {state} {message}",
                )
            await self._wait_change(min(deadline - now, self.options.poll_interval_s))
            await self._refresh(pod)

    async def _revert(self, pod: _Pod) -> None:
        """Put the spec back to the size the pod really has, so it stays a usable warm pod."""
        with contextlib.suppress(BackendError):
            await self.api.patch(
                self._pods_path(pod.name, "resize"), self._resize_patch(pod.size.cpu_millicores)
            )

    # -- invoke -------------------------------------------------------------------------

    async def invoke(
        self, pod_id: PodId, body: bytes, content_type: str | None, timeout_s: float
    ) -> InvocationResult:
        pod = self._pod(pod_id)
        if pod.deleted.is_set():
            how = f"terminated ({pod.terminated})" if pod.terminated else "deleted"
            raise_failed(f"pod {pod.name} was {how}", "it can take no invocation", 0.0)
        assert self._http is not None
        host = f"[{pod.ip}]" if ":" in pod.ip else pod.ip
        url = f"http://{host}:{self.options.port}/invoke"
        post = asyncio.create_task(post_to_worker(
            self._http, url, body, content_type, timeout_s,
            cpu_millicores=pod.size.cpu_millicores, memory_mib=pod.size.memory_mib,
        ))
        gone = asyncio.create_task(pod.deleted.wait())
        t0 = time.perf_counter()
        try:
            done, _ = await asyncio.wait({post, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
        if post not in done:
            post.cancel()
            with contextlib.suppress(BaseException):
                await post
            self._raise_if_killed(pod, (time.perf_counter() - t0) * 1000.0)
            raise_failed(
                f"pod {pod.name} was deleted mid-invocation",
                "the pod was deleted while the function ran (evicted, preempted or deleted "
                "by a user); retry on another pod",
                (time.perf_counter() - t0) * 1000.0,
            )
        try:
            reply = post.result()
        except WorkerConnectionError as exc:
            # Tell "the pod is gone" from "the worker crashed": the watch (or a GET) knows.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await pod.deleted.wait()
            if not pod.deleted.is_set():
                with contextlib.suppress(BackendError):
                    await self._refresh(pod)
            self._raise_if_killed(pod, exc.latency_ms)
            if pod.deleted.is_set():
                raise_failed(
                    f"pod {pod.name} was deleted mid-invocation",
                    f"connection to the worker lost ({exc.reason}) and the pod is gone",
                    exc.latency_ms,
                )
            raise_failed(
                f"worker in pod {pod.name} failed mid-invocation",
                f"connection to the worker lost: {exc.reason}", exc.latency_ms,
            )
        return result_from_reply(reply, cold_start=False, cold_start_ms=0.0,
                                 where=f"pod {pod.name}")

    def _raise_if_killed(self, pod: _Pod, latency_ms: float) -> None:
        """The container was OOM-killed: an OOM (the gateway retries with more memory)."""
        if pod.terminated != "OOMKilled":
            return
        err = OutOfMemoryError(
            "function ran out of memory",
            detail=f"pod {pod.name}: container OOMKilled at its {pod.size.memory_mib} MiB "
            "limit (the pod is gone: restartPolicy Never)")
        err.outcome = Outcome(latency_ms=latency_ms, status=OutcomeStatus.OOM,
                              detail=err.detail)
        raise err


def _conditions(obj: Mapping[str, Any]) -> list[_Condition]:
    raw = obj.get("status", {}).get("conditions") or []
    return [cast(_Condition, c) for c in raw if isinstance(c, dict)]


def _readiness(obj: Mapping[str, Any]) -> tuple[bool, str]:
    """(ready with an IP?, a one-line description of where the pod is stuck)."""
    status = obj.get("status", {}) or {}
    phase = status.get("phase", "Pending")
    if phase in ("Failed", "Succeeded"):
        terminated = [str(((cs.get("state") or {}).get("terminated") or {}).get("reason", ""))
                      for cs in status.get("containerStatuses") or []]
        raise FunctionFailedError(
            f"pod {obj.get('metadata', {}).get('name')} {phase.lower()} before it became ready",
            detail=str(status.get("message") or status.get("reason")
                       or ", ".join(t for t in terminated if t)),
        )
    for cs in status.get("containerStatuses") or []:
        waiting = (cs.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") in _FATAL_WAITING:
            raise FunctionFailedError(
                f"container {cs.get('name')} cannot start: {waiting.get('reason')}",
                detail=str(waiting.get("message", "")),
            )
    conds = {c.get("type"): c for c in _conditions(obj)}
    sched = conds.get("PodScheduled")
    if sched is not None and sched.get("status") == "False":
        return False, f"unschedulable: {sched.get('message', sched.get('reason', ''))}"
    ready = conds.get("Ready")
    if ready is not None and ready.get("status") == "True" and status.get("podIP"):
        return True, "ready"
    return False, f"phase {phase}"


def _terminated_reason(obj: Mapping[str, Any], container: str) -> str:
    """Why the function's container terminated ("OOMKilled", "Error", ...), or ""."""
    for cs in (obj.get("status") or {}).get("containerStatuses") or []:
        if cs.get("name") != container:
            continue
        for key in ("state", "lastState"):
            term = (cs.get(key) or {}).get("terminated") or {}
            if term.get("reason"):
                return str(term["reason"])
    return ""


def _resize_state(
    obj: Mapping[str, Any], container: str, cpu_millicores: int, generation: int = 0
) -> tuple[str, str, str]:
    """('done' | 'pending' | 'in-progress', reason, message) of a requested CPU resize.

    `generation` is the pod's metadata.generation our resize PATCH produced. A condition or
    a status whose `observedGeneration` is older answers an earlier resize (Kubernetes >=
    1.34 stamps both); it is ignored rather than read as the answer to this one.
    """
    status = obj.get("status", {}) or {}
    observed = status.get("observedGeneration")
    if generation and isinstance(observed, int) and observed < generation:
        return "in-progress", "", f"the kubelet has seen generation {observed} of {generation}"
    conds = {c.get("type"): c for c in _conditions(obj)
             if not (generation and isinstance(c.get("observedGeneration"), int)
                     and c["observedGeneration"] < generation)}
    pending = conds.get("PodResizePending")
    if pending is not None and pending.get("status", "True") == "True":
        return "pending", str(pending.get("reason", "")), str(pending.get("message", ""))
    progress = conds.get("PodResizeInProgress")
    if progress is not None and progress.get("status", "True") == "True":
        return "in-progress", str(progress.get("reason", "")), str(progress.get("message", ""))
    for cs in (obj.get("status", {}) or {}).get("containerStatuses") or []:
        if cs.get("name") != container:
            continue
        applied = ((cs.get("resources") or {}).get("requests") or {}).get("cpu")
        if applied is None:
            applied = (cs.get("allocatedResources") or {}).get("cpu")
        try:
            if applied is not None and parse_cpu(applied) == cpu_millicores:
                return "done", "", ""
        except ConfigError:
            pass
        return "in-progress", "", f"container reports cpu {applied}"
    return "in-progress", "", "no container status yet"
