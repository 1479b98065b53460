"""Does a tight memory limit slow a function down? Same inputs, same CPU, two memory limits.

Starts two pods of one bundled function on the local backend (real worker processes under
cgroup limits) at the same CPU and two memories, and runs each chosen input on both,
alternating which goes first, reporting the median latency, CPU seconds and peak per
(input, memory). Written for the demo (docs/demo.md: shabari's 512 MiB classify pods were at
times 1.1-1.3x slower than static-max's 1 GiB ones at the same 2 vCPU); measured, the two
limits were within 7 % of each other either way. Prints numbers, asserts nothing.

    .venv/bin/python bench/memory_limit_speed.py [--function classify] [--cpu 2000] \
        [--memory 512 1024] [--inputs 5] [--repeat 12]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics

from shabari.backends.local import LocalBackend
from shabari.core import Size
from shabari.core.ids import NodeId, PodId
from shabari.runtime.catalog import bundled_functions


async def measure(function: str, cpu: int, memories: list[int], n_inputs: int,
                  repeat: int) -> None:
    fn = bundled_functions()[function]
    spec = fn.spec
    # inputs evenly spaced by size (bytes) over the function's seeded generator
    ranked = sorted(fn.generate_inputs(1, 64), key=lambda x: len(x.body))
    step = max(1, len(ranked) // n_inputs)
    picks = ranked[step - 1::step][:n_inputs]
    backend = LocalBackend({function: fn})
    await backend.start()
    try:
        for mem in memories:
            await backend.start_pod(PodId(f"m{mem}"), spec, Size(cpu, mem), NodeId("local"))
        got: dict[tuple[str, int], list[tuple[float, float, float]]] = {}
        for x in picks:
            for rep in range(repeat):
                order = memories if rep % 2 else memories[::-1]
                for mem in order:
                    r = await backend.invoke(PodId(f"m{mem}"), x.body, x.content_type, 60.0)
                    if rep >= 2:  # the first two warm the pod up
                        o = r.outcome
                        got.setdefault((x.label, mem), []).append(
                            (o.latency_ms, o.cpu_seconds, o.peak_memory_mib))
        for (label, mem), rows in got.items():
            print(f"{label:>24} {mem:>5} MiB  latency p50 "
                  f"{statistics.median(r[0] for r in rows):8.1f} ms  CPU p50 "
                  f"{statistics.median(r[1] for r in rows) * 1000:7.1f} ms  "
                  f"peak {max(r[2] for r in rows):6.0f} MiB")
    finally:
        await backend.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--function", default="classify")
    ap.add_argument("--cpu", type=int, default=2000)
    ap.add_argument("--memory", type=int, nargs="+", default=[512, 1024])
    ap.add_argument("--inputs", type=int, default=5)
    ap.add_argument("--repeat", type=int, default=12)
    a = ap.parse_args()
    asyncio.run(measure(a.function, a.cpu, a.memory, a.inputs, a.repeat))


if __name__ == "__main__":
    main()
