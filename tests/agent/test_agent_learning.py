"""What the agent learns, as relations: against static-default, without peak readings, from
other functions (the cross-function prior), and with and without CPU readings."""

from __future__ import annotations

import math
import random
from dataclasses import replace

from agent_synthetic import SyntheticFunction

from shabari.agent import AgentConfig, ShabariAgent, StaticDefault
from shabari.agent.policy import Policy
from shabari.core import (
    SLO,
    DecisionContext,
    FunctionName,
    FunctionSpec,
    Outcome,
    OutcomeStatus,
    Size,
    size_grid,
)

CPUS = (250, 500, 1000, 2000, 4000)
MEMS = (128, 256, 512, 1024, 2048)


def spec_with_default(name: str) -> FunctionSpec:
    return FunctionSpec(FunctionName(name), SLO(slowdown=1.5), size_grid(CPUS, MEMS),
                        default_size=Size(1000, 1024))


def run(policy: Policy, fn: SyntheticFunction, spec: FunctionSpec, n: int, seed: int,
        *, peaks: bool = True) -> tuple[list[bool], list[Size], int]:
    """Drive `policy` like the simulator: decide, run, learn, one OOM retry. Returns per
    invocation whether it met its SLO and the size it ran at, and the number of OOMs."""
    rng = random.Random(seed)
    met: list[bool] = []
    sizes: list[Size] = []
    ooms = 0
    for i in range(n):
        mb = rng.choice(fn.inputs_mb)
        slo = fn.slo_ms(mb)
        ctx = DecisionContext(spec, fn.features(mb), now=float(i), slo_ms=slo)
        d = policy.decide(ctx)
        out = fn.run(mb, d.size, rng, cpu_seconds=True)
        if not peaks:
            out = replace(out, peak_memory_mib=0.0)
        policy.learn(ctx, d, out)
        latency = out.latency_ms
        if out.oom:
            ooms += 1
            retry = getattr(policy, "escalate", lambda c, x: None)(ctx, d)
            if retry is not None:
                d = retry
                out = fn.run(mb, d.size, rng, cpu_seconds=True)
                if not peaks:
                    out = replace(out, peak_memory_mib=0.0)
                policy.learn(ctx, d, out)
                latency += out.latency_ms
        met.append(out.ok and latency <= slo)
        sizes.append(d.size)
    return met, sizes, ooms


class TestAgainstStaticDefault:
    def test_fewer_violations_and_less_memory_after_200_invocations(self) -> None:
        fn = SyntheticFunction()
        spec = spec_with_default("f")
        a_met, a_sizes, _ = run(ShabariAgent(1), fn, spec, 400, seed=3)
        s_met, s_sizes, _ = run(StaticDefault(), fn, spec, 400, seed=3)
        tail = slice(200, 400)
        assert a_met[tail].count(False) < s_met[tail].count(False)
        assert sum(s.memory_mib for s in a_sizes[tail]) < sum(s.memory_mib for s in s_sizes[tail])


class TestMemoryWithoutPeaks:
    def test_finds_the_smallest_safe_memory_within_few_ooms(self) -> None:
        """Only ok/OOM: the agent probes down from the declared default (1 GiB) and ends at
        the smallest memory that holds every input (256 MiB here), or one step above."""
        fn = SyntheticFunction(base_memory_mib=150.0, memory_per_mb=0.0, noise=0.0,
                               inputs_mb=(0.3, 1.5))
        spec = spec_with_default("nopeak")
        met, sizes, ooms = run(ShabariAgent(1), fn, spec, 120, seed=5, peaks=False)
        tail = sizes[-30:]
        assert all(256 <= s.memory_mib <= 512 for s in tail), {s.memory_mib for s in tail}
        # one OOM per class and grid step below the safe one at most (2 classes x 1 step)
        assert ooms <= 2
        assert all(met[-30:])

    def test_never_stuck_at_the_largest_memory(self) -> None:
        fn = SyntheticFunction(base_memory_mib=60.0, memory_per_mb=0.0, noise=0.0,
                               inputs_mb=(1.0,))
        spec = FunctionSpec(FunctionName("nodefault"), SLO(slowdown=1.5), size_grid(CPUS, MEMS))
        _, sizes, ooms = run(ShabariAgent(1), fn, spec, 60, seed=6, peaks=False)
        assert sizes[-1].memory_mib == 128 and ooms == 0


class TestCrossFunctionPrior:
    @staticmethod
    def first_20_violations(config: AgentConfig) -> int:
        """Train on 30 CPU-heavy functions, then count a new one's misses in its first 20."""
        agent = ShabariAgent(2, config)
        heavy = [SyntheticFunction(ms_per_mb=300.0 * (1 + k % 3), max_parallel=4.0,
                                   parallel=0.97) for k in range(30)]
        for k, fn in enumerate(heavy):
            run(agent, fn, spec_with_default(f"old-{k}"), 40, seed=100 + k)
        met, _, _ = run(agent, SyntheticFunction(ms_per_mb=450.0, max_parallel=4.0,
                                                 parallel=0.97),
                        spec_with_default("new"), 20, seed=7)
        return met.count(False)

    def test_prior_gives_a_new_function_fewer_violations(self) -> None:
        with_prior = self.first_20_violations(AgentConfig())
        without = self.first_20_violations(AgentConfig(unseen="default"))
        assert with_prior < without, (with_prior, without)


class TestCpuReadings:
    def test_cpu_readings_size_an_input_after_one_run(self) -> None:
        """With CPU time reported, one run at the default tells the agent what every other
        CPU would take: the second run of the same input is already at the oracle's CPU."""
        fn = SyntheticFunction(noise=0.0, max_parallel=1.0, parallel=1.0,
                               inputs_mb=(0.05,))
        spec = spec_with_default("light")
        agent = ShabariAgent(1)
        _, sizes, _ = run(agent, fn, spec, 2, seed=1)
        assert sizes[0].cpu_millicores == 1000
        assert sizes[1].cpu_millicores == fn.oracle_cpu(0.05) < 1000
        assert math.isfinite(fn.slo_ms(0.05))

    def test_ooms_are_not_violations_of_run_time_learning(self) -> None:
        fn = SyntheticFunction()
        agent = ShabariAgent(1)
        spec = spec_with_default("oom")
        ctx = DecisionContext(spec, fn.features(1.0), now=0.0, slo_ms=fn.slo_ms(1.0))
        d = agent.decide(ctx)
        agent.learn(ctx, d, Outcome(latency_ms=5.0, status=OutcomeStatus.OOM))
        assert not any(b.observed for b in agent._fns[spec.name].bins.values())
