"""A virtual clock for asyncio, and a platform that runs invocations from a performance table.

`VirtualClockLoop` never sleeps: when nothing is ready it jumps its clock to the next timer,
exactly to that timer's deadline, so a gateway on this loop sees the same float times the
simulator computes. `TableBackend` is a real `Backend` whose pods run invocations as the
simulator's platform model does (`Workload.execute`): it sleeps cold starts, resizes and
execution times on that clock, and raises the backend's own errors for OOM and timeouts.
"""

from __future__ import annotations

import asyncio
import heapq
import json
from collections.abc import Callable
from typing import Any

from shabari.backends.base import InvocationResult, PodHandle
from shabari.core import FunctionSpec, NodeCapacity, NodeId, OutcomeStatus, PodId, Size
from shabari.core.errors import BackendError, InvocationTimeoutError, OutOfMemoryError
from shabari.sim.engine import Workload


class _JumpingSelector:
    def __init__(self, loop: VirtualClockLoop, inner: Any) -> None:
        self._loop = loop
        self._inner = inner

    def select(self, timeout: float | None = None) -> Any:
        loop = self._loop
        if timeout is None or timeout > 0:
            scheduled = loop._scheduled  # type: ignore[attr-defined]
            if scheduled:
                loop.now = max(loop.now, scheduled[0]._when)
            elif timeout is None:
                raise RuntimeError("virtual clock: nothing scheduled and nothing ready")
        return self._inner.select(0)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class _FifoTimer(asyncio.TimerHandle):
    """A timer that, at equal deadlines, fires after those scheduled before it (the
    simulator's event heap breaks ties the same way)."""

    __slots__ = ("_seq",)

    def __init__(self, seq: int, *args: Any) -> None:
        super().__init__(*args)
        self._seq = seq

    def __lt__(self, other: object) -> bool:
        if isinstance(other, _FifoTimer):
            return (self._when, self._seq) < (other._when, other._seq)
        return NotImplemented


class VirtualClockLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0
        self._seq = 0
        self._selector = _JumpingSelector(self, self._selector)  # type: ignore[has-type]

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Any, *args: Any,
                context: Any = None) -> asyncio.TimerHandle:
        self._seq += 1
        timer = _FifoTimer(self._seq, when, callback, args, self, context)
        heapq.heappush(self._scheduled, timer)  # type: ignore[attr-defined]
        timer._scheduled = True  # type: ignore[attr-defined]
        return timer


class TableBackend:
    """Pods that run what the performance table says, on the loop's (virtual) clock."""

    name = "table"

    def __init__(self, work: Workload, decided: Callable[[PodId], Size]) -> None:
        self.work = work
        self.supports_resize = work.config.supports_resize
        self._decided = decided
        self.pods: dict[PodId, Size] = {}
        self.attempts: dict[int, int] = {}
        self.started = 0

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        self.pods.clear()

    def nodes(self) -> tuple[NodeCapacity, ...]:
        return tuple(self.work.config.node_capacities())

    async def prepare(self, spec: FunctionSpec) -> None:
        return None

    async def start_pod(self, pod_id: PodId, spec: FunctionSpec, size: Size,
                        node_id: NodeId) -> PodHandle:
        cold_ms = self.work.cold_ms[self.work.mapping[spec.name]]
        await asyncio.sleep(cold_ms / 1000.0)
        self.pods[pod_id] = size
        self.started += 1
        return PodHandle(pod_id, spec.name, size, node_id, cold_ms)

    async def resize(self, pod_id: PodId, cpu_millicores: int) -> None:
        await asyncio.sleep(self.work.config.resize_latency_ms / 1000.0)
        self.pods[pod_id] = self.pods[pod_id].with_cpu(cpu_millicores)

    async def invoke(self, pod_id: PodId, body: bytes, content_type: str | None,
                     timeout_s: float) -> InvocationResult:
        i = int(json.loads(body)["i"])
        attempt = self.attempts[i] = self.attempts.get(i, 0) + 1
        measured, exec_ms = self.work.execute(i, attempt, self.pods[pod_id],
                                              self._decided(pod_id))
        await asyncio.sleep(exec_ms / 1000.0)
        if measured.status is OutcomeStatus.OK:
            return InvocationResult(b"done", "text/plain", measured)
        err: BackendError = (OutOfMemoryError("out of memory")
                             if measured.status is OutcomeStatus.OOM
                             else InvocationTimeoutError("timed out"))
        err.outcome = measured
        raise err

    async def stop_pod(self, pod_id: PodId) -> None:
        self.pods.pop(pod_id, None)
