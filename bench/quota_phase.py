"""How much of a run's latency under a CFS quota is the wait for the next period?

Under a quota of `c` millicores a pod may use `c/1000 x 100 ms` of CPU per 100 ms period. A run
that needs a little more than that may finish without waiting or wait out most of a period,
depending on where in the period it starts, so its latency at a small size is close to
bimodal. The demo's remaining compress misses are such runs (docs/demo.md). This bench runs
one input of a bundled function many times on pods of two sizes on the local backend (real
workers under cgroup limits), after random idle gaps (so runs start at random phases), and
prints per run the latency, the CPU time the worker measured and the time the kernel
throttled the pod (`cpu.stat`), sorted by latency. Prints numbers, asserts nothing.

    .venv/bin/python bench/quota_phase.py [--function compress] [--bytes 414000] \
        [--cpu 500 1000] [--runs 25] [--seed 0]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics

from shabari.backends.local import LocalBackend
from shabari.core import Size
from shabari.core.ids import NodeId, PodId
from shabari.runtime.catalog import bundled_functions


async def measure(function: str, size_bytes: int, cpus: list[int], memory_mib: int, runs: int,
                  seed: int) -> None:
    fn = bundled_functions()[function]
    x = min(fn.generate_inputs(1, 64), key=lambda g: abs(len(g.body) - size_bytes))
    print(f"{function} input {x.label} ({len(x.body)} bytes), {runs} runs per size")
    backend = LocalBackend({function: fn})
    await backend.start()
    try:
        for cpu in cpus:
            pod = PodId(f"q{cpu}")
            await backend.start_pod(pod, fn.spec, Size(cpu, memory_mib), NodeId("local"))
            cgroup = backend.cgroup_of(pod)
            if cgroup is None or cgroup.throttled_ms() is None:
                print("no cgroup throttling counters here (needs writable cgroups)")
                return
            rnd = random.Random(seed)
            rows: list[tuple[float, float, float]] = []
            for _ in range(runs):
                await asyncio.sleep(rnd.uniform(0.05, 0.3))
                t0 = cgroup.throttled_ms() or 0.0
                r = await backend.invoke(pod, x.body, x.content_type, 60.0)
                t1 = cgroup.throttled_ms() or 0.0
                rows.append((r.outcome.latency_ms, r.outcome.cpu_seconds * 1000.0, t1 - t0))
            rows.sort()
            lat = [r[0] for r in rows]
            print(f"{cpu:>5}m: latency p50 {statistics.median(lat):6.1f} ms, "
                  f"min {lat[0]:6.1f}, max {lat[-1]:6.1f}; throttled in "
                  f"{sum(r[2] > 0 for r in rows)} of {runs} runs")
            print("        (latency, CPU, throttled) ms: " + ", ".join(
                f"({a:.0f}, {b:.0f}, {c:.0f})" for a, b, c in rows))
            await backend.stop_pod(pod)
    finally:
        await backend.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--function", default="compress")
    ap.add_argument("--bytes", type=int, default=414_000, help="pick the input nearest this size")
    ap.add_argument("--cpu", type=int, nargs="+", default=[500, 1000])
    ap.add_argument("--memory", type=int, default=128)
    ap.add_argument("--runs", type=int, default=25)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    asyncio.run(measure(a.function, a.bytes, a.cpu, a.memory, a.runs, a.seed))


if __name__ == "__main__":
    main()
