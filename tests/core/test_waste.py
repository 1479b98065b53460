"""Waste per invocation in the Shabari paper's terms (DESIGN 4.5), on hand-computed examples."""

from __future__ import annotations

import pytest

from shabari.core.waste import InvocationWaste, invocation_waste, used_millicores, waste_medians


class TestInvocationWaste:
    def test_vcpus_are_allocated_minus_ceil_of_used(self) -> None:
        # 4 vCPUs held, 1.3 used: ceil -> 2, so 2 wasted; 2048 MiB held, 700 peak: 1348 wasted
        assert invocation_waste(4000, 2048, 1300.0, 700.0) == InvocationWaste(2.0, 1348.0)

    def test_a_fully_used_core_wastes_nothing(self) -> None:
        assert invocation_waste(2000, 512, 2000.0, 512.0) == InvocationWaste(0.0, 0.0)

    def test_usage_beyond_the_allocation_is_capped_and_waste_never_negative(self) -> None:
        # a throttled burst (626 mc measured at 250 mc) and an OOM (peak over the limit)
        assert invocation_waste(250, 256, 626.3, 300.0) == InvocationWaste(0.0, 0.0)
        # a sub-core allocation barely used still rounds up to one whole vCPU: no waste
        assert invocation_waste(500, 256, 10.0, 20.0).vcpus == 0.0

    def test_float_noise_does_not_create_a_whole_wasted_core(self) -> None:
        assert invocation_waste(2000, 512, 1000.0000000001, None).vcpus == 1.0

    def test_unmeasured_usage_is_none(self) -> None:
        assert invocation_waste(1000, 512, None, None) == InvocationWaste(None, None)


class TestMedians:
    def test_medians_over_measured_invocations(self) -> None:
        ws = [InvocationWaste(0.0, 100.0), InvocationWaste(2.0, 300.0),
              InvocationWaste(1.0, None), InvocationWaste(None, 500.0)]
        # vCPUs: 0, 2, 1 -> 1; memory: 100, 300, 500 -> 300
        assert waste_medians(ws) == {"wasted_vcpus_p50": 1.0, "wasted_memory_mib_p50": 300.0}

    def test_even_count_takes_the_midpoint(self) -> None:
        ws = [InvocationWaste(None, 100.0), InvocationWaste(None, 400.0)]
        assert waste_medians(ws) == {"wasted_memory_mib_p50": 250.0}

    def test_nothing_measured_omits_both_keys(self) -> None:
        assert waste_medians([InvocationWaste(None, None)]) == {}
        assert waste_medians([]) == {}


def test_used_millicores_from_cgroup_cpu_time() -> None:
    assert used_millicores(0.3, 0.2) == pytest.approx(1500.0)
    assert used_millicores(0.0, 0.2) is None
