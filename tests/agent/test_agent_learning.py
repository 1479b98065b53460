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


class TestBorrowingFromAHeavierClass:
    """An input class with no evidence of its own decides with the function's nearest heavier
    class (run times scaled by the SLOs' ratio) rather than the cross-function prior."""

    @staticmethod
    def misled_agent(config: AgentConfig) -> ShabariAgent:
        """An agent whose prior learned from 20 light functions that a quarter core is enough,
        then saw a CPU-hungry function's heavy inputs only."""
        agent = ShabariAgent(5, config)
        for k in range(20):
            light = SyntheticFunction(ms_per_mb=0.5, inputs_mb=(0.1, 0.5, 2.0, 8.0))
            run(agent, light, spec_with_default(f"light-{k}"), 30, seed=200 + k)
        return agent

    HEAVY = SyntheticFunction(ms_per_mb=300.0, max_parallel=4.0, parallel=0.97,
                              inputs_mb=(6.0, 12.0, 20.0))

    def first_runs_of_lighter_inputs(self, config: AgentConfig) -> list[tuple[bool, str]]:
        agent = self.misled_agent(config)
        spec = spec_with_default("heavy")
        run(agent, self.HEAVY, spec, 40, seed=9)
        out = []
        for i, mb in enumerate((1.0, 2.5, 4.0)):  # classes it never saw, all lighter
            ctx = DecisionContext(spec, self.HEAVY.features(mb), now=100.0 + i,
                                  slo_ms=self.HEAVY.slo_ms(mb))
            d = agent.decide(ctx)
            met = self.HEAVY.median_ms(mb, d.size.cpu_millicores) <= self.HEAVY.slo_ms(mb)
            out.append((met, d.reason))
            agent.learn(ctx, d, self.HEAVY.run(mb, d.size, random.Random(i), cpu_seconds=True))
        return out

    def test_lighter_unseen_inputs_meet_their_slo_with_borrowed_evidence(self) -> None:
        got = self.first_runs_of_lighter_inputs(AgentConfig())
        assert all("heavier class" in reason for _, reason in got), got
        assert all(met for met, _ in got), got

    def test_without_borrowing_the_prior_decides_them(self) -> None:
        got = self.first_runs_of_lighter_inputs(AgentConfig(borrow=False))
        assert all(reason.startswith("prior") for _, reason in got), got

    def test_under_an_absolute_slo_lighter_inputs_get_no_more_cpu_than_they_need(self) -> None:
        """Single-threaded, `latencyMs`: the heavy inputs need a full core, the lighter
        unseen ones meet the bound at a fraction of it; borrowing sizes each one to meet it
        and, scaled by the (equal) SLOs, not above the heavy class's own size."""
        fn = SyntheticFunction(ms_per_mb=40.0, parallel=1.0, max_parallel=1.0, noise=0.02,
                               inputs_mb=(6.0, 8.0))
        spec = FunctionSpec(FunctionName("single"), SLO(latency_ms=400.0),
                            size_grid(CPUS, MEMS), default_size=Size(1000, 1024))
        agent = ShabariAgent(6)
        rng = random.Random(4)
        for i in range(30):
            mb = fn.inputs_mb[i % 2]
            ctx = DecisionContext(spec, fn.features(mb), now=float(i))
            d = agent.decide(ctx)
            agent.learn(ctx, d, fn.run(mb, d.size, rng, cpu_seconds=True))
        heavy_cpu = d.size.cpu_millicores
        for i, mb in enumerate((0.8, 2.0, 4.0)):
            d = agent.decide(DecisionContext(spec, fn.features(mb), now=100.0 + i))
            assert "heavier class" in d.reason, d.reason
            assert fn.median_ms(mb, d.size.cpu_millicores) <= 400.0
            assert d.size.cpu_millicores <= heavy_cpu

    def test_an_input_heavier_than_every_class_is_left_to_the_prior(self) -> None:
        agent = ShabariAgent(5)
        fn = SyntheticFunction(inputs_mb=(0.3, 0.7))
        spec = spec_with_default("grows")
        run(agent, fn, spec, 20, seed=3)
        d = agent.decide(DecisionContext(spec, fn.features(20.0), now=50.0,
                                         slo_ms=fn.slo_ms(20.0)))
        assert "heavier class" not in d.reason and d.reason.startswith(("prior", "unseen"))

    def test_borrowed_decisions_never_probe(self) -> None:
        """Probing a cheaper size is for a class's own evidence: a borrowed estimate runs
        as the evidence says, with probability 1."""
        agent = self.misled_agent(AgentConfig(explore=1.0))
        spec = spec_with_default("heavy")
        run(agent, self.HEAVY, spec, 40, seed=9)
        for i, mb in enumerate((1.0, 1.3, 1.7, 2.2, 2.9, 3.8, 5.0)):
            d = agent.decide(DecisionContext(spec, self.HEAVY.features(mb), now=200.0 + i,
                                             slo_ms=self.HEAVY.slo_ms(mb)))
            assert "heavier class" in d.reason and not d.explored and d.probability == 1.0

    def test_a_borrowing_class_needs_no_more_memory_than_the_most_any_class_needs(self) -> None:
        """The quantile model of peaks errs high for an input it has not seen (measured in
        the demo: 534 MiB predicted for a 296 MiB peak), and a larger memory than every idle
        pod means a cold start. An input lighter than a seen class gets at most the most any
        of the function's classes needs."""
        fn = replace(self.HEAVY, memory_per_mb=10.0)  # peaks 120-260 MiB

        def decide_memory(cap: bool) -> int:
            agent = ShabariAgent(5, AgentConfig(borrow_memory_cap=cap))
            spec = spec_with_default("heavy")
            run(agent, fn, spec, 40, seed=9)
            fs = agent._fns[spec.name]
            fs.memory.predict_mib = lambda fv: 4000.0  # type: ignore[method-assign]
            d = agent.decide(DecisionContext(spec, fn.features(2.0), now=99.0,
                                             slo_ms=fn.slo_ms(2.0)))
            assert "heavier class" in d.reason
            return d.size.memory_mib

        most = max(fn.peak_mib(mb) for mb in fn.inputs_mb)
        assert decide_memory(cap=False) == 2048
        assert decide_memory(cap=True) < 2048
        assert decide_memory(cap=True) >= most


