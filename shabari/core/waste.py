"""Wasted resources per invocation, in the Shabari paper's terms (DESIGN 4.5).

The paper reports waste per invocation, as medians: wasted vCPUs = allocated vCPUs -
ceil(peak vCPUs used), wasted memory = allocated MiB - peak MiB used. The simulator computes it
from a performance table's `cpu_used_millicores` / `peak_memory_mib`, the demo from what the
cgroups measured; both call these pure functions so the two reports mean the same thing.

Conventions (docs/metrics.md): usage is capped at the allocation (a throttled or OOM-killed
process cannot have used more than it held), and a waste is never negative (a sub-core
allocation fully used wastes 0, not 1 - ceil(0.25)).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = ["InvocationWaste", "invocation_waste", "used_millicores", "waste_medians",
           "waste_p50"]


@dataclass(frozen=True, slots=True)
class InvocationWaste:
    """One invocation's waste; None where the usage was not measured."""

    vcpus: float | None
    memory_mib: float | None


def used_millicores(cpu_seconds: float, busy_seconds: float) -> float | None:
    """Average CPU used while running (millicores) from CPU time over the busy wall time.

    None when either is not positive (nothing measured). This is the "peak vCPUs used" of an
    invocation measured as cgroup CPU time, the finest a cgroup counter gives per invocation.
    """
    if cpu_seconds <= 0 or busy_seconds <= 0:
        return None
    return cpu_seconds / busy_seconds * 1000.0


def invocation_waste(allocated_millicores: float, allocated_mib: float,
                     used_cpu_millicores: float | None,
                     peak_memory_mib: float | None) -> InvocationWaste:
    """Waste of one invocation at the size it ran at.

    vCPUs: allocated vCPUs - ceil(vCPUs used), usage capped at the allocation, floored at 0.
    Memory: allocated MiB - peak MiB used, floored at 0. Unmeasured usage (None) gives None.
    """
    vcpus: float | None = None
    if used_cpu_millicores is not None:
        alloc = allocated_millicores / 1000.0
        used = min(max(used_cpu_millicores, 0.0) / 1000.0, alloc)
        # round first: 0.9999999 vCPU from a float division is one vCPU, not a wasted one
        vcpus = max(0.0, alloc - math.ceil(round(used, 6)))
    memory: float | None = None
    if peak_memory_mib is not None:
        memory = max(0.0, allocated_mib - min(max(peak_memory_mib, 0.0), allocated_mib))
    return InvocationWaste(vcpus, memory)


def waste_medians(wastes: Iterable[InvocationWaste]) -> dict[str, float]:
    """`{"wasted_vcpus_p50", "wasted_memory_mib_p50"}` over the invocations that measured it.

    A key is absent when no invocation measured that resource (DESIGN 4.5: omitted when the
    table has neither column).
    """
    cpu: list[float] = []
    mem: list[float] = []
    for w in wastes:
        if w.vcpus is not None:
            cpu.append(w.vcpus)
        if w.memory_mib is not None:
            mem.append(w.memory_mib)
    return waste_p50(cpu, mem)


def waste_p50(vcpus: Sequence[float], memory_mib: Sequence[float]) -> dict[str, float]:
    """The medians of already-collected wastes (the simulator keeps two plain lists)."""
    cpu, mem = vcpus, memory_mib
    out: dict[str, float] = {}
    if cpu:
        out["wasted_vcpus_p50"] = round(_median(cpu), 3)
    if mem:
        out["wasted_memory_mib_p50"] = round(_median(mem), 3)
    return out


def _median(values: Sequence[float]) -> float:
    s = sorted(values)
    n = len(s)
    mid = n // 2
    return s[mid] if n % 2 else (s[mid - 1] + s[mid]) / 2.0
