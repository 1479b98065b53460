"""The least median waste any sizing could reach on a workload (prints numbers, asserts nothing).

For each invocation of the simulated day (the same seeded mapping and input draws as `shabari
simulate`), the smallest waste in the paper's terms (shabari.core.waste) over the sizes of its
function's grid at which the input runs (memory at least its peak); then the medians. It is the
floor the grid itself sets: when the smallest memory option is far above what the inputs use,
no policy, per invocation or per function, can waste less (docs/results.md, the headline).

    .venv/bin/python bench/waste_floor.py --trace ../shared/data/azure2019-400/400_inv.csv \
        --perf PATH [--perf PATH ...] [--seed 1]
"""

from __future__ import annotations

import argparse
import math
import statistics

from shabari.core.waste import invocation_waste
from shabari.data.traces import load_trace
from shabari.sim.cli import load_perf_sources
from shabari.sim.engine import SimConfig, Workload


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trace", required=True)
    ap.add_argument("--trace-format", default="azure2019")
    ap.add_argument("--perf", action="append", required=True)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    table = load_perf_sources(args.perf)
    trace = load_trace(args.trace, args.trace_format, seed=args.seed)
    work = Workload(trace, table, SimConfig(seed=args.seed))
    best: dict[tuple[str, str], tuple[float, float]] = {}
    mem: list[float] = []
    cpu: list[float] = []
    for i in range(len(work)):
        key = (work.mapping[work.function_of[i]], work.input_of[i])
        if key not in best:
            pf, inp = key
            m_best = c_best = math.inf
            for s in table.sizes(pf):
                if not table.has_size(pf, inp, s):
                    continue
                peak = table.peak_memory_mib(pf, inp, s)
                w = invocation_waste(s.cpu_millicores, s.memory_mib,
                                     table.cpu_used_millicores(pf, inp, s), peak)
                if w.memory_mib is not None and peak is not None and peak <= s.memory_mib:
                    m_best = min(m_best, w.memory_mib)
                if w.vcpus is not None:
                    c_best = min(c_best, w.vcpus)
            best[key] = (c_best, m_best)
        c_best, m_best = best[key]
        if math.isfinite(m_best):
            mem.append(m_best)
        if math.isfinite(c_best):
            cpu.append(c_best)
    print(f"seed {args.seed}: least possible median wasted memory "
          f"{statistics.median(mem) if mem else float('nan'):.2f} MiB, wasted vCPUs "
          f"{statistics.median(cpu) if cpu else float('nan'):.2f} "
          f"({len(mem)} of {len(work)} invocations measured)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
