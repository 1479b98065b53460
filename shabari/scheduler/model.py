"""Read-only views of the pool the scheduler models: pods, nodes and cluster totals.

The scheduler keeps its own mutable bookkeeping private and hands out these frozen snapshots,
so a caller (gateway metrics, simulator accounting, tests) can never corrupt its indexes.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from shabari.core.ids import FunctionName, NodeId, PodId
from shabari.core.spec import Size
from shabari.core.types import NodeCapacity


@dataclass(frozen=True, slots=True)
class Pod:
    """One pod (a warm worker of one function) as the scheduler sees it at snapshot time."""

    pod_id: PodId
    function: FunctionName
    #: current size (CPU may change in place; memory and GPU never do)
    size: Size
    node_id: NodeId
    #: serving an invocation (a pod that is still starting is busy with its first one)
    busy: bool
    #: when the cold start completes (seconds, caller's clock)
    ready_at: float
    #: when it last finished an invocation (or started, for a pod that never finished one)
    last_used: float
    started_at: float
    #: invocations placed on it so far
    invocations: int = 0

    def starting(self, now: float) -> bool:
        return now < self.ready_at

    @property
    def idle(self) -> bool:
        return not self.busy


@dataclass(frozen=True, slots=True)
class NodeUsage:
    """One node's capacity and what the pods on it hold (busy, starting and idle alike)."""

    node: NodeCapacity
    cpu_millicores: int
    memory_mib: int
    gpus: int
    pods: int

    @property
    def free_cpu_millicores(self) -> int:
        return self.node.cpu_millicores - self.cpu_millicores

    @property
    def free_memory_mib(self) -> int:
        return self.node.memory_mib - self.memory_mib

    @property
    def free_gpus(self) -> int:
        return self.node.gpus - self.gpus


@dataclass(frozen=True, slots=True)
class ClusterUsage:
    """Cluster totals for metrics and the simulator's allocated/idle accounting.

    `allocated_*` is held by every pod (busy, starting or idle); `idle_*` by idle warm pods
    only (DESIGN 4.5: warm pods held while serving nothing). `pods_starting` is counted only
    when `usage(now)` is given the time; otherwise starting pods are part of `pods_busy`.
    """

    nodes: int
    capacity_cpu_millicores: int
    capacity_memory_mib: int
    capacity_gpus: int
    allocated_cpu_millicores: int
    allocated_memory_mib: int
    allocated_gpus: int
    idle_cpu_millicores: int
    idle_memory_mib: int
    idle_gpus: int
    pods: int
    pods_busy: int
    pods_idle: int
    pods_starting: int = 0


class PodEventKind(enum.Enum):
    """What happened to a pod in the scheduler's model (the one owner of pod state)."""

    #: a new pod was committed for a cold start; it is busy with its first invocation
    STARTED = "started"
    #: an idle pod took an invocation (possibly resized in place), or its resize was undone
    BUSY = "busy"
    #: the pod's invocation ended: it is idle and warm
    IDLE = "idle"
    #: the pod left the model (evicted, expired, removed after a failure, shut down)
    STOPPED = "stopped"


class PodEvent:
    """One pod transition at `time` (caller's clock). `size` is the pod's size after it.

    Consumers integrate size x time from these (the gateway's `PoolLedger`, the simulator's
    accounting): busy from STARTED/BUSY to IDLE/STOPPED, idle from IDLE to BUSY/STOPPED. An
    expired pod stops at its keep-alive deadline, whenever the expiry is noticed.
    """

    __slots__ = ("function", "kind", "pod_id", "size", "time")

    def __init__(self, kind: PodEventKind, pod_id: PodId, function: FunctionName, size: Size,
                 time: float) -> None:
        self.kind = kind
        self.pod_id = pod_id
        self.function = function
        self.size = size
        self.time = time

    def __repr__(self) -> str:
        return (f"PodEvent({self.kind.value}, {self.pod_id}, {self.function}, {self.size}, "
                f"{self.time:.6f})")
