"""A synthetic function with known physics, for testing the agent's learning quality.

Latency = fixed overhead + work(input) x Amdahl(CPU): only `parallel` of the work parallelizes
and at most `max_parallel` cores help, so extra cores stop paying off. Peak memory grows with
the input. Both are noisy (log-normal). The SLO of an input is `slowdown` x its best median
latency over the grid (as the simulator defines it, DESIGN 4.5), and the oracle is the smallest
CPU that meets the SLO at the median latency.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from shabari.core import SLO, FunctionName, FunctionSpec, Outcome, OutcomeStatus, Size, size_grid

CPUS = (250, 500, 1000, 2000, 4000)
MEMS = (128, 256, 512, 1024, 2048)


@dataclass(frozen=True)
class SyntheticFunction:
    overhead_ms: float = 30.0
    ms_per_mb: float = 40.0
    parallel: float = 0.9
    max_parallel: float = 2.0
    base_memory_mib: float = 60.0
    memory_per_mb: float = 60.0
    noise: float = 0.05
    slowdown: float = 1.5
    #: input sizes in MB the invocations draw from
    inputs_mb: tuple[float, ...] = (0.05, 0.12, 0.3, 0.7, 1.5, 3.0, 6.0, 12.0, 20.0)

    def spec(self, name: str = "synthetic") -> FunctionSpec:
        return FunctionSpec(name=FunctionName(name), slo=SLO(slowdown=self.slowdown),
                            sizes=size_grid(CPUS, MEMS))

    def median_ms(self, mb: float, cpu_millicores: int) -> float:
        cores = min(cpu_millicores / 1000.0, self.max_parallel)
        work = self.ms_per_mb * mb
        return self.overhead_ms + work * ((1 - self.parallel) + self.parallel / cores)

    def slo_ms(self, mb: float) -> float:
        return self.slowdown * min(self.median_ms(mb, c) for c in CPUS)

    def oracle_cpu(self, mb: float) -> int:
        slo = self.slo_ms(mb)
        return min(c for c in CPUS if self.median_ms(mb, c) <= slo)

    def peak_mib(self, mb: float) -> float:
        return self.base_memory_mib + self.memory_per_mb * mb

    def features(self, mb: float) -> dict[str, float]:
        side = math.sqrt(mb * 1e6 / 3)
        return {"bytes": mb * 1e6, "width": side, "height": side, "megapixels": side * side / 1e6}

    def run(self, mb: float, size: Size, rng: random.Random, *,
            cpu_seconds: bool = False) -> Outcome:
        """One invocation; with `cpu_seconds` the outcome reports the CPU time used: the
        input's work (the fixed overhead is waiting, not computing), capped at the
        allocation."""
        peak = self.peak_mib(mb) * math.exp(rng.gauss(0, self.noise))
        if peak > size.memory_mib:
            return Outcome(latency_ms=50.0, status=OutcomeStatus.OOM,
                           peak_memory_mib=float(size.memory_mib))
        latency = self.median_ms(mb, size.cpu_millicores) * math.exp(rng.gauss(0, self.noise))
        cpu_s = 0.0
        if cpu_seconds:
            work_ms = self.ms_per_mb * mb
            cores = min(size.cpu_millicores / 1000.0, work_ms / latency)
            cpu_s = cores * latency / 1000.0
        return Outcome(latency_ms=latency, peak_memory_mib=peak, cpu_seconds=cpu_s)
