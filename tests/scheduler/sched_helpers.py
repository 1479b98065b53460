"""Shared builders for the scheduler tests: a small cluster and a fake clock."""

from __future__ import annotations

from shabari.core import FunctionName, NodeCapacity, NodeId, Placement, PlacementKind, Size
from shabari.scheduler import Pod, Scheduler, SchedulerConfig

F = FunctionName("resize-image")
G = FunctionName("transcode")


def nodes(n: int = 2, cpu: int = 4000, mem: int = 8192, gpus: int = 0) -> list[NodeCapacity]:
    return [NodeCapacity(NodeId(f"n{i}"), cpu, mem, gpus) for i in range(n)]


class Clock:
    """A fake clock: tests move time explicitly."""

    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, s: float) -> float:
        self.t += s
        return self.t


def run(s: Scheduler, function: FunctionName, size: Size, now: float,
        cold_start_ms: float = 0.0) -> tuple[Placement, Pod]:
    """place + commit, asserting the placement is runnable."""
    p = s.place(function, size, now)
    assert p.kind in (PlacementKind.WARM, PlacementKind.RESIZE, PlacementKind.COLD), p
    return p, s.commit(p, function, now, cold_start_ms=cold_start_ms)


def warm_pod(s: Scheduler, function: FunctionName, size: Size, now: float) -> Pod:
    """A pod of `size` that served one invocation and is idle at `now`."""
    p = s.place(function, size, now)
    assert p.kind is PlacementKind.COLD, p
    pod = s.commit(p, function, now)
    s.release(pod.pod_id, now)
    return pod


def warm_pods(s: Scheduler, function: FunctionName, sizes: list[Size], now: float) -> list[Pod]:
    """Cold-start one pod per size (all busy at once, so none is reused), then release them
    in order: the last one is the most recently used."""
    pods = []
    for size in sizes:
        p = s.place(function, size, now)
        assert p.kind is PlacementKind.COLD, p
        pods.append(s.commit(p, function, now))
    for pod in pods:
        s.release(pod.pod_id, now)
    return pods


def sched(n: int = 2, cpu: int = 4000, mem: int = 8192, gpus: int = 0,
          **config: object) -> Scheduler:
    return Scheduler(nodes(n, cpu, mem, gpus), SchedulerConfig(**config))  # type: ignore[arg-type]
