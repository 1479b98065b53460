"""Decisions, placements and outcomes: the records that flow through one invocation.

decide -> `Decision` (what size, with which probability, by which model version and why)
place  -> `Placement` (warm pod, warm pod resized in place, cold start, queue or reject)
run    -> `Outcome` (what really happened), then `learn(decision, outcome)`.
The decision log stores exactly these fields, so it can be replayed for off-policy evaluation.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from shabari.core.ids import DecisionId, FunctionName, NodeId, PodId
from shabari.core.spec import Size
from shabari.core.status import OutcomeStatus

__all__ = ["Decision", "NodeCapacity", "Outcome", "OutcomeStatus", "Placement",
           "PlacementKind"]


@dataclass(frozen=True, slots=True)
class NodeCapacity:
    """One node (machine) of the cluster the scheduler places pods on."""

    node_id: NodeId
    cpu_millicores: int
    memory_mib: int
    gpus: int = 0


@dataclass(frozen=True, slots=True)
class Decision:
    decision_id: DecisionId
    function: FunctionName
    size: Size
    action_index: int
    probability: float
    model_version: int
    reason: str
    explored: bool = False
    policy: str = "shabari"


class PlacementKind(enum.Enum):
    WARM = "warm"  # an idle warm pod already of a fitting size
    RESIZE = "resize"  # an idle warm pod whose CPU is changed in place
    COLD = "cold"  # a new pod of the decided size
    QUEUE = "queue"  # nothing fits now; wait for capacity
    REJECT = "reject"  # can never fit (bigger than any node)


@dataclass(frozen=True, slots=True)
class Placement:
    kind: PlacementKind
    size: Size
    pod_id: PodId | None = None
    node_id: NodeId | None = None
    resized_from: Size | None = None
    evict: tuple[PodId, ...] = ()
    reason: str = ""

    @property
    def cold_start(self) -> bool:
        return self.kind is PlacementKind.COLD


@dataclass(frozen=True, slots=True)
class Outcome:
    latency_ms: float
    status: OutcomeStatus = OutcomeStatus.OK
    cold_start: bool = False
    cold_start_ms: float = 0.0
    cpu_seconds: float = 0.0
    peak_memory_mib: float = 0.0
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.status is OutcomeStatus.OK

    @property
    def oom(self) -> bool:
        return self.status is OutcomeStatus.OOM
