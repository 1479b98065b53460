"""Simulator scale benchmark: cost vs. number of invocations (prints numbers, asserts nothing).

Replays the first N invocations of the Azure 2019 400-function day (../shared/data) for three
values of N through the given policies and reports wall time, simulated invocations per second
the process's CPU time (the machine is shared: CPU time is the steadier figure) and peak RSS, plus the ratio of time per invocation between the largest and the
smallest size (1.0 = perfectly linear).

    .venv/bin/python bench/sim_scale.py [--policies shabari,static-max] [--perf PATH ...]
        [--sizes 65000,130000,259000] [--json bench/sim_scale.json]

With `--breakdown`, it instead replays the whole trace once per policy and prints the SLO
violation rate by the position of an invocation in its function's history (the learning
curve) and by the function's popularity (docs/results.md, "what limits shabari").
"""

from __future__ import annotations

import argparse
import collections
import json
import resource
import sys
import time
from pathlib import Path

from shabari.data.traces import load_azure2019
from shabari.sim.cli import load_perf_sources
from shabari.sim.engine import SimConfig, Workload, run_policy
from shabari.sim.policies import make_policy

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trace", default=str(SHARED / "azure2019-400" / "400_inv.csv"))
    ap.add_argument("--perf", action="append", default=None)
    ap.add_argument("--policies", default="shabari,static-max")
    ap.add_argument("--sizes", default="65000,130000,259000")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", default=None)
    ap.add_argument("--breakdown", action="store_true",
                    help="violation rate by invocation position and function popularity")
    args = ap.parse_args()
    perf = args.perf or [str(SHARED / "vswarm-profile" / "profile.json")]
    t0 = time.perf_counter()
    full = load_azure2019(args.trace, seed=args.seed)
    table = load_perf_sources(perf)
    print(f"loaded {len(full)} invocations in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    if args.breakdown:
        return breakdown(Workload(full, table, SimConfig(seed=args.seed)),
                         args.policies.split(","))
    sizes = [min(int(s), len(full)) for s in args.sizes.split(",")]
    out: dict[str, list[dict[str, float]]] = {}
    for name in args.policies.split(","):
        rows: list[dict[str, float]] = []
        for n in sizes:
            work = Workload(full.head(n), table, SimConfig(seed=args.seed))
            cpu0 = time.process_time()
            res = run_policy(work, make_policy(name, work))
            cpu_s = time.process_time() - cpu0
            rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
            row = {"invocations": n, "wall_seconds": round(res.wall_seconds, 2),
                   "per_second": round(n / res.wall_seconds),
                   "us_per_invocation": round(1e6 * res.wall_seconds / n, 1),
                   "cpu_seconds": round(cpu_s, 2),
                   "per_cpu_second": round(n / cpu_s),
                   "peak_rss_mib": round(rss_mib)}
            rows.append(row)
            print(f"{name:<15} n={n:>7}  {row['wall_seconds']:>7.2f} s  "
                  f"{row['per_second']:>7.0f}/s  {row['us_per_invocation']:>6.1f} us/inv  "
                  f"cpu {row['cpu_seconds']:>7.2f} s ({row['per_cpu_second']:.0f}/cpu-s)  "
                  f"peak RSS {row['peak_rss_mib']:.0f} MiB", flush=True)
        ratio = rows[-1]["us_per_invocation"] / rows[0]["us_per_invocation"]
        cpu_ratio = (rows[-1]["cpu_seconds"] / rows[-1]["invocations"]) / (
            rows[0]["cpu_seconds"] / rows[0]["invocations"])
        print(f"{name:<15} time per invocation, largest/smallest: wall {ratio:.2f}, "
              f"cpu {cpu_ratio:.2f} (1.0 = linear)", flush=True)
        out[name] = rows
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    return 0


def breakdown(work: Workload, policies: list[str]) -> int:
    results = {name: run_policy(work, make_policy(name, work), keep_per_invocation=True)
               for name in policies}
    popularity = collections.Counter(work.function_of)
    seen: collections.Counter[str] = collections.Counter()
    position = []
    for f in work.function_of:
        position.append(seen[f])
        seen[f] += 1

    def show(label: str, idx: list[int]) -> None:
        line = f"{label:<34}{len(idx):>8} inv"
        for name, r in results.items():
            v = sum(1 for i in idx if not r.met_of[i])
            line += f" | {name} {100 * v / max(1, len(idx)):6.2f}%"
        print(line)

    print("violation rate by k-th invocation of its function")
    for lo, hi in ((0, 5), (5, 20), (20, 100), (100, 1000), (1000, 10**9)):
        show(f"  k in [{lo}, {hi})", [i for i, k in enumerate(position) if lo <= k < hi])
    print("violation rate by invocations of the function in the trace")
    for lo, hi in ((1, 10), (10, 100), (100, 1000), (1000, 10000), (10000, 10**9)):
        show(f"  [{lo}, {hi})", [i for i, f in enumerate(work.function_of)
                                 if lo <= popularity[f] < hi])
    return 0


if __name__ == "__main__":
    sys.exit(main())
