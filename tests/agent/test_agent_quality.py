"""The agent learns to right-size: few SLO violations, close to the oracle's CPU allocation.

Seeded and fast: 2,000 invocations of a synthetic function with Amdahl scaling (extra cores
stop helping), input-dependent memory and noise; the SLO of each input is 1.5x its best median
latency over the grid (DESIGN 4.5), passed as `ctx.slo_ms`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import pytest
from agent_synthetic import SyntheticFunction

from shabari.agent import AgentConfig, ShabariAgent
from shabari.core import DecisionContext, Outcome, Size


@dataclass(frozen=True)
class Row:
    mb: float
    size: Size
    outcome: Outcome
    slo_ms: float


def replay(seed: int, n: int = 2000, fn: SyntheticFunction | None = None,
           config: AgentConfig | None = None) -> list[Row]:
    """Drive one agent like the simulator does: decide, run, learn, one OOM retry."""
    fn = fn or SyntheticFunction()
    spec = fn.spec()
    agent = ShabariAgent(seed, config)
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        mb = rng.choice(fn.inputs_mb)
        ctx = DecisionContext(spec, fn.features(mb), now=float(i), slo_ms=fn.slo_ms(mb))
        decision = agent.decide(ctx)
        outcome = fn.run(mb, decision.size, rng)
        agent.learn(ctx, decision, outcome)
        if outcome.oom:
            retry = agent.escalate(ctx, decision)
            if retry is not None:
                decision = retry
                outcome = fn.run(mb, retry.size, rng)
                agent.learn(ctx, retry, outcome)
        rows.append(Row(mb, decision.size, outcome, fn.slo_ms(mb)))
    return rows


@pytest.fixture(scope="module")
def rows() -> list[Row]:
    return replay(seed=1)


class TestLearnedBehaviour:
    def test_fixture_is_not_trivial(self) -> None:
        """The oracle needs different CPUs for different inputs, and never the largest."""
        fn = SyntheticFunction()
        oracle = {fn.oracle_cpu(mb) for mb in fn.inputs_mb}
        assert len(oracle) >= 3
        assert max(oracle) < fn.spec().largest.cpu_millicores

    def test_slo_violations_at_most_5_percent_at_the_end(self, rows: list[Row]) -> None:
        last = rows[-500:]
        violations = sum(1 for r in last if not r.outcome.ok or r.outcome.latency_ms > r.slo_ms)
        assert violations / len(last) <= 0.05

    def test_cpu_within_1_3x_of_oracle(self, rows: list[Row]) -> None:
        fn = SyntheticFunction()
        last = rows[-500:]
        agent_vcpu = sum(r.size.vcpu for r in last) / len(last)
        oracle_vcpu = sum(fn.oracle_cpu(r.mb) / 1000 for r in last) / len(last)
        assert agent_vcpu <= 1.3 * oracle_vcpu

    def test_uses_less_than_static_max(self, rows: list[Row]) -> None:
        last = rows[-500:]
        assert sum(r.size.vcpu for r in last) / len(last) < 0.5 * 4.0

    def test_memory_fits_without_waste_at_the_end(self, rows: list[Row]) -> None:
        fn = SyntheticFunction()
        last = rows[-500:]
        assert all(r.outcome.ok for r in last)
        # no more than the second-smallest grid memory that holds the input's peak
        mems = sorted(fn.spec().memory_options)
        for r in last:
            fitting = [m for m in mems if m >= fn.peak_mib(r.mb) * 1.15]
            allowed = fitting[1] if len(fitting) > 1 else fitting[0]
            assert r.size.memory_mib <= allowed, (r.mb, r.size)

    def test_small_inputs_get_small_sizes(self, rows: list[Row]) -> None:
        last = rows[-500:]
        small = [r.size.cpu_millicores for r in last if r.mb == 0.05]
        large = [r.size.cpu_millicores for r in last if r.mb == 20.0]
        assert sum(small) / len(small) < sum(large) / len(large) / 2
