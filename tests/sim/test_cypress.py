"""`cypress`: an input-size model fitted from paid profiling runs sizes each invocation."""

from __future__ import annotations

import itertools
import math

from simtables import cpu_bound_table

from shabari.core import SLO, DecisionContext, FunctionName, Size
from shabari.sim.baselines import ProbeResult
from shabari.sim.cypress import Cypress, fit_latency_model, input_size

TABLE = cpu_bound_table()
FN = "resize"  # inputs in0/in1/in2: 40, 400, 4000 ms of single-core work
SPEC = TABLE.spec(FN, SLO(slowdown=1.5), name="f")


def _slo(inp: str) -> float:
    return SLO(slowdown=1.5).bound_ms(TABLE.best_median_latency_ms(FN, inp))


def _profiled(samples: int = 3) -> tuple[Cypress, int]:
    cy = Cypress(samples=samples)
    inputs = itertools.cycle(TABLE.inputs(FN))
    probes = 0
    while (size := cy.next_probe(SPEC)) is not None:
        inp = next(inputs)
        lat, ok = TABLE.latency_at(FN, inp, size, 0.5)
        cy.observe_probe(SPEC, ProbeResult(size, lat, ok, _slo(inp),
                                           TABLE.peak_memory_mib(FN, inp, size),
                                           TABLE.features(FN, inp)))
        probes += 1
        assert probes < 100
    return cy, probes


def _decide(cy: Cypress, inp: str, warm: tuple[Size, ...] = ()) -> Size:
    ctx = DecisionContext(SPEC, TABLE.features(FN, inp), 0.0, warm, True, _slo(inp))
    return cy.decide(ctx).size


class TestCypress:
    def test_profiles_every_cpu_option_then_stops(self) -> None:
        cy, probes = _profiled(samples=3)
        assert probes == 3 * len(SPEC.cpu_options)
        assert cy.next_probe(SPEC) is None

    def test_bigger_inputs_get_bigger_sizes(self) -> None:
        cy, _ = _profiled()
        small, mid, big = (_decide(cy, f"in{k}") for k in range(3))
        assert small.cpu_millicores < mid.cpu_millicores < big.cpu_millicores
        # and each is enough: 40 ms of work parallel to 500m, 400 to 1000m, 4000 to 2000m
        for k, size in enumerate((small, mid, big)):
            lat, ok = TABLE.latency_at(FN, f"in{k}", size, 0.5)
            assert ok and lat <= _slo(f"in{k}")

    def test_memory_from_the_fitted_peak(self) -> None:
        cy, _ = _profiled()
        # every input peaks at 100 MiB: x1.2 = 120 fits in 128 MiB; x1.5 = 150 needs 512
        assert _decide(cy, "in0").memory_mib == 128
        cy_wide = Cypress(memory_margin=1.5)
        cy_wide._state = cy._state  # same profile, a wider margin
        assert _decide(cy_wide, "in0").memory_mib == 512

    def test_an_idle_warm_pod_large_enough_is_taken_as_it_is(self) -> None:
        cy, _ = _profiled()
        warm = (Size(2000, 512),)
        assert _decide(cy, "in0", warm) == Size(2000, 512)
        assert _decide(cy, "in0", (Size(250, 512),)).cpu_millicores > 250

    def test_before_profiling_the_safe_default(self) -> None:
        assert _decide(Cypress(), "in0") == SPEC.safe_default


class TestModel:
    def test_recovers_a_power_law_per_cpu_option(self) -> None:
        sizes = [s for s in (1e3, 1e4, 1e5) for _ in (250, 1000, 4000)]
        cpus = [c for _ in (1e3, 1e4, 1e5) for c in (250, 1000, 4000)]
        lat = [0.01 * (1 + s) * 1000.0 / c for s, c in zip(sizes, cpus, strict=True)]
        m = fit_latency_model(sizes, cpus, lat)
        assert math.isclose(m.predict_ms(math.log1p(5e4), 1000), 0.01 * (1 + 5e4), rel_tol=1e-6)
        assert m.sigma < 1e-6

    def test_an_option_probed_on_one_size_or_getting_faster_is_flat(self) -> None:
        m = fit_latency_model([10.0, 10.0, 10.0, 1000.0], [500, 500, 1000, 1000],
                              [200.0, 100.0, 90.0, 50.0])
        assert m.lines[500] == (math.log(200.0 * 100.0) / 2, 0.0)
        assert m.lines[1000][1] == 0.0

    def test_input_size_prefers_bytes_then_param(self) -> None:
        assert input_size({"bytes": 5.0, "param": 2.0, "a": 9.0}) == 5.0
        assert input_size({"param": 2.0, "a": 9.0}) == 2.0
        assert input_size({"b": 3.0, "a": 9.0}) == 9.0
        assert input_size({}) == 0.0


def test_spec_name_is_the_trace_function() -> None:
    assert SPEC.name == FunctionName("f")
