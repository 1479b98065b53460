"""`aquatope`: constrained, noise-aware Bayesian optimisation of one size per function."""

from __future__ import annotations

import math

import numpy as np
import pytest

from shabari.core import SLO, FunctionName, FunctionSpec, Size
from shabari.sim.aquatope import Aquatope, price
from shabari.sim.baselines import ProbeResult

CPUS = (250, 500, 1000, 2000, 4000)
MEMS = (128, 256, 512, 1024, 2048)
SPEC = FunctionSpec(FunctionName("f"), SLO(slowdown=1.5),
                    tuple(Size(c, m) for c in CPUS for m in MEMS), default_size=Size(1000, 512))
PEAK_MIB = 300.0  # 128 and 256 MiB fail (OOM)
WORK_MS = 400.0  # single-core work, parallel up to 2 cores
SLO_MS = 1.5 * WORK_MS / 2.0  # 1.5 x the best (at 2000m and above): 300 ms


def latency(size: Size) -> float:
    return WORK_MS * 1000.0 / min(size.cpu_millicores, 2000)


def best_feasible() -> Size:
    """By hand: feasible = latency <= 300 ms (CPU >= 2000m) and memory >= 300 MiB; cheapest
    in resource cost (allocation x latency): 2000m, 512 MiB."""
    ok = [s for s in SPEC.sizes if latency(s) <= SLO_MS and s.memory_mib >= PEAK_MIB]
    return min(ok, key=lambda s: price(s) * latency(s))


def run(aq: Aquatope, noise: float = 0.0, seed: int = 0) -> int:
    rng = np.random.default_rng(seed)
    probes = 0
    while (size := aq.next_probe(SPEC)) is not None:
        ok = size.memory_mib >= PEAK_MIB
        lat = latency(size) * (math.exp(rng.normal(0.0, noise)) if noise else 1.0)
        aq.observe_probe(SPEC, ProbeResult(size, lat, ok, SLO_MS, PEAK_MIB))
        probes += 1
        assert probes <= aq.budget
    return probes


class TestAquatope:
    def test_best_feasible_size_is_what_the_hand_computation_says(self) -> None:
        assert best_feasible() == Size(2000, 512)

    def test_converges_to_the_best_feasible_static_size_of_a_noiseless_table(self) -> None:
        aq = Aquatope(budget=10)
        assert run(aq) == 10  # the budget is the exploration: 10 of 25 sizes
        assert aq.chosen(SPEC.name) == best_feasible()

    @pytest.mark.parametrize("seed", [1, 2, 3])
    def test_stays_feasible_under_noise(self, seed: int) -> None:
        aq = Aquatope(budget=10, seed=seed)
        run(aq, noise=0.15, seed=seed)
        chosen = aq.chosen(SPEC.name)
        assert chosen is not None
        assert chosen.memory_mib >= PEAK_MIB and latency(chosen) <= SLO_MS

    def test_before_exploring_the_safe_default(self) -> None:
        from shabari.core import DecisionContext

        aq = Aquatope()
        ctx = DecisionContext(SPEC, {}, 0.0, (), True, SLO_MS)
        assert aq.decide(ctx).size == SPEC.safe_default

    def test_first_run_is_the_largest_size_and_the_design_spreads_out(self) -> None:
        design = Aquatope(initial=5)._initial_design(SPEC)
        assert design[0] == SPEC.largest
        assert len(set(design)) == 5
        assert Size(250, 128) in design  # the opposite corner comes next
