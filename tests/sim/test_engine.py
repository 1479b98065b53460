"""The engine: every invocation accounted once, deterministic for a seed, physical limits hold."""

from __future__ import annotations

import statistics

import pytest
from simtables import cpu_bound_table, noisy_memory_twins_table, small_trace

from shabari.core import (
    ConfigError,
    Decision,
    DecisionContext,
    DecisionId,
    Outcome,
    OutcomeStatus,
    Size,
)
from shabari.data.perf import PerfRow, PerfTable
from shabari.data.traces import Trace
from shabari.sim.cli import simulate
from shabari.sim.engine import SimConfig, Workload, run_policy
from shabari.sim.policies import POLICY_NAMES, make_policy
from shabari.sim.report import format_table, to_json

TIMING = ("wall_seconds", "decision_us")


def _strip(doc: dict[str, object]) -> dict[str, object]:
    return {k: v for k, v in doc.items() if k not in TIMING}


@pytest.fixture(scope="module")
def all_results() -> dict[str, object]:
    # a roomy cluster, no cold-start or resize delays: every SLO is feasible for the oracle
    work = Workload(small_trace(), cpu_bound_table(), SimConfig(seed=3, nodes=4, node_vcpus=16,
                                                                resize_latency_ms=0.0))
    return {"work": work, "results": simulate(work, POLICY_NAMES, keep_per_invocation=True)}


class TestConservation:
    def test_every_invocation_accounted_exactly_once(self, all_results: dict) -> None:
        work = all_results["work"]
        for name, r in all_results["results"].items():
            assert r.invocations == len(work), name
            assert len(r.latencies_ms) == len(work), name
            assert r.slo_violations >= r.failures, name
            assert all(v > 0 for v in r.vcpu_of), name

    def test_small_cluster_queues_but_loses_nothing(self) -> None:
        work = Workload(small_trace(8, 30, 0.05), cpu_bound_table(), SimConfig(
            nodes=1, node_vcpus=2, node_memory_gib=2))
        r = run_policy(work, make_policy("static-max", work))
        assert r.queued > 0
        assert r.invocations == len(work)
        assert max(r.latencies_ms) > 4000.0 / 2  # somebody waited behind the largest input

    def test_allocation_and_idle_accounting(self, all_results: dict) -> None:
        res = all_results["results"]
        smax = res["static-max"]
        # static-max holds 2 vCPU for every invocation: at least 2 x total execution time
        assert smax.queued == 0
        assert smax.allocated_vcpu_seconds == pytest.approx(2.0 * sum(smax.latencies_ms) / 1000.0)
        assert all(r.idle_vcpu_seconds >= 0 for r in res.values())
        assert res["static-max"].idle_vcpu_seconds > res["oracle"].idle_vcpu_seconds


class TestDeterminism:
    def test_same_seed_same_json(self) -> None:
        def once(seed: int) -> dict[str, object]:
            work = Workload(small_trace(), cpu_bound_table(), SimConfig(seed=seed))
            return {n: _strip(r.to_json())
                    for n, r in simulate(work, ["shabari", "vpa", "parrotfish"]).items()}

        assert once(5) == once(5)
        assert once(5) != once(6)

    def test_empty_window_is_a_clear_error(self) -> None:
        with pytest.raises(ConfigError, match="no invocations"):
            Workload(Trace("empty", ()), cpu_bound_table(), SimConfig())


class TestOracle:
    def test_oracle_allocates_no_more_than_any_policy_on_feasible_invocations(
            self, all_results: dict) -> None:
        res = all_results["results"]
        oracle = res["oracle"]
        for name, r in res.items():
            for i, (met, vcpu) in enumerate(zip(r.met_of, r.vcpu_of, strict=True)):
                if met:
                    assert oracle.vcpu_of[i] <= vcpu + 1e-9, (name, i)

    def test_oracle_meets_every_feasible_slo_without_cold_starts(self, all_results: dict) -> None:
        assert all_results["results"]["oracle"].slo_violations == 0

    def test_oracle_has_fewest_violations_and_least_allocation(self, all_results: dict) -> None:
        res = all_results["results"]
        o = res["oracle"]
        for name, r in res.items():
            assert o.slo_violations <= r.slo_violations, name
            assert o.allocated_vcpu_seconds <= r.allocated_vcpu_seconds + 1e-6, name


    def test_oracle_stays_the_limit_when_memory_twins_disagree_by_noise(self) -> None:
        # Warm pods with more memory than decided serve the oracle's smaller decisions; their
        # table cells are slower by noise alone. Speed follows the decided CPU, so the
        # clairvoyant oracle still meets every (feasible) SLO and beats static-max.
        work = Workload(small_trace(), noisy_memory_twins_table(),
                        SimConfig(seed=5, nodes=4, node_vcpus=16, resize_latency_ms=0.0))
        res = simulate(work, ("oracle", "static-max"))
        assert res["oracle"].slo_violations == 0
        assert res["oracle"].slo_violations <= res["static-max"].slo_violations


