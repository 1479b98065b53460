"""The knative backend: one Knative Configuration per size, one tagged Route, header routing.

Knative Serving cannot resize a running revision's pods, but it can serve several revisions of
one function side by side. So the size grid becomes *variants* (mode `Variants`, prepared by
the operator, or by this backend with `manage_variants: true`):

  Configuration `{function}-{tag}` per size, its template's resources requests = limits = size
  Route `{function}-shabari`: one target per size tagged `{tag}`, e.g. `cpu500m-mem512mi`
  (`-gpu1` with GPUs; see `variant_tag`), the default size taking 100% of untagged traffic

Each invocation goes through the Knative ingress to the decided size: with the header
`Knative-Serving-Tag: <tag>` on the Route's host when config-features says
`tag-header-based-routing: Enabled`, else (Knative's default: Disabled, and the header is
then ignored: every call would reach the default size) on the tag's own hostname
`<tag>-<route>.<namespace>.<domain>` from the Route's `status.traffic[].url`, which Knative
always programs. The backend reads config-features once, logs which way it routes, and reports
`TagHeaderRoutingDisabled` (metric `shabari_platform_limitation`, `/readyz`). The Route is looked
up in the backend's namespace, then in every namespace (the operator creates it next to the
policy), so a policy in another namespace than the gateway's is found. Tag hostnames must fit in
one DNS label: `route_name` leaves room for the longest tag. Variants start with
`autoscaling.knative.dev/initial-scale: "0"` where config-autoscaler allows it
(`allow-zero-initial-scale`), so a size that cannot be scheduled (a GPU size on a CPU cluster)
does not keep the Route from becoming Ready; elsewhere that is reported. The sending it to a warm larger variant when the decided one is cold is the
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
import logging
import re
import time
from collections.abc import Iterable, Mapping
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
    KubeForbiddenError,
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

log = logging.getLogger(__name__)

TAG_HEADER = "Knative-Serving-Tag"
SERVING = "/apis/serving.knative.dev/v1"
#: Knative Serving's own namespace (config-features, config-autoscaler)
KNATIVE_NAMESPACE = "knative-serving"
#: room left in a 63-character DNS label for `<tag>-` before the Route's name: the longest tag
#: of any size (`cpu128000m-mem1048576mi-gpu16`, 29 characters) and its dash
ROUTE_NAME_MAX = 63 - 30
#: the annotation that keeps a new revision at zero pods until a request comes
INITIAL_SCALE = "autoscaling.knative.dev/initial-scale"
GPU_RESOURCE = "nvidia.com/gpu"
#: options of the knative backend besides the API connection's (docs/platforms.md)
OPTION_KEYS = (
    "ingress_url", "manage_variants", "image_prefix", "images", "routes", "ready_timeout_s",
    "poll_interval_s", "cold_start_threshold_ms", "cpu", "memory", "gpus", "knative_namespace",
)


def variant_tag(size: Size) -> str:
    """The Route tag of a size: `cpu500m-mem512mi`, `cpu1000m-mem4096mi-gpu1` (a DNS label).

    The operator names variants the same way (`shabari.k8s.reconcile.size_tag`; a test keeps
    the two equal: the layering lets the operator import this module, not the reverse).
    """
    tag = f"cpu{size.cpu_millicores}m-mem{size.memory_mib}mi"
    return f"{tag}-gpu{size.gpu}" if size.gpu else tag


def dns_name(*parts: str, limit: int = 63) -> str:
    """Join into a DNS-1035 label, hashing the tail beyond `limit` characters (as the operator)."""
    name = re.sub(r"[^a-z0-9-]", "-", "-".join(parts).lower()).strip("-")
    if len(name) <= limit:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[:limit - 9].rstrip('-')}-{digest}"


def configuration_name(function: str, size: Size) -> str:
    """The Knative Configuration of one size variant: `{function}-{tag}`."""
    return dns_name(function, variant_tag(size))


def route_name(function: str) -> str:
    """The tagged Route of a function's variants: `{function}-shabari`.

    At most `ROUTE_NAME_MAX` characters, so that every tag hostname `<tag>-<route>` stays one
    DNS label (63 characters); longer names are shortened with a hash.
    """
    return dns_name(function, "shabari", limit=ROUTE_NAME_MAX)


def tag_hostname_problems(route: str, tags: Iterable[str]) -> list[str]:
    """Tags whose hostname label `<tag>-<route>` would exceed 63 characters."""
    return [f"{t}-{route}" for t in tags if len(f"{t}-{route}") > 63]


def variant_manifests(
    spec: FunctionSpec, namespace: str, image: str, *, container_port: int = 8080,
    extra_labels: Mapping[str, str] | None = None, zero_initial_scale: bool = False,
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
                    # no pod per size at creation (only where the cluster allows zero)
                    **({INITIAL_SCALE: "0"} if zero_initial_scale else {}),
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
    #: tag -> its own hostname (`status.traffic[].url`), used when header routing is off
    tag_hosts: Mapping[str, str]
    namespace: str = ""


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
        self.knative_namespace = opt_str(opts, "knative_namespace", b, KNATIVE_NAMESPACE) or (
            KNATIVE_NAMESPACE)
        #: None until config-features was read; then: does Knative honour the tag header?
        self.tag_header_routing: bool | None = None
        self.zero_initial_scale = False
        self._limitations: dict[str, str] = {}

    def limitations(self) -> dict[str, str]:
        """What this Knative installation cannot do that Variants needs (see module doc)."""
        return dict(self._limitations)

    async def _read_features(self) -> None:
        """Read config-features / config-autoscaler once (bounded; unreadable = defaults)."""
        if self.tag_header_routing is not None:
            return
        features = await self._configmap("config-features")
        autoscaler = await self._configmap("config-autoscaler")
        self.tag_header_routing = str(features.get("tag-header-based-routing", "")).lower() == (
            "enabled")
        self.zero_initial_scale = str(autoscaler.get("allow-zero-initial-scale", "")
                                      ).lower() == "true"
        where = f"{self.knative_namespace}/config-features"
        if self.tag_header_routing:
            log.info("knative: %s enables tag-header-based-routing: routing by %s", where,
                     TAG_HEADER)
        else:
            self._limitations["TagHeaderRoutingDisabled"] = (
                f"tag-header-based-routing is not Enabled in {where} (Knative's default): "
                "each invocation is routed by its tag's hostname instead of the header")
            log.warning("knative: tag-header-based-routing is not Enabled in %s; routing each "
                        "invocation by its size variant's tag hostname instead", where)
        if not self.zero_initial_scale:
            self._limitations["ZeroInitialScaleNotAllowed"] = (
                f"{self.knative_namespace}/config-autoscaler does not allow-zero-initial-scale: "
                "every size variant starts a pod when created, and a size that cannot be "
                "scheduled keeps its Route from becoming Ready")

    async def _configmap(self, name: str) -> Mapping[str, Any]:
        try:
            cm = await self.api.get(f"/api/v1/namespaces/{self.knative_namespace}/configmaps/"
                                    f"{name}")
        except (KubeNotFoundError, KubeForbiddenError):
            return {}  # not readable: Knative's defaults apply
        data = cm.get("data")
        return data if isinstance(data, dict) else {}

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
        await self._read_features()
        if self.manage_variants:
            image = self._images.get(spec.name) or f"{self.image_prefix}{spec.name}"
            for manifest in variant_manifests(spec, self.api.config.namespace, image,
                                              zero_initial_scale=self.zero_initial_scale):
                plural = "configurations" if manifest["kind"] == "Configuration" else "routes"
                try:
                    await self.api.create(self._path(plural), manifest)
                except KubeConflictError:
                    await self.api.patch(self._path(plural, manifest["metadata"]["name"]),
                                         {"spec": manifest["spec"]}, content_type=MERGE_PATCH)
        self._routes[spec.name] = await self._wait_route(spec)

    def route_of(self, function: str) -> str:
        """The Route serving `function` (option `routes`: `name` or `namespace/name`, else
        `{function}-shabari`)."""
        return self._route_names.get(function) or route_name(function)

    async def _find_route(self, name: str) -> dict[str, Any] | None:
        """The Route in our namespace, else the one of that name in any namespace."""
        if "/" in name:  # namespace/name from the routes option: exactly there
            namespace, _, route = name.partition("/")
            try:
                return await self.api.get(f"{SERVING}/namespaces/{namespace}/routes/{route}")
            except KubeNotFoundError:
                return None
        try:
            return await self.api.get(self._path("routes", name))
        except KubeNotFoundError:
            pass
        try:
            listing = await self.api.get(f"{SERVING}/routes")
        except (KubeNotFoundError, KubeForbiddenError):
            return None  # no cluster-wide read: only our namespace is searched
        found = [r for r in listing.get("items", [])
                 if isinstance(r, dict) and (r.get("metadata") or {}).get("name") == name]
        if len(found) > 1:
            where = sorted(str(r["metadata"].get("namespace")) for r in found)
            raise BackendError(f"Route {name} exists in several namespaces: {where}",
                               detail="set the option routes to pick one (namespace/name)")
        return found[0] if found else None

    async def _wait_route(self, spec: FunctionSpec) -> _Route:
        wanted = {variant_tag(s) for s in spec.sizes}
        deadline = time.monotonic() + self.ready_timeout_s
        problem = "not found"
        name = self.route_of(spec.name)
        too_long = tag_hostname_problems(name.rpartition("/")[2], wanted)
        if too_long:
            raise BackendError(f"Knative tag hostnames of {spec.name} exceed 63 characters",
                               detail=f"{too_long[0]}: shorten the Route name (option routes)")
        while True:
            route = await self._find_route(name)
            if route is None:
                problem = "Route not found in any readable namespace"
            else:
                parsed, problem = _parse_route(route, wanted)
                if parsed is not None:
                    return parsed
            if time.monotonic() >= deadline:
                if not self.zero_initial_scale:
                    problem += (" (every size starts a pod: one that cannot be scheduled keeps "
                                "the Route from Ready; allow-zero-initial-scale avoids that)")
                raise BackendError(
                    f"Knative variants of {spec.name} are not ready",
                    detail=f"Route {name}: {problem} "
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
        host = route.host if self.tag_header_routing else route.tag_hosts.get(tag, "")
        if not host:
            raise BackendError(f"no hostname for Knative variant {tag} of {spec.name}",
                               detail="the Route's status.traffic has no url for that tag and "
                               "tag-header-based-routing is not Enabled")
        self._pods[pod_id] = _Pod(pod_id, spec.name, size, tag, host)
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
                extra_headers={"Host": pod.host, TAG_HEADER: pod.tag}
                if self.tag_header_routing else {"Host": pod.host},
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
    traffic = [t for t in status.get("traffic") or [] if isinstance(t, dict) and t.get("tag")]
    tags = frozenset(str(t["tag"]) for t in traffic)
    missing = wanted - tags
    if missing:
        return None, f"Route lacks tags {', '.join(sorted(missing))}"
    host = _host(status.get("url"))
    if not host:
        return None, "Route has no status.url yet"
    tag_hosts = {str(t["tag"]): _host(t.get("url")) for t in traffic if _host(t.get("url"))}
    namespace = str((route.get("metadata") or {}).get("namespace") or "")
    return _Route(host, tags, tag_hosts, namespace), ""


def _host(url: object) -> str:
    return str(url or "").split("://", 1)[-1].split("/", 1)[0]
