"""The knative backend: one Knative Configuration per size, one tagged Route, header routing.

Knative Serving cannot resize a running revision's pods, but it can serve several revisions of
one function side by side. So the size grid becomes *variants* (mode `Variants`, prepared by
the operator, or by this backend with `manage_variants: true`):

  Configuration `{function}-{tag}` per size, its template's resources requests = limits = size
  Route `{function}-shabari`: one target per size tagged `{tag}`, e.g. `cpu500m-mem512mi`
  (`-gpu1` with GPUs; see `variant_tag`), the default size taking 100% of untagged traffic

Each invocation goes to the Route's host through the Knative ingress with the header
`Knative-Serving-Tag: <tag>` (config-features `tag-header-based-routing: Enabled`), so the
decided size serves it; sending it to a warm larger variant when the decided one is cold is the
scheduler's choice, expressed by the pod it hands us. Knative scales variants to zero and back
by itself: a request to a cold variant waits in the activator while a pod starts. That cold
start is detected from the response timing: the round trip minus the time the worker reports
for the function (`X-Shabari-Wall-Ms`); an overhead above `cold_start_threshold_ms` is a cold
start and its size is the reported cold-start time. Nothing can be resized in place (CPU, and
never a GPU): `resize` raises `ResizeRejectedError(reason="Unsupported")`.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import aiohttp

from shabari.backends._http import (
    WorkerConnectionError,
    post_to_worker,
    result_from_reply,
)
from shabari.backends._k8s_api import (
    API_OPTIONS,
    MERGE_PATCH,
    KubeApi,
    KubeConfig,
    KubeConflictError,
    KubeNotFoundError,
)
from shabari.backends._options import (
    check_keys,
    opt_bool,
    opt_float,
    opt_int,
    opt_str,
    opt_str_mapping,
)
from shabari.backends.base import InvocationResult, PodHandle
from shabari.core import FunctionSpec, NodeCapacity, NodeId, PodId, Size
from shabari.core.errors import (
    BackendError,
    BackendUnavailableError,
    ConfigError,
    ResizeRejectedError,
)
from shabari.core.units import format_cpu, format_memory, parse_cpu, parse_memory

__all__ = [
    "TAG_HEADER",
    "KnativeBackend",
    "configuration_name",
    "dns_name",
    "route_name",
    "variant_manifests",
    "variant_tag",
]

TAG_HEADER = "Knative-Serving-Tag"
SERVING = "/apis/serving.knative.dev/v1"
GPU_RESOURCE = "nvidia.com/gpu"
#: options of the knative backend besides the API connection's (docs/platforms.md)
OPTION_KEYS = (
    "ingress_url", "manage_variants", "image_prefix", "images", "routes", "ready_timeout_s",
    "poll_interval_s", "cold_start_threshold_ms", "cpu", "memory", "gpus",
)


def variant_tag(size: Size) -> str:
    """The Route tag of a size: `cpu500m-mem512mi`, `cpu1000m-mem4096mi-gpu1` (a DNS label).

    The operator names variants the same way (`shabari.k8s.reconcile.size_tag`; a test keeps
    the two equal: the layering lets the operator import this module, not the reverse).
    """
    tag = f"cpu{size.cpu_millicores}m-mem{size.memory_mib}mi"
    return f"{tag}-gpu{size.gpu}" if size.gpu else tag


def dns_name(*parts: str) -> str:
    """Join into a DNS-1035 label, hashing the tail beyond 63 characters (as the operator)."""
    name = re.sub(r"[^a-z0-9-]", "-", "-".join(parts).lower()).strip("-")
    if len(name) <= 63:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[:54].rstrip('-')}-{digest}"


def configuration_name(function: str, size: Size) -> str:
    """The Knative Configuration of one size variant: `{function}-{tag}`."""
    return dns_name(function, variant_tag(size))


def route_name(function: str) -> str:
    """The tagged Route of a function's variants: `{function}-shabari`."""
    return dns_name(function, "shabari")


