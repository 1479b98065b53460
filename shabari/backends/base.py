"""The Backend protocol: the thin edge between the gateway and a platform.

The gateway owns the decision (agent) and the pool model (scheduler); a backend only carries
out what they decided: start a pod of a size, resize a pod's CPU in place, run one invocation
on a pod, stop a pod. Backends never decide sizes. Errors are raised from the
`shabari.core.errors` tree (`BackendUnavailableError`, `FunctionFailedError`,
`OutOfMemoryError`, `InvocationTimeoutError`) so the gateway maps them to HTTP uniformly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from shabari.core import FunctionSpec, NodeCapacity, NodeId, Outcome, PodId, Size

__all__ = ["Backend", "InvocationResult", "NodeCapacity", "PodHandle", "platform_limitations"]


@dataclass(frozen=True, slots=True)
class PodHandle:
    """A started pod: where it runs, at what size, and what its cold start cost."""

    pod_id: PodId
    function: str
    size: Size
    node_id: NodeId
    cold_start_ms: float


@dataclass(frozen=True, slots=True)
class InvocationResult:
    """The function's response plus what was measured while it ran.

    `outcome.status` is OK or ERROR (the function raised: `body` holds its error text);
    OOM, crashes and timeouts are raised as exceptions *and* carry an `Outcome` on the
    exception's `outcome` attribute so the agent can still learn from them.
    """

    body: bytes
    content_type: str
    outcome: Outcome


@runtime_checkable
class Backend(Protocol):
    name: str
    #: can a running pod's CPU be changed without a restart?
    supports_resize: bool

    async def start(self) -> None: ...

    async def close(self) -> None:
        """Stop every pod and release platform resources (cgroups, watches)."""

    def nodes(self) -> tuple[NodeCapacity, ...]: ...

    async def prepare(self, spec: FunctionSpec) -> None:
        """Make the function runnable (images, variants, actions); idempotent."""

    async def start_pod(
        self, pod_id: PodId, spec: FunctionSpec, size: Size, node_id: NodeId
    ) -> PodHandle:
        """Start a pod with the id the scheduler gave it; return once it is ready."""

    async def resize(self, pod_id: PodId, cpu_millicores: int) -> None: ...

    async def invoke(
        self, pod_id: PodId, body: bytes, content_type: str | None, timeout_s: float
    ) -> InvocationResult: ...

    async def stop_pod(self, pod_id: PodId) -> None: ...


def platform_limitations(backend: object) -> dict[str, str]:
    """What the platform cannot do that the mode needs, {code: why} (optional backend method
    `limitations()`; e.g. the kubernetes backend's static CPU manager nodes)."""
    method = getattr(backend, "limitations", None)
    if method is None:
        return {}
    found = method()
    return {str(k): str(v) for k, v in found.items()} if isinstance(found, dict) else {}
