"""Each baseline's known behaviour on small hand-made tables."""

from __future__ import annotations

import math

import pytest
from simtables import grid

from shabari.core import (
    SLO,
    DecisionContext,
    FunctionName,
    FunctionSpec,
    Outcome,
    OutcomeStatus,
    Size,
)
from shabari.sim.baselines import VPA, Oracle, Parrotfish, PowerTuning, ProbeResult, fit_exponential

SPEC = FunctionSpec(FunctionName("f"), SLO(slowdown=1.5), grid(), default_size=Size(1000, 512))


def _ctx(now: float = 0.0, slo_ms: float | None = 100.0) -> DecisionContext:
    return DecisionContext(SPEC, {"x": 1.0}, now, (), True, slo_ms)


def _profile(policy: PowerTuning | Parrotfish, latency: dict[int, float], slo_ms: float,
             peak: float = 100.0) -> int:
    probes = 0
    while (size := policy.next_probe(SPEC)) is not None:
        probes += 1
        ok = size.memory_mib >= peak
        policy.observe_probe(SPEC, ProbeResult(size, latency[size.cpu_millicores], ok, slo_ms,
                                               peak))
        assert probes < 1000
    return probes


# latency of a function that scales perfectly up to 1 core
AMDAHL = {250: 400.0, 500: 200.0, 1000: 100.0, 2000: 100.0}


class TestPowerTuning:
    def test_sweeps_the_whole_grid_then_picks_the_cheapest_meeting_the_slo(self) -> None:
        pt = PowerTuning(samples=3)
        assert pt.decide(_ctx()).size == SPEC.safe_default  # before profiling
        probes = _profile(pt, AMDAHL, slo_ms=150.0)
        assert probes == len(SPEC.sizes) * 3
        assert pt.decide(_ctx()).size == Size(1000, 128)

    def test_nothing_meets_the_slo_falls_back_to_fastest(self) -> None:
        pt = PowerTuning(samples=1)
        _profile(pt, AMDAHL, slo_ms=50.0)
        assert pt.decide(_ctx()).size.cpu_millicores in (1000, 2000)
        assert pt.decide(_ctx()).size.memory_mib == 128

    def test_sizes_that_oom_are_never_chosen(self) -> None:
        pt = PowerTuning(samples=1)
        _profile(pt, AMDAHL, slo_ms=150.0, peak=300.0)
        assert pt.decide(_ctx()).size == Size(1000, 512)


class TestParrotfish:
    def test_fit_recovers_an_exponential(self) -> None:
        xs = [250.0, 500.0, 1000.0, 2000.0, 4000.0]
        ys = [50 + 400 * math.exp(-x / 600) for x in xs]
        a0, a1, a2 = fit_exponential(xs, ys)
        for x, y in zip(xs, ys, strict=True):
            assert a0 + a1 * math.exp(-x / a2) == pytest.approx(y, rel=0.05)

    def test_fit_never_lets_latency_grow_with_allocation(self) -> None:
        a0, a1, _ = fit_exponential([250.0, 2000.0], [100.0, 300.0])
        assert a1 == 0.0 and a0 == 200.0

    def test_adaptive_sampling_uses_fewer_probes_than_a_sweep(self) -> None:
        pf = Parrotfish(samples=2, budget=3)
        probes = _profile(pf, AMDAHL, slo_ms=250.0)
        assert probes < len(SPEC.sizes) * 2
        chosen = pf.decide(_ctx()).size
        assert chosen.memory_mib == 128  # smallest memory above the measured peak
        assert chosen.cpu_millicores in (500, 1000)  # predicted to meet 250 ms

    def test_oom_during_sampling_moves_to_more_memory(self) -> None:
        pf = Parrotfish(samples=1, budget=3)
        spec_peak = 300.0
        probes = 0
        while (size := pf.next_probe(SPEC)) is not None:
            probes += 1
            # the first (largest) run under-reports the peak: 100 MiB, then OOMs at 128 MiB
            peak = 100.0 if probes == 1 else spec_peak
            pf.observe_probe(SPEC, ProbeResult(size, AMDAHL[size.cpu_millicores],
                                               size.memory_mib >= spec_peak, 150.0, peak))
        assert pf.decide(_ctx()).size.memory_mib == 512


class TestVPA:
    def _feed(self, vpa: VPA, used_millicores: float, peak: float, n: int, t0: float) -> None:
        for k in range(n):
            ctx = _ctx(now=t0 + k)
            d = vpa.decide(ctx)
            busy_ms = 100.0
            vpa.learn(ctx, d, Outcome(busy_ms, cpu_seconds=used_millicores / 1000 * busy_ms / 1000,
                                      peak_memory_mib=peak))

    def test_starts_at_default_then_follows_p90_plus_margin(self) -> None:
        vpa = VPA(interval_s=0.0)
        assert vpa.decide(_ctx()).size == SPEC.safe_default
        self._feed(vpa, 400.0, 100.0, 50, 0.0)
        # 400m x 1.15 = 460m -> 500m; 100 MiB x 1.15 -> 128 MiB
        assert vpa.decide(_ctx(now=100.0)).size == Size(500, 128)

    def test_oom_bumps_memory_by_a_fifth(self) -> None:
        vpa = VPA(interval_s=0.0)
        self._feed(vpa, 400.0, 100.0, 20, 0.0)
        ctx = _ctx(now=50.0)
        d = vpa.decide(ctx)
        vpa.learn(ctx, d, Outcome(10.0, OutcomeStatus.OOM))
        assert vpa.decide(_ctx(now=51.0)).size.memory_mib == 512  # >= 128 x 1.2

    def test_recommendation_waits_for_the_recommender_interval(self) -> None:
        vpa = VPA(interval_s=60.0)
        self._feed(vpa, 400.0, 100.0, 5, 0.0)
        assert vpa.decide(_ctx(now=5.0)).size == Size(500, 128)  # first computation
        self._feed(vpa, 2000.0, 100.0, 30, 6.0)  # heavier usage ...
        assert vpa.decide(_ctx(now=40.0)).size == Size(500, 128)  # ... not yet applied
        # usage is observed under the 500m allocation, so it climbs one step at a time:
        # capped 500m x 1.15 -> 1000m (VPA's known ratchet on throttled pods)
        assert vpa.decide(_ctx(now=70.0)).size.cpu_millicores == 1000


class TestOracle:
    def test_smallest_meeting_the_slo_and_fastest_when_infeasible(self) -> None:
        oracle = Oracle(lambda ctx, s: AMDAHL[s.cpu_millicores], lambda ctx: 0.0)
        assert oracle.decide(_ctx(slo_ms=250.0)).size == Size(500, 128)
        assert oracle.decide(_ctx(slo_ms=100.0)).size == Size(1000, 128)
        assert oracle.decide(_ctx(slo_ms=10.0)).size.cpu_millicores in (1000, 2000)

    def test_counts_the_cold_start_it_would_need(self) -> None:
        oracle = Oracle(lambda ctx, s: AMDAHL[s.cpu_millicores], lambda ctx: 100.0)
        # no warm pod: 200 + 100 > 250, 100 + 100 <= 250
        assert oracle.decide(_ctx(slo_ms=250.0)).size == Size(1000, 128)
        warm = DecisionContext(SPEC, {}, 0.0, (Size(250, 128),), True, 250.0)
        assert oracle.decide(warm).size == Size(500, 128)
