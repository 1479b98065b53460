"""Agent settings replayed on the Azure trace (a measurement script, not a test).

    .venv/bin/python tests/agent/agent_trace_sweep.py --minutes 240 default trust
    .venv/bin/python tests/agent/agent_trace_sweep.py --minutes 240 trust_steps=1 vw.gamma_scale=5

Each positional argument is `default` or `field=value,...` overrides of `AgentConfig`
(`vw.field=value` for its `VWConfig`; Python literals); `--minutes 0` replays the whole day. Prints, per variant, the SLO-violation rate, the allocated
vCPU-seconds against the oracle's, the violation rate by k-th invocation of each function, and
the wall time, so agent changes can be judged by the simulator's own numbers. `--by-reason`
adds, per variant, the misses of the popular functions by the agent's decision reason.
"""

from __future__ import annotations

import argparse
import ast
import collections
import dataclasses
import math
import sys
import time
from pathlib import Path

from shabari.agent import AgentConfig, ShabariAgent
from shabari.agent.policy import DecisionContext
from shabari.core.cost import violated
from shabari.core.types import Decision, Outcome
from shabari.data.traces import load_trace
from shabari.sim.cli import load_perf_sources
from shabari.sim.engine import PolicyResult, SimConfig, Workload, run_policy
from shabari.sim.policies import make_policy

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def parse_variant(text: str) -> AgentConfig:
    if text == "default":
        return AgentConfig()
    overrides: dict[str, object] = {}
    vw: dict[str, object] = {}
    ev: dict[str, object] = {}
    for part in text.split(","):
        key, _, value = part.partition("=")
        key = key.strip()
        if key.startswith("vw."):
            vw[key[3:]] = ast.literal_eval(value.strip())
        elif key.startswith("evidence."):
            ev[key[9:]] = ast.literal_eval(value.strip())
        else:
            overrides[key] = ast.literal_eval(value.strip())
    config = dataclasses.replace(AgentConfig(), **overrides)  # type: ignore[arg-type]
    return dataclasses.replace(config, vw=dataclasses.replace(config.vw, **vw),  # type: ignore[arg-type]
                               evidence=dataclasses.replace(config.evidence, **ev))  # type: ignore[arg-type]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("variants", nargs="+")
    ap.add_argument("--trace", default=str(SHARED / "azure2019-400" / "400_inv.csv"))
    ap.add_argument("--perf", action="append", default=None,
                    help="table(s); default the vSwarm profile")
    ap.add_argument("--strip-usage", action="store_true",
                    help="drop peak_memory_mib and cpu_used_millicores from the tables")
    ap.add_argument("--trace-format", default="azure2019")
    ap.add_argument("--baselines", default="",
                    help="comma-separated simulator policies to print beside (e.g. vpa)")
    ap.add_argument("--minutes", type=float, default=240.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--by-reason", action="store_true",
                    help="also break each variant's misses down by the agent's decision reason "
                         "(sure / possible / probe / ...) for functions with >= 1000 invocations")
    args = ap.parse_args()
    minutes = args.minutes if args.minutes > 0 else None
    trace = load_trace(args.trace, args.trace_format, minutes=minutes, seed=args.seed)
    perf = args.perf or [str(SHARED / "vswarm-profile" / "profile.json")]
    work = Workload(trace, load_perf_sources(perf, strip_usage=args.strip_usage),
                    SimConfig(seed=args.seed))
    oracle = run_policy(work, make_policy("oracle", work), keep_per_invocation=True)
    seen: collections.Counter[str] = collections.Counter()
    position = []
    for f in work.function_of:
        position.append(seen[f])
        seen[f] += 1
    bands = ((0, 20), (20, 100), (100, 1000), (1000, 10**9))

    small = {f for f, c in seen.items() if c < 100}
    small_idx = [i for i, f in enumerate(work.function_of) if f in small]

    def by_band(met: list[bool]) -> str:
        out = [f"fn<100/day {100 * sum(not met[i] for i in small_idx) / max(1, len(small_idx)):5.2f}%"]
        for lo, hi in bands:
            idx = [i for i, k in enumerate(position) if lo <= k < hi]
            v = sum(1 for i in idx if not met[i])
            out.append(f"[{lo},{hi if hi < 10**9 else 'inf'}) {100 * v / max(1, len(idx)):5.2f}%")
        return " ".join(out)

    print(f"{len(work)} invocations; oracle {100 * oracle.slo_violation_rate:.2f}% "
          f"{oracle.allocated_vcpu_seconds:,.0f} vCPU-s "
          f"{oracle.allocated_memory_gib_seconds:,.0f} GiB-s {oracle.cold_starts} cold | "
          f"{by_band(oracle.met_of)}", flush=True)

    def line(text: str, res: PolicyResult, wall: float) -> None:
        print(f"{text:<40} {100 * res.slo_violation_rate:5.2f}% viol ({res.failures} fail) "
              f"{res.allocated_vcpu_seconds / oracle.allocated_vcpu_seconds:.3f}x vCPU "
              f"{res.allocated_memory_gib_seconds / oracle.allocated_memory_gib_seconds:.3f}x "
              f"GiB-s {res.cold_starts} cold {len(work) / wall:,.0f}/s | "
              f"{by_band(res.met_of)}", flush=True)

    for name in filter(None, args.baselines.split(",")):
        t0 = time.perf_counter()
        res = run_policy(work, make_policy(name, work), keep_per_invocation=True)
        line(name, res, time.perf_counter() - t0)
    for text in args.variants:
        agent = (ReasonRecorder if args.by_reason else ShabariAgent)(args.seed, parse_variant(text))
        t0 = time.perf_counter()
        res = run_policy(work, agent, keep_per_invocation=True)
        line(text, res, time.perf_counter() - t0)
        if isinstance(agent, ReasonRecorder):
            popular = {f for f, c in seen.items() if c >= 1000}
            print(agent.breakdown(popular), flush=True)
    return 0


class ReasonRecorder(ShabariAgent):
    """The agent, counting every outcome it learns by its decision's reason (its first word)
    and whether it missed the SLO: where the misses come from."""

    def __init__(self, seed: int, config: AgentConfig) -> None:
        super().__init__(seed, config)
        self.runs: collections.Counter[tuple[str, str, bool]] = collections.Counter()

    def learn(self, ctx: DecisionContext, decision: Decision, outcome: Outcome) -> None:
        missed = violated(outcome, math.inf if ctx.slo_ms is None else ctx.slo_ms)
        reason = decision.reason.split(" ")[0].rstrip(":")
        self.runs[(str(ctx.spec.name), reason, missed)] += 1
        super().learn(ctx, decision, outcome)

    def breakdown(self, functions: set[str]) -> str:
        total: collections.Counter[str] = collections.Counter()
        missed: collections.Counter[str] = collections.Counter()
        for (fn, reason, miss), n in self.runs.items():
            if fn in functions:
                total[reason] += n
                missed[reason] += n if miss else 0
        return "  functions >= 1000 invocations, by reason: " + ", ".join(
            f"{r} {missed[r]:,}/{n:,} missed ({100 * missed[r] / n:.1f}%)"
            for r, n in total.most_common())


if __name__ == "__main__":
    sys.exit(main())
