"""Small hand-made performance tables and traces shared by the simulator tests."""

from __future__ import annotations

from shabari.core import Size
from shabari.data.perf import PerfRow, PerfTable
from shabari.data.traces import Arrival, Trace

CPUS = (250, 500, 1000, 2000)
MEMS = (128, 512)


def cpu_bound_table(*, cold_start_ms: float = 0.0, peak_mib: float = 100.0) -> PerfTable:
    """`work` ms of single-core work per input, parallel up to `par` millicores (so sizes
    above `par` do not help); one sample per cell (deterministic); memory below `peak_mib`
    fails."""
    rows = []
    for fn, works in (("resize", ((40.0, 500), (400.0, 1000), (4000.0, 2000))),
                      ("hash", ((10.0, 250), (20.0, 500)))):
        for k, (work, par) in enumerate(works):
            for cpu in CPUS:
                for mem in MEMS:
                    lat = work * 1000.0 / min(cpu, par)
                    rows.append(PerfRow(fn, f"in{k}", cpu, mem, lat, mem >= peak_mib,
                                        {"work": work}, cold_start_ms=cold_start_ms,
                                        peak_memory_mib=peak_mib,
                                        cpu_used_millicores=float(cpu)))
    return PerfTable(rows, source="handmade")


def small_trace(n_functions: int = 6, per_function: int = 40, gap_s: float = 0.7) -> Trace:
    arrivals = [Arrival(round(j * gap_s + f * 0.013, 3), f"fn{f}")
                for f in range(n_functions) for j in range(per_function)]
    arrivals.sort(key=lambda a: a.time_s)
    return Trace("handmade", tuple(arrivals))


def grid() -> tuple[Size, ...]:
    return tuple(Size(c, m) for c in CPUS for m in MEMS)


def noisy_memory_twins_table() -> PerfTable:
    """Memory sizes that cannot matter (both are above the peak) disagree by measurement
    noise, as on a shared profiling machine: for input `in0` the 128Mi twin is 1.6x slower,
    for `in1` the 512Mi twin is. Speed depends on CPU alone; the noise is the table's. So a
    clairvoyant oracle decides 512Mi for in0 and 128Mi for in1, and in1 often runs on an idle
    in0 pod (more memory than decided)."""
    rows = []
    for k, work in enumerate((400.0, 400.0)):
        for cpu in CPUS:
            for j, mem in enumerate(MEMS):
                lat = work * 1000.0 / cpu * (1.6 if j == 1 - k else 1.0)
                rows.append(PerfRow("resize", f"in{k}", cpu, mem, lat, True, {"work": work},
                                    cold_start_ms=0.0, peak_memory_mib=50.0,
                                    cpu_used_millicores=float(cpu)))
    return PerfTable(rows, source="handmade-noisy")