def variant_manifests(
    spec: FunctionSpec, namespace: str, image: str, *, container_port: int = 8080,
    extra_labels: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """The Configurations (one per size) and the tagged Route of a function, as manifests.

    Shared by this backend (`manage_variants`) and usable by the operator, so both name and
    shape variants identically.
    """
    labels = {"app.kubernetes.io/managed-by": "shabari", "shabari.dev/function": spec.name,
              **(extra_labels or {})}
    manifests: list[dict[str, Any]] = []
    for size in spec.sizes:
        quantities = {"cpu": format_cpu(size.cpu_millicores),
                      "memory": format_memory(size.memory_mib)}
        if size.gpu:
            quantities[GPU_RESOURCE] = str(size.gpu)
        manifests.append({
            "apiVersion": "serving.knative.dev/v1", "kind": "Configuration",
            "metadata": {"name": configuration_name(spec.name, size), "namespace": namespace,
                         "labels": {**labels, "shabari.dev/variant": variant_tag(size)}},
            "spec": {"template": {
                "metadata": {"annotations": {
                    # one request at a time per pod: the size is for one invocation
                    "autoscaling.knative.dev/target": "1",
                }},
                "spec": {
                    "containerConcurrency": 1,
                    "containers": [{
                        "image": image,
                        "ports": [{"containerPort": container_port}],
                        "env": [{"name": "SHABARI_FUNCTION", "value": spec.name},
                                {"name": "SHABARI_CPU_MILLICORES",
                                 "value": str(size.cpu_millicores)},
                                {"name": "SHABARI_MEMORY_MIB", "value": str(size.memory_mib)}],
                        "resources": {"requests": dict(quantities), "limits": dict(quantities)},
                    }],
                },
            }},
        })
    traffic = [{"configurationName": configuration_name(spec.name, s), "tag": variant_tag(s),
                "latestRevision": True, "percent": 100 if s == spec.safe_default else 0}
               for s in spec.sizes]
    manifests.append({
        "apiVersion": "serving.knative.dev/v1", "kind": "Route",
        "metadata": {"name": route_name(spec.name), "namespace": namespace, "labels": labels},
        "spec": {"traffic": traffic},
    })
    return manifests


@dataclass(frozen=True, slots=True)
class _Route:
    host: str
    tags: frozenset[str]


@dataclass(frozen=True, slots=True)
class _Pod:
    pod_id: PodId
    function: str
    size: Size
    tag: str
    host: str


class KnativeBackend:
    """Size variants on Knative Serving, routed per invocation by the tag header."""

    name = "knative"
    supports_resize = False

    def __init__(
        self, options: Mapping[str, object] | None = None, *, config: KubeConfig | None = None
    ) -> None:
        opts = dict(options or {})
        b = "knative"
        check_keys(opts, (*API_OPTIONS, *OPTION_KEYS), b)
        KubeConfig.validate(opts, b)
        ingress = opt_str(opts, "ingress_url", b)
        if not ingress:
            raise ConfigError("knative backend: option 'ingress_url' is required "
                              "(the Knative ingress, e.g. http://kourier.kourier-system)")
        self.ingress_url = ingress.rstrip("/")
        self._raw_options = opts
        self._config = config
        self.manage_variants = opt_bool(opts, "manage_variants", b, False)
        self.image_prefix = opt_str(opts, "image_prefix", b, "ghcr.io/shabari/function-") or ""
        self._images = opt_str_mapping(opts, "images", b)
        self._route_names = opt_str_mapping(opts, "routes", b)
        self.ready_timeout_s = opt_float(opts, "ready_timeout_s", b, 60.0)
        self.poll_interval_s = opt_float(opts, "poll_interval_s", b, 0.5)
        self.cold_start_threshold_ms = opt_float(opts, "cold_start_threshold_ms", b, 500.0)
        self._nodes = (NodeCapacity(NodeId("knative"),
                                    parse_cpu(str(opts.get("cpu", "64"))),
                                    parse_memory(str(opts.get("memory", "256Gi"))),
                                    opt_int(opts, "gpus", b, 0, minimum=0)),)
        self._api: KubeApi | None = None
        self._http: aiohttp.ClientSession | None = None
        self._routes: dict[str, _Route] = {}
        self._pods: dict[PodId, _Pod] = {}

    @property
    def api(self) -> KubeApi:
        if self._api is None:
            raise BackendError("knative backend is not started", detail="call start() first")
        return self._api

    async def start(self) -> None:
        if self._api is not None:
            return
        api = KubeApi(self._config or await KubeConfig.load(self._raw_options, "knative"))
        await api.start()
        self._api = api
        self._http = aiohttp.ClientSession()

    async def close(self) -> None:
        self._pods.clear()
        if self._api is not None:
            await self._api.close()
            self._api = None
        if self._http is not None:
            await self._http.close()
            self._http = None

    def nodes(self) -> tuple[NodeCapacity, ...]:
        return self._nodes

    # -- variants -------------------------------------------------------------------------

    def _path(self, plural: str, name: str = "") -> str:
        path = f"{SERVING}/namespaces/{self.api.config.namespace}/{plural}"
        return f"{path}/{name}" if name else path

    async def prepare(self, spec: FunctionSpec) -> None:
        """Check (or, with `manage_variants`, create) the variants; wait for the Route."""
        if self.manage_variants:
            image = self._images.get(spec.name) or f"{self.image_prefix}{spec.name}"
            for manifest in variant_manifests(spec, self.api.config.namespace, image):
                plural = "configurations" if manifest["kind"] == "Configuration" else "routes"
                try:
                    await self.api.create(self._path(plural), manifest)
                except KubeConflictError:
                    await self.api.patch(self._path(plural, manifest["metadata"]["name"]),
                                         {"spec": manifest["spec"]}, content_type=MERGE_PATCH)
        self._routes[spec.name] = await self._wait_route(spec)

    def route_of(self, function: str) -> str:
        """The Route serving `function` (option `routes`, else `{function}-shabari`)."""
        return self._route_names.get(function) or route_name(function)

    async def _wait_route(self, spec: FunctionSpec) -> _Route:
        wanted = {variant_tag(s) for s in spec.sizes}
        deadline = time.monotonic() + self.ready_timeout_s
        problem = "not found"
        name = self.route_of(spec.name)
        while True:
            try:
                route = await self.api.get(self._path("routes", name))
                parsed, problem = _parse_route(route, wanted)
                if parsed is not None:
                    return parsed
            except KubeNotFoundError:
                problem = "Route not found"
            if time.monotonic() >= deadline:
                raise BackendError(
                    f"Knative variants of {spec.name} are not ready",
                    detail=f"Route {self.api.config.namespace}/{name}: {problem} "
                    "(is the operator running with mode Variants, or set manage_variants)",
                )
            await asyncio.sleep(self.poll_interval_s)

    # -- pods -----------------------------------------------------------------------------

    async def start_pod(
        self, pod_id: PodId, spec: FunctionSpec, size: Size, node_id: NodeId
    ) -> PodHandle:
        """A 'pod' is a handle on the size variant; Knative starts its pods on demand."""
        route = self._routes.get(spec.name)
        if route is None:
            await self.prepare(spec)
            route = self._routes[spec.name]
        tag = variant_tag(size)
        if tag not in route.tags:
            raise BackendError(f"no Knative variant {tag} for {spec.name}",
                               detail="the Route has no target with that tag")
        self._pods[pod_id] = _Pod(pod_id, spec.name, size, tag, route.host)
        return PodHandle(pod_id, spec.name, size, node_id, 0.0)

    async def resize(self, pod_id: PodId, cpu_millicores: int) -> None:
        raise ResizeRejectedError(
            "Knative cannot resize a revision's pods in place", pod_id=pod_id,
            reason="Unsupported", detail="route the invocation to another size variant",
        )

    async def stop_pod(self, pod_id: PodId) -> None:
        self._pods.pop(pod_id, None)  # Knative scales the variant down by itself

    async def invoke(
        self, pod_id: PodId, body: bytes, content_type: str | None, timeout_s: float
    ) -> InvocationResult:
        pod = self._pods.get(pod_id)
        if pod is None:
            raise BackendError(f"unknown pod {pod_id}", detail="not started by this backend")
        assert self._http is not None
        where = f"Knative variant {pod.function}/{pod.tag}"
        try:
            reply = await post_to_worker(
                self._http, f"{self.ingress_url}/invoke", body, content_type, timeout_s,
                cpu_millicores=pod.size.cpu_millicores, memory_mib=pod.size.memory_mib,
                extra_headers={"Host": pod.host, TAG_HEADER: pod.tag},
            )
        except WorkerConnectionError as exc:
            raise BackendUnavailableError(
                "Knative ingress unavailable", detail=f"{self.ingress_url}: {exc.reason}"
            ) from None
        overhead_ms = reply.latency_ms - (reply.wall_ms or 0.0)
        cold = reply.wall_ms is not None and overhead_ms > self.cold_start_threshold_ms
        # the round trip already contains the cold start: report it, do not add it again
        result = result_from_reply(reply, cold_start=False, cold_start_ms=0.0, where=where)
        if cold:
            result = replace(result, outcome=replace(
                result.outcome, cold_start=True, cold_start_ms=overhead_ms))
        return result


def _parse_route(route: Mapping[str, Any], wanted: set[str]) -> tuple[_Route | None, str]:
    status = route.get("status") or {}
    conds = {c.get("type"): c for c in status.get("conditions") or [] if isinstance(c, dict)}
    ready = conds.get("Ready")
    if ready is None or ready.get("status") != "True":
        reason = "" if ready is None else f": {ready.get('reason', '')} {ready.get('message', '')}"
        return None, f"Route not Ready{reason}".strip()
    tags = frozenset(str(t["tag"]) for t in status.get("traffic") or []
                     if isinstance(t, dict) and t.get("tag"))
    missing = wanted - tags
    if missing:
        return None, f"Route lacks tags {', '.join(sorted(missing))}"
    url = str(status.get("url") or "")
    host = url.split("://", 1)[-1].split("/", 1)[0]
    if not host:
        return None, "Route has no status.url yet"
    return _Route(host, tags), ""