class TestProfilingIsPaidFor:
    def test_offline_baselines_pay_for_probes(self, all_results: dict) -> None:
        res = all_results["results"]
        work = all_results["work"]
        grid = len(work.table.sizes("resize"))
        functions = len(work.trace.functions())
        assert res["power-tuning"].profiling_invocations == functions * grid * 5
        assert 0 < res["parrotfish"].profiling_invocations < res["power-tuning"].profiling_invocations
        assert res["power-tuning"].profiling_vcpu_seconds > 0
        # cypress: `samples` runs at each of the 4 CPU options, at the largest memory
        assert res["cypress"].profiling_invocations == functions * 4 * 4
        assert res["cypress"].profiling_vcpu_seconds > 0
        # aquatope: its exploration budget of 10 runs per function
        assert res["aquatope"].profiling_invocations == functions * 10
        for name in ("cypress", "aquatope"):  # probes are charged to the allocation
            r = res[name]
            served = sum(v * lat / 1000.0 for v, lat in zip(r.vcpu_of, r.latency_of, strict=True))
            assert r.allocated_vcpu_seconds >= served + r.profiling_vcpu_seconds - 1e-6, name
        for name in ("shabari", "static-max", "static-default", "vpa", "oracle"):
            assert res[name].profiling_invocations == 0


class _SmallThenEscalate:
    """A test policy: always the smallest size; on failure, escalate to the largest memory."""

    name = "small-then-escalate"

    def __init__(self) -> None:
        self.learned: list[OutcomeStatus] = []

    def decide(self, ctx: DecisionContext) -> Decision:
        size = ctx.spec.sizes[0]
        return Decision(DecisionId("d"), ctx.spec.name, size, 0, 1.0, 0, "smallest")

    def learn(self, ctx: DecisionContext, decision: Decision, outcome: Outcome) -> None:
        self.learned.append(outcome.status)

    def escalate(self, ctx: DecisionContext, decision: Decision) -> Decision | None:
        size = decision.size.with_memory(max(ctx.spec.memory_options))
        return Decision(DecisionId("e"), ctx.spec.name, size, ctx.spec.sizes.index(size), 1.0,
                        0, "escalated")


class TestOomRetry:
    def test_a_retry_is_one_invocation_paying_for_both_attempts(self) -> None:
        # peak 300 MiB: the smallest size (128 MiB) always OOMs, the escalated 512 MiB fits
        work = Workload(small_trace(2, 10, 5.0), cpu_bound_table(peak_mib=300.0),
                        SimConfig(resize_latency_ms=0.0))
        policy = _SmallThenEscalate()
        r = run_policy(work, policy, keep_per_invocation=True)
        # an invocation that lands on an idle 512 MiB pod left by an earlier retry runs at the
        # pod's size and needs no retry; every other one OOMs once and is retried
        assert 0 < r.retries <= len(work) == r.invocations
        assert r.failures == 0
        assert policy.learned.count(OutcomeStatus.OOM) == r.retries
        assert policy.learned.count(OutcomeStatus.OK) == len(work)
        # a retried invocation's latency covers the failed attempt and the retry
        table = work.table
        doubled = 0
        for i, lat in enumerate(r.latency_of):
            pf = work.mapping[work.function_of[i]]
            one = table.median_latency_ms(pf, work.input_of[i], Size(250, 512))
            doubled += lat >= 2 * one - 1e-6
        assert doubled == r.retries


def _waste_table(*, measured: bool) -> PerfTable:
    """One function, one size (2 vCPU, 512 MiB), three inputs with known usage."""
    usage = {"light": (600.0, 100.0), "mid": (1500.0, 300.0), "heavy": (2000.0, 500.0)}
    return PerfTable([PerfRow("f", inp, 2000, 512, 10.0, True, {"x": 1.0}, cold_start_ms=0.0,
                              peak_memory_mib=peak if measured else None,
                              cpu_used_millicores=cpu if measured else None)
                      for inp, (cpu, peak) in usage.items()], source="waste")


class TestWasteMetrics:
    def test_medians_of_the_hand_computed_per_input_waste(self) -> None:
        work = Workload(small_trace(3, 15), _waste_table(measured=True), SimConfig(seed=2))
        doc = run_policy(work, make_policy("static-max", work)).to_json()
        # 2 vCPUs - ceil(used): light 2 - 1 = 1, mid 2 - 2 = 0, heavy 0; memory 512 - peak
        per_input = {"light": (1.0, 412.0), "mid": (0.0, 212.0), "heavy": (0.0, 12.0)}
        drawn = [per_input[inp] for inp in work.input_of]
        assert len(set(work.input_of)) == 3  # the example exercises every input
        assert doc["wasted_vcpus_p50"] == statistics.median(v for v, _ in drawn)
        assert doc["wasted_memory_mib_p50"] == statistics.median(m for _, m in drawn)

    def test_omitted_when_the_table_measured_neither(self) -> None:
        work = Workload(small_trace(2, 5), _waste_table(measured=False), SimConfig(seed=2))
        doc = to_json("t", 2, 1.5, simulate(work, ("static-max", "oracle")))
        for p in doc["policies"].values():
            assert "wasted_vcpus_p50" not in p and "wasted_memory_mib_p50" not in p
        assert "waste" not in format_table(doc)

    def test_every_policy_reports_waste_in_json_and_table(self, all_results: dict) -> None:
        doc = to_json("t", 3, 1.5, all_results["results"])
        for name, p in doc["policies"].items():
            assert p["wasted_vcpus_p50"] >= 0 and p["wasted_memory_mib_p50"] >= 0, name
        # cpu_bound_table: 100 MiB peak, so static-max (512 MiB) wastes 412 MiB every time
        assert doc["policies"]["static-max"]["wasted_memory_mib_p50"] == 412.0
        assert "waste MiB" in format_table(doc)
