"""Micro benchmark of the scheduler's hot path: place + commit + release per second.

Why: the simulator replays ~260k invocations x 7 policies through the same Scheduler and the
gateway calls it on every request, so its cost per invocation must stay in microseconds.
The workload is shaped like the Azure traces: 400 functions with Zipf-like popularity, a
per-function size grid (the agent's decision varies per invocation), thousands of pods on a
64-node cluster, a bounded number of invocations in flight, simulated time moving forward and
keep-alive expiry called as a driver would. Prints numbers; asserts nothing.

    .venv/bin/python bench/scheduler_bench.py [--invocations N] [--in-flight K] [--json OUT]
"""

from __future__ import annotations

import argparse
import heapq
import json
import random
import sys
import time
from collections import Counter

from shabari.core import FunctionName, NodeCapacity, NodeId, PlacementKind, PodId, Size
from shabari.scheduler import Scheduler, SchedulerConfig


def run(invocations: int, functions: int, in_flight: int, nodes: int, seed: int,
        resize: bool, mean_duration_s: float = 0.5) -> dict[str, object]:
    rng = random.Random(seed)
    cluster = [NodeCapacity(NodeId(f"node-{i}"), 32_000, 131_072) for i in range(nodes)]
    sched = Scheduler(cluster, SchedulerConfig(keep_alive_s=600, supports_resize=resize))
    names = [FunctionName(f"fn-{i:03d}") for i in range(functions)]
    weights = [1.0 / (i + 1) ** 0.8 for i in range(functions)]
    cpus = (250, 500, 1000, 2000, 4000)
    mems = (128, 256, 512, 1024, 2048)
    grids = {f: [Size(c, m) for c in rng.sample(cpus, 3) for m in rng.sample(mems, 2)]
             for f in names}
    # pre-draw the workload so the timed loop measures the scheduler, not random
    picks = rng.choices(names, weights, k=invocations)
    sizes = [rng.choice(grids[f]) for f in picks]
    durations = [rng.expovariate(1 / mean_duration_s) for _ in range(invocations)]

    running: list[tuple[float, PodId]] = []  # heap of (finish time, pod)
    kinds: Counter[str] = Counter()
    place_ns: list[int] = []
    now = 0.0
    peak_pods = 0
    expired = 0
    gap = mean_duration_s / in_flight  # arrival spacing that keeps ~in_flight running
    t0 = time.perf_counter()
    c0 = time.process_time()
    for i in range(invocations):
        now += gap
        while running and running[0][0] <= now:
            sched.release(heapq.heappop(running)[1], now)
        a = time.perf_counter_ns()
        p = sched.place(picks[i], sizes[i], now, cold_start_ms=500.0, busy_wait_ms=None)
        b = time.perf_counter_ns()
        place_ns.append(b - a)
        kinds[p.kind.value] += 1
        if p.kind in (PlacementKind.QUEUE, PlacementKind.REJECT):
            continue  # a driver would retry later; here it is dropped
        pod = sched.commit(p, picks[i], now, cold_start_ms=500.0)
        heapq.heappush(running, (now + durations[i], pod.pod_id))
        if i % 256 == 0:
            expired += len(sched.expire(now))
            peak_pods = max(peak_pods, sched.usage().pods)
    wall = time.perf_counter() - t0
    cpu = time.process_time() - c0
    place_ns.sort()
    usage = sched.usage(now)
    return {
        "invocations": invocations,
        "functions": functions,
        "nodes": nodes,
        "supports_resize": resize,
        "in_flight": in_flight,
        "per_second": round(invocations / wall),
        "us_per_invocation": round(wall / invocations * 1e6, 2),
        # CPU time: the number to compare on a shared machine (wall includes preemption)
        "per_cpu_second": round(invocations / cpu),
        "cpu_us_per_invocation": round(cpu / invocations * 1e6, 2),
        "place_us_p50": round(place_ns[len(place_ns) // 2] / 1000, 2),
        "place_us_p99": round(place_ns[int(len(place_ns) * 0.99)] / 1000, 2),
        "placements": dict(kinds),
        "peak_pods": peak_pods,
        "final_pods": usage.pods,
        "final_idle_pods": usage.pods_idle,
        "expired": expired,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--invocations", type=int, default=200_000)
    ap.add_argument("--functions", type=int, default=400)
    ap.add_argument("--in-flight", type=int, default=2000,
                    help="invocations running at once on average (each holds a busy pod)")
    ap.add_argument("--nodes", type=int, default=128, help="nodes of 32 vCPU x 128 GiB")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args(argv)
    results = [run(args.invocations, args.functions, args.in_flight, args.nodes, args.seed,
                   resize) for resize in (True, False)]
    for r in results:
        print(f"resize={r['supports_resize']!s:5}  {r['per_second']:>8,} place+commit+release/s"
              f" wall, {r['per_cpu_second']:>8,}/CPU-s"
              f"  ({r['cpu_us_per_invocation']} CPU-us each; place p50 {r['place_us_p50']} us,"
              f" p99 {r['place_us_p99']} us)  peak pods {r['peak_pods']},"
              f" placements {r['placements']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