class TestMemoryOfAnUnseenClass:
    """The quantile model's prediction for an input class nobody has seen carries headroom;
    when no idle pod has that much memory but one holds the prediction without its headroom,
    the input runs there instead of on a new pod (`memory_warm_fit`)."""

    @staticmethod
    def memory_for(predicted: float, idle: tuple[Size, ...], fit: bool = True) -> Size:
        agent = ShabariAgent(1, AgentConfig(memory_warm_fit=fit))
        spec = spec_with_default("fresh")
        fs = agent._fn(spec)
        fs.memory.predict_mib = lambda fv: predicted  # type: ignore[method-assign]
        ctx = DecisionContext(spec, {"bytes": 5e5}, now=0.0, slo_ms=100.0, warm_idle=idle)
        return agent.decide(ctx).size

    def test_an_idle_pod_that_holds_the_prediction_without_headroom_is_used(self) -> None:
        # 540 MiB predicted = 491 MiB + 10 % headroom: the idle 512 MiB pod holds 491
        assert self.memory_for(540.0, (Size(1000, 512),)).memory_mib == 512

    def test_a_pod_too_small_even_without_headroom_is_not(self) -> None:
        assert self.memory_for(600.0, (Size(1000, 512),)).memory_mib == 1024

    def test_off_it_always_takes_the_prediction(self) -> None:
        assert self.memory_for(540.0, (Size(1000, 512),), fit=False).memory_mib == 1024

    def test_a_pod_that_already_holds_the_prediction_changes_nothing(self) -> None:
        assert self.memory_for(540.0, (Size(1000, 512), Size(1000, 1024))).memory_mib == 1024
