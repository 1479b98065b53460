"""The openwhisk backend: one action per memory size (`NAME@<memory>`), invoked blocking.

OpenWhisk sizes a container by memory only and gives it a CPU share proportional to that memory,
and it cannot change a running container's size. So Shabari's size grid maps onto *variants*:
`prepare` creates one action per memory size through the REST API
(`PUT /api/v1/namespaces/{ns}/actions/{name}@{memory}?overwrite=true`, limits.memory = the size),
and each invocation goes to the variant of its decided size. The CPU decision maps to the
memory variant: by default the variant is the decided memory; with `memory_per_vcpu_mib` set,
the variant is the larger of the decided memory and the memory whose CPU share equals the
decided vCPUs (docs/platforms.md).

Invocations are blocking with `?blocking=true&result=false`: the answer is the whole activation
record, whose annotations say what happened (`initTime` present = a cold start, `waitTime` =
queueing in the system, `duration` = run time). `result=true` (what DESIGN 4.3 first named)
returns only the function's result and loses exactly those annotations, so it is not used.

Error mapping (the gateway's contract):
  200                           -> result (function's response)
  502, "application error"      -> result with status ERROR (the function raised)
  502, memory exhausted         -> OutOfMemoryError
  502, time limit exceeded      -> InvocationTimeoutError
  502, other developer/internal -> FunctionFailedError
  202 (still running after the blocking wait) -> InvocationTimeoutError
  401/403                       -> BackendUnavailableError "OpenWhisk authentication failed"
  429, 5xx, unreachable         -> BackendUnavailableError

Action code: a `python:3` action built from the function's `handler.py` plus a small adapter
(`main(params)` decodes the base64 body, calls `handle(body, content_type, ctx)`, returns the
base64 response and its CPU seconds and peak memory), or a `blackbox` image when one is
configured for the function (it must implement OpenWhisk's action interface, `POST /init`
and `POST /run` on port 8080, e.g. built on `openwhisk/dockerskeleton`; the worker runtime's
`/invoke` is not that interface).

Platform limits, checked here rather than met as a 400 or 413 (apache/openwhisk
`MemoryLimit.scala`, docs/reference.md): an action's memory must lie in
[`min_memory_mib`, `max_memory_mib`] (the deployment's `whisk.memory.min/max`, 128 and 512 MB
by default), checked at `prepare` against every variant; an invocation's POST body may not
exceed `max_payload_bytes` (1 MB), and the body travels base64-encoded inside it, so the
largest input is about three quarters of that (`PayloadTooLargeError`, HTTP 413, before any
call). A cold start is `waitTime + initTime`: `initTime` alone leaves out the container's
creation, which OpenWhisk counts in `waitTime` ("until the invoker provisioned a container").
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import aiohttp

from shabari.backends._http import raise_failed, timeout_error
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
    CapacityError,
    ConfigError,
    OutOfMemoryError,
    PayloadTooLargeError,
    ResizeRejectedError,
)
from shabari.core.types import Outcome, OutcomeStatus
from shabari.core.units import parse_cpu, parse_memory

__all__ = ["ADAPTER", "OPTION_KEYS", "OpenWhiskBackend", "action_name"]

#: options of the openwhisk backend (docs/platforms.md)
OPTION_KEYS = (
    "api_host", "auth", "namespace", "insecure", "api_timeout_s", "action_timeout_ms",
    "memory_per_vcpu_mib", "images", "code_paths", "functions_root", "cpu", "memory",
    "min_memory_mib", "max_memory_mib", "max_payload_bytes",
)

#: OpenWhisk's defaults: whisk.memory.min / max (MemoryLimit.scala), activation payload max
MIN_MEMORY_MIB = 128
MAX_MEMORY_MIB = 512
MAX_PAYLOAD_BYTES = 1024 * 1024

#: appended to the function's handler.py to make an OpenWhisk python:3 action of it
ADAPTER = '''

# ---- shabari OpenWhisk adapter (generated) -------------------------------------------------
def main(params):
    import base64 as _b64
    import resource as _res
    import time as _time
    import types as _types

    def _cpu():
        s = _res.getrusage(_res.RUSAGE_SELF)
        c = _res.getrusage(_res.RUSAGE_CHILDREN)
        return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime

    cpu = int(params.get("__shabari_cpu_millicores") or 1000)
    ctx = globals().get("_shabari_ctx")
    if ctx is None:
        ctx = _types.SimpleNamespace(function_dir=".", cpu_millicores=cpu,
                                     memory_mib=int(params.get("__shabari_memory_mib") or 0),
                                     threads=max(1, -(-cpu // 1000)), device="cpu", state={})
        globals()["_shabari_ctx"] = ctx
        if "init" in globals():
            globals()["init"](ctx)
    ctx.cpu_millicores, ctx.threads = cpu, max(1, -(-cpu // 1000))
    body = _b64.b64decode(params.get("__shabari_body_b64") or "")
    cpu0, t0 = _cpu(), _time.perf_counter()
    try:
        out = handle(body, params.get("__shabari_content_type") or "", ctx)
    except Exception as exc:  # includes MemoryError: OpenWhisk reports an "application error"
        return {"error": (type(exc).__name__ + ": " + str(exc))[:2000]}
    out, out_type = (out if isinstance(out, tuple) else (out, "application/octet-stream"))
    return {"body_b64": _b64.b64encode(bytes(out)).decode(), "content_type": str(out_type),
            "cpu_seconds": _cpu() - cpu0, "wall_ms": (_time.perf_counter() - t0) * 1000.0,
            "peak_memory_mib": _res.getrusage(_res.RUSAGE_SELF).ru_maxrss / 1024.0}
'''


def action_name(function: str, memory_mib: int) -> str:
    """The size variant of a function: `NAME@<memory MiB>` (e.g. `thumbnail@512`)."""
    return f"{function}@{memory_mib}"


@dataclass(frozen=True, slots=True)
class _ActionSource:
    kind: str  # "python:3" or "blackbox"
    code: str = ""
    image: str = ""


@dataclass
class _Pod:
    pod_id: PodId
    function: str
    action: str
    size: Size
    invocations: int = 0


class OpenWhiskBackend:
    """Size-variant actions on Apache OpenWhisk, driven through its REST API."""

    name = "openwhisk"
    supports_resize = False

    def __init__(self, options: Mapping[str, object] | None = None) -> None:
        opts = dict(options or {})
        b = "openwhisk"
        check_keys(opts, OPTION_KEYS, b)
        api_host = opt_str(opts, "api_host", b)
        if not api_host:
            raise ConfigError("openwhisk backend: option 'api_host' is required "
                              "(e.g. https://openwhisk.example.com)")
        if "://" not in api_host:
            api_host = "https://" + api_host
        self.api_host = api_host.rstrip("/")
        user, sep, key = (opt_str(opts, "auth", b) or "").partition(":")
        if not sep or not user or not key:
            raise ConfigError("openwhisk backend: option 'auth' must be 'uuid:key' "
                              "(the AUTH line of ~/.wskprops)")
        self._authorization = "Basic " + base64.b64encode(f"{user}:{key}".encode()).decode()
        self.namespace = opt_str(opts, "namespace", b, "_") or "_"
        self.insecure = opt_bool(opts, "insecure", b, False)
        self.api_timeout_s = opt_float(opts, "api_timeout_s", b, 10.0)
        #: per-action time limit in ms (OpenWhisk's default maximum is 300000)
        self.action_timeout_ms = opt_int(opts, "action_timeout_ms", b, 60_000)
        self.memory_per_vcpu_mib = (None if opts.get("memory_per_vcpu_mib") is None
                                    else opt_float(opts, "memory_per_vcpu_mib", b, 1.0))
        self.min_memory_mib = opt_int(opts, "min_memory_mib", b, MIN_MEMORY_MIB, minimum=1)
        self.max_memory_mib = opt_int(opts, "max_memory_mib", b, MAX_MEMORY_MIB, minimum=1)
        self.max_payload_bytes = opt_int(opts, "max_payload_bytes", b, MAX_PAYLOAD_BYTES,
                                         minimum=1024)
        self._images = opt_str_mapping(opts, "images", b)
        self._code_paths = {k: Path(v) for k, v in opt_str_mapping(opts, "code_paths", b).items()}
        root = opt_str(opts, "functions_root", b)
        self._functions_root = Path(root) if root else None
        self._nodes = (NodeCapacity(NodeId("openwhisk"),
                                    parse_cpu(str(opts.get("cpu", "64"))),
                                    parse_memory(str(opts.get("memory", "256Gi")))),)
        self._session: aiohttp.ClientSession | None = None
        self._pods: dict[PodId, _Pod] = {}
        self._prepared: dict[str, set[str]] = {}

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                headers={"Authorization": self._authorization},
                connector=aiohttp.TCPConnector(ssl=not self.insecure),
            )

    async def close(self) -> None:
        self._pods.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None

    def nodes(self) -> tuple[NodeCapacity, ...]:
        return self._nodes

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise BackendError("openwhisk backend is not started", detail="call start() first")
        return self._session

    def _url(self, action: str = "") -> str:
        base = f"{self.api_host}/api/v1/namespaces/{self.namespace}/actions"
        return f"{base}/{action}" if action else base

    # -- variants -------------------------------------------------------------------------

    def variant_memory(self, size: Size) -> int:
        """The memory of the action that serves `size` (CPU follows memory on OpenWhisk)."""
        if self.memory_per_vcpu_mib is None:
            return size.memory_mib
        return max(size.memory_mib, math.ceil(size.vcpu * self.memory_per_vcpu_mib))

    def _source(self, function: str) -> _ActionSource:
        if function in self._images:
            return _ActionSource("blackbox", image=self._images[function])
        path = self._code_paths.get(function)
        if path is None:
            root = self._functions_root
            if root is None:
                from shabari.runtime.catalog import functions_root

                root = functions_root()
            path = root / function / "handler.py"
        try:
            code = path.read_text()
        except OSError as exc:
            raise ConfigError(
                f"openwhisk backend: no code for function {function!r}",
                detail=f"{path}: {exc.strerror}; set code_paths or images for it",
            ) from None
        return _ActionSource("python:3", code=code + ADAPTER)

    async def prepare(self, spec: FunctionSpec) -> None:
        """Create (or overwrite) one action per memory variant of the function's grid."""
        if any(s.gpu for s in spec.sizes):
            raise ConfigError(f"openwhisk backend: {spec.name} declares GPU sizes",
                              detail="OpenWhisk actions cannot request GPUs")
        memories = sorted({self.variant_memory(s) for s in spec.sizes})
        outside = [m for m in memories
                   if not self.min_memory_mib <= m <= self.max_memory_mib]
        if outside:
            raise ConfigError(
                f"openwhisk backend: {spec.name} needs action memory "
                f"{', '.join(f'{m} MiB' for m in outside)}, outside this OpenWhisk's "
                f"[{self.min_memory_mib}, {self.max_memory_mib}] MiB",
                detail="shrink the size grid, or raise the deployment's whisk.memory.max "
                "(CONFIG_whisk_memory_max) and set the backend option max_memory_mib to match")
        source = await asyncio.to_thread(self._source, spec.name)  # file I/O off the loop
        done = self._prepared.setdefault(spec.name, set())
        for memory in memories:
            name = action_name(spec.name, memory)
            if name in done:
                continue
            exec_: dict[str, Any] = {"kind": source.kind}
            if source.kind == "blackbox":
                exec_["image"] = source.image
            else:
                exec_["code"] = source.code
                exec_["main"] = "main"
            body = {
                "namespace": self.namespace, "name": name, "exec": exec_,
                "limits": {"memory": memory, "timeout": self.action_timeout_ms},
                "annotations": [{"key": "shabari.dev/function", "value": spec.name},
                                {"key": "shabari.dev/memory-mib", "value": memory}],
            }
            await self._call("PUT", self._url(name), json_body=body,
                             params={"overwrite": "true"})
            done.add(name)

    async def _call(
        self, method: str, url: str, *, json_body: object = None,
        params: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        try:
            async with self.session.request(
                method, url, json=json_body, params=params,
                timeout=aiohttp.ClientTimeout(total=self.api_timeout_s),
            ) as resp:
                raw = await resp.read()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise BackendUnavailableError(
                "OpenWhisk API unavailable", detail=f"{method} {url}: {exc or type(exc).__name__}"
            ) from None
        _raise_for_api_status(status, raw, f"{method} {url}")
        if status == 400:  # OpenWhisk validates limits on PUT: a configuration problem
            raise ConfigError(f"OpenWhisk refused {method} {url.rsplit('/', 1)[-1]}",
                              detail=_error_text(raw))
        if status >= 400:
            raise BackendError(f"OpenWhisk rejected {method} ({status})",
                               detail=_error_text(raw))
        return _json(raw)

    # -- pods -----------------------------------------------------------------------------

    async def start_pod(
        self, pod_id: PodId, spec: FunctionSpec, size: Size, node_id: NodeId
    ) -> PodHandle:
        """OpenWhisk owns its containers: a 'pod' is a handle on the size variant.

        The cold start, if any, happens in the first invocation and is reported there
        (the activation's `initTime`), so the handle says 0.
        """
        if size.gpu:
            raise CapacityError(f"openwhisk backend cannot run {spec.name} at {size}",
                                detail="OpenWhisk actions cannot request GPUs")
        action = action_name(spec.name, self.variant_memory(size))
        if action not in self._prepared.get(spec.name, set()):
            await self.prepare(spec)
        self._pods[pod_id] = _Pod(pod_id, spec.name, action, size)
        return PodHandle(pod_id, spec.name, size, node_id, 0.0)

    async def resize(self, pod_id: PodId, cpu_millicores: int) -> None:
        raise ResizeRejectedError(
            "OpenWhisk cannot resize a running action container", pod_id=pod_id,
            reason="Unsupported", detail="CPU follows memory; use another size variant",
        )

    async def stop_pod(self, pod_id: PodId) -> None:
        self._pods.pop(pod_id, None)

    async def invoke(
        self, pod_id: PodId, body: bytes, content_type: str | None, timeout_s: float
    ) -> InvocationResult:
        pod = self._pods.get(pod_id)
        if pod is None:
            raise BackendError(f"unknown pod {pod_id}", detail="not started by this backend")
        params = {
            "__shabari_body_b64": base64.b64encode(body).decode(),
            "__shabari_content_type": content_type or "",
            "__shabari_cpu_millicores": pod.size.cpu_millicores,
            "__shabari_memory_mib": pod.size.memory_mib,
        }
        query = {"blocking": "true", "result": "false",
                 "timeout": str(int(min(timeout_s, 60.0) * 1000))}
        where = f"action {pod.action}"
        payload = json.dumps(params).encode()
        if len(payload) > self.max_payload_bytes:
            raise PayloadTooLargeError(
                f"input too large for OpenWhisk: {len(body)} bytes",
                detail=f"{where}: {len(payload)} bytes once base64-encoded into the activation "
                f"parameters, over the {self.max_payload_bytes}-byte payload limit (inputs up "
                f"to about {self.max_payload_bytes * 3 // 4 - 1024} bytes fit)")
        t0 = time.perf_counter()
        try:
            async with self.session.post(
                self._url(pod.action), data=payload, params=query,
                headers={"Content-Type": "application/json"},
                timeout=aiohttp.ClientTimeout(total=timeout_s + 1.0),
            ) as resp:
                raw = await resp.read()
                status = resp.status
        except TimeoutError:
            raise timeout_error(timeout_s, (time.perf_counter() - t0) * 1000.0,
                                f" from {where}") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise BackendUnavailableError(
                "OpenWhisk API unavailable", detail=f"invoke {where}: {exc or type(exc).__name__}"
            ) from None
        latency_ms = (time.perf_counter() - t0) * 1000.0
        pod.invocations += 1
        _raise_for_api_status(status, raw, f"invoke {where}")
        if status == 202:  # accepted, still running after the blocking wait
            activation = _json(raw).get("activationId", "?")
            raise timeout_error(timeout_s, latency_ms,
                                f" ({where} still running as activation {activation})")
        if status == 404:
            raise BackendError(f"{where} does not exist", detail="prepare() the function first")
        if status == 413:
            raise PayloadTooLargeError(f"input too large for OpenWhisk: {len(body)} bytes",
                                       detail=f"{where}: {_error_text(raw)}")
        if status not in (200, 502):
            raise BackendError(f"OpenWhisk answered {status} for {where}",
                               detail=_error_text(raw))
        return _result_from_activation(_json(raw), latency_ms, where)


def _raise_for_api_status(status: int, raw: bytes, what: str) -> None:
    if status in (401, 403):
        raise BackendUnavailableError("OpenWhisk authentication failed",
                                      detail=f"{what}: HTTP {status} {_error_text(raw)}")
    if status == 429 or status >= 503 or status == 500:
        raise BackendUnavailableError(f"OpenWhisk answered {status}",
                                      detail=f"{what}: {_error_text(raw)}")


def _json(raw: bytes) -> dict[str, Any]:
    try:
        decoded = json.loads(raw) if raw else {}
    except ValueError:
        return {}
    return cast(dict[str, Any], decoded) if isinstance(decoded, dict) else {}


def _error_text(raw: bytes) -> str:
    decoded = _json(raw)
    if isinstance(decoded.get("error"), str):
        return str(decoded["error"])
    return raw[:300].decode(errors="replace")


def _annotation(activation: Mapping[str, Any], key: str) -> Any:
    for item in activation.get("annotations") or []:
        if isinstance(item, dict) and item.get("key") == key:
            return item.get("value")
    return None


def _number(value: object) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return 0.0


def _result_from_activation(
    activation: Mapping[str, Any], latency_ms: float, where: str
) -> InvocationResult:
    init_ms = _annotation(activation, "initTime")
    cold = init_ms is not None
    # waitTime holds the container's creation on a cold start; initTime only the /init call
    cold_ms = _number(init_ms) + _number(_annotation(activation, "waitTime")) if cold else 0.0
    response = activation.get("response") or {}
    result = response.get("result") or {}
    if not isinstance(result, dict):
        result = {"value": result}
    kind = str(response.get("status") or ("success" if response.get("success") else ""))
    wait_ms = _number(_annotation(activation, "waitTime"))
    duration_ms = _number(activation.get("duration"))
    timing = f"waitTime {wait_ms:.0f} ms, duration {duration_ms:.0f} ms"
    if kind == "success":
        if "body_b64" in result:
            out = base64.b64decode(str(result["body_b64"]))
            out_type = str(result.get("content_type") or "application/octet-stream")
        else:
            out, out_type = json.dumps(result).encode(), "application/json"
        return InvocationResult(out, out_type, Outcome(
            latency_ms=latency_ms, status=OutcomeStatus.OK, cold_start=cold,
            cold_start_ms=cold_ms, cpu_seconds=_number(result.get("cpu_seconds")),
            peak_memory_mib=_number(result.get("peak_memory_mib")), detail=timing,
        ))
    error = str(result.get("error") or result or kind)
    lowered = error.lower()
    if kind == "application error" and not lowered.startswith("memoryerror"):
        # the function raised (the adapter returned {"error": ...}): the input's fault
        return InvocationResult(error.encode(), "text/plain; charset=utf-8", Outcome(
            latency_ms=latency_ms, status=OutcomeStatus.ERROR, cold_start=cold,
            cold_start_ms=cold_ms, detail=error,
        ))
    if lowered.startswith("memoryerror") or (
        "memory" in lowered and ("exhausted" in lowered or "exceeded" in lowered)
    ):
        err = OutOfMemoryError("function ran out of memory", detail=f"{where}: {error}")
        err.outcome = Outcome(
            latency_ms=latency_ms, status=OutcomeStatus.OOM, cold_start=cold,
            cold_start_ms=cold_ms, detail=err.detail)
        raise err
    if "time limit" in lowered or _annotation(activation, "timeout") is True:
        raise timeout_error(duration_ms / 1000.0, latency_ms, f" ({where}: {error})")
    raise_failed(f"{where} failed ({kind or 'unknown status'})", error, latency_ms,
                 cold_start=cold, cold_start_ms=cold_ms)
