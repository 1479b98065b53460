"""The demo's numbers: summary schema (DESIGN 4.5), the comparison table and the verdict."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import pytest

from shabari.data.perf import PerfRow, PerfTable
from shabari.demo.plan import DEMO_PLAN
from shabari.demo.replay import Sample
from shabari.demo.report import (
    CalibrationView,
    PolicyRun,
    comparison_table,
    goal_checks,
    percentile,
    record_waste,
    summarize,
    verdict,
    write_report,
)

SCHEMA_KEYS = {"invocations", "slo_violations", "slo_violation_rate", "failures", "cold_starts",
               "latency_ms", "allocated_vcpu_seconds", "allocated_memory_gib_seconds",
               "idle_vcpu_seconds", "idle_memory_gib_seconds", "wasted_vcpus_p50",
               "wasted_memory_mib_p50", "decision_us", "wall_seconds"}


def _sample(i: int, latency: float, slo: float, status: int = 200, cold: bool = False) -> Sample:
    return Sample(i, "f", f"in{i}", 100, float(i), status, latency, slo, 1000, 512, cold,
                  f"d-{i}", False)


def _record(i: int, cpu: int, mem: int, held_ms: float, cpu_s: float, **extra: Any
            ) -> dict[str, Any]:
    return {"decision_id": f"d-{i}", "retry_of": None, "ts": 100.0 + i, "held_ms": held_ms,
            "decision_us": 200.0 + i, "pod_size": {"cpu_millicores": cpu, "memory_mib": mem},
            "action": {"cpu_millicores": cpu, "memory_mib": mem}, "cost": 0.1,
            "violated": False, "outcome": {"cpu_seconds": cpu_s, "peak_memory_mib": 100.0,
                                           "latency_ms": held_ms, "cold_start_ms": 0.0},
            **extra}


def _run(policy: str, cpu: int, latencies: list[float], mem: int = 1024) -> PolicyRun:
    samples = [_sample(i, lat, 100.0) for i, lat in enumerate(latencies)]
    records = [_record(i, cpu, mem, 500.0, 0.1) for i in range(len(latencies))]
    records.append(_record(99, cpu, mem, 1e6, 1.0))  # warm-up: not in the measured set
    before = {"pool": {"idle_vcpu_seconds": 1.0, "idle_memory_gib_seconds": 2.0}}
    after = {"pool": {"idle_vcpu_seconds": 4.0, "idle_memory_gib_seconds": 3.0}}
    return PolicyRun(policy, samples, records, before, after, [], 12.5, 1)


class TestSummary:
    def test_schema_and_values(self) -> None:
        s = summarize(_run("static-max", 2000, [50.0, 150.0, 90.0, 80.0]))
        assert set(s) >= SCHEMA_KEYS
        assert s["invocations"] == 4 and s["slo_violations"] == 1
        assert s["slo_violation_rate"] == pytest.approx(0.25)
        # 4 measured invocations x 2 vCPU x 0.5 s; the warm-up record is excluded
        assert s["allocated_vcpu_seconds"] == pytest.approx(4.0)
        assert s["allocated_memory_gib_seconds"] == pytest.approx(2.0)
        assert s["idle_vcpu_seconds"] == pytest.approx(3.0)
        assert s["idle_memory_gib_seconds"] == pytest.approx(1.0)
        assert s["used_vcpu_seconds"] == pytest.approx(0.4)
        assert s["latency_ms"]["p50"] == pytest.approx(85.0)
        assert s["wall_seconds"] == 12.5

    def test_failures_count_as_violations(self) -> None:
        run = _run("x", 1000, [10.0])
        run.samples.append(_sample(1, 5.0, 100.0, status=502))
        s = summarize(run)
        assert s["failures"] == 1 and s["slo_violations"] == 1

    def test_percentile(self) -> None:
        assert percentile([], 50) == 0.0
        assert percentile([1.0, 2.0, 3.0, 4.0], 50) == pytest.approx(2.5)
        assert percentile([5.0], 99) == 5.0


def _policy(n: int, violations: int, vcpu_s: float, gib_s: float) -> dict[str, Any]:
    """A hand-made summary entry with only what the comparison reads."""
    return {"invocations": n, "slo_violations": violations, "slo_violation_rate": violations / n,
            "allocated_vcpu_seconds": vcpu_s, "allocated_memory_gib_seconds": gib_s}


def _goals(policies: dict[str, dict[str, Any]]) -> dict[str, bool]:
    return {text.split(":")[0].split(" (")[0]: ok for text, ok in goal_checks(policies)}


class TestVerdict:
    GOOD: ClassVar[dict[str, dict[str, Any]]] = {
        "shabari": _policy(320, 16, 40.0, 10.0),  # 5.0%, 0.4x, 0.4x
        "static-max": _policy(320, 10, 100.0, 25.0),  # 3.1%
        "static-default": _policy(320, 40, 30.0, 12.0)}  # 12.5%

    def test_all_goals_met_on_a_good_run(self) -> None:
        checks = goal_checks(self.GOOD)
        assert len(checks) == 7 and all(ok for _, ok in checks), checks
        assert "claim holds" in verdict(self.GOOD)

    @pytest.mark.parametrize(("policy", "change", "failed"), [
        ("shabari", {"invocations": 299}, ">= 300 invocations per policy"),
        ("static-max", _policy(320, 33, 100.0, 25.0), "static-max meets its SLOs"),
        # 10.3%: over 10% (and so also more than 3 pp above static-max's 3.1%)
        ("shabari", _policy(320, 33, 40.0, 10.0),
         "shabari meets its SLOs|shabari within 3 pp of static-max"),
        # 7.8% is under 10% but 4.7 pp above static-max's 3.1%
        ("shabari", _policy(320, 25, 40.0, 10.0), "shabari within 3 pp of static-max"),
        ("shabari", _policy(320, 16, 61.0, 10.0), "shabari uses 0.61x static-max's vCPU-seconds"),
        ("shabari", _policy(320, 16, 40.0, 15.5), "shabari uses 0.62x static-max's GiB-seconds"),
        ("static-default", _policy(320, 16, 30.0, 12.0),
         "shabari misses fewer SLOs than static-default"),
    ])
    def test_each_goal_fails_on_its_own(self, policy: str, change: dict[str, Any],
                                        failed: str) -> None:
        pols = {k: dict(v) for k, v in self.GOOD.items()}
        pols[policy].update(change)
        goals = _goals(pols)
        assert [g for g, ok in goals.items() if not ok] == failed.split("|")
        assert "DOES NOT HOLD" in verdict(pols)
        assert all(f"[NO] {f}" in verdict(pols) for f in failed.split("|"))

    def test_claim_needs_both_policies(self) -> None:
        assert "not both" in verdict({"static-max": self.GOOD["static-max"]})

    def test_measured_runs_feed_the_same_comparison(self) -> None:
        sh = summarize(_run("shabari", 500, [50.0] * 10, mem=256))
        mx = summarize(_run("static-max", 2000, [50.0] * 10))
        goals = _goals({"shabari": sh, "static-max": mx})
        assert goals["shabari uses 0.25x static-max's vCPU-seconds"]
        assert not goals[">= 300 invocations per policy"]  # 10 invocations: too few to claim

    def test_table_lists_every_policy(self) -> None:
        table = comparison_table({"shabari": summarize(_run("shabari", 500, [1.0])),
                                  "static-max": summarize(_run("static-max", 2000, [1.0]))})
        lines = table.splitlines()
        assert lines[0].startswith("policy") and len(lines) == 4
        assert lines[2].startswith("shabari") and lines[3].startswith("static-max")
        assert "waste vCPU p50" in lines[0]


class TestWaste:
    def test_paper_definition_from_the_decision_log(self) -> None:
        # 2 vCPU held 0.5 s, 0.4 CPU-s used: 0.8 vCPU on average -> ceil 1 -> 1 vCPU wasted
        w = record_waste(_record(1, 2000, 1024, 500.0, 0.4))
        assert w.vcpus == pytest.approx(1.0) and w.memory_mib == pytest.approx(924.0)
        # a quarter core fully used wastes nothing
        w = record_waste(_record(2, 250, 256, 1000.0, 0.25))
        assert w.vcpus == pytest.approx(0.0) and w.memory_mib == pytest.approx(156.0)

    def test_medians_in_the_summary(self) -> None:
        s = summarize(_run("static-max", 2000, [50.0, 150.0, 90.0]))
        # every record: 2 vCPU, 0.1 CPU-s over 0.5 s busy -> 1 vCPU wasted; 1024 - 100 MiB
        assert s["wasted_vcpus_p50"] == pytest.approx(1.0)
        assert s["wasted_memory_mib_p50"] == pytest.approx(924.0)


class TestReport:
    def test_html_and_plots(self, tmp_path: Path) -> None:
        runs = [_run("shabari", 500, [50.0, 120.0]), _run("static-max", 2000, [40.0, 60.0])]
        per = {r.policy: summarize(r) for r in runs}
        summary = {"trace": "demo.csv", "seed": 1, "slo_slowdown": 1.5, "policies": per}
        page = write_report(tmp_path, summary, runs, comparison_table(per), verdict(per))
        html = page.read_text()
        for png in ("allocation.png", "latency_vs_slo.png", "learning_curve.png"):
            assert (tmp_path / png).stat().st_size > 1000
            assert png in html
        assert "choices.png" not in html  # no calibration, no per-function plots
        json.dumps(summary)  # the summary is plain JSON

    def test_per_function_plots_from_a_calibration(self, tmp_path: Path) -> None:
        plan = next(p for p in DEMO_PLAN if p.name == "thumbnail")
        rows = []
        for label, mp, base in (("small", 0.5, 10.0), ("big", 4.0, 80.0)):
            for cpu, factor in ((250, 4.0), (500, 2.0), (1000, 1.0), (2000, 1.0)):
                rows.append(PerfRow("thumbnail", label, cpu, 1024, base * factor, True,
                                    {"megapixels": mp}, peak_memory_mib=60.0))
        table = PerfTable(rows)
        view = CalibrationView(table, table, {"thumbnail": plan},
                               {"thumbnail": {"latencyMs": 100.0}},
                               {("thumbnail", lb): {"megapixels": mp}
                                for lb, mp in (("small", 0.5), ("big", 4.0))},
                               {"thumbnail": ["small", "big"]})
        # the oracle: the smallest CPU within 100 ms, the smallest menu memory above 60 MiB
        assert view.oracle("thumbnail", "small", [128, 256]) == (250, 128)
        assert view.oracle("thumbnail", "big", [128, 256]) == (1000, 128)
        run = PolicyRun("shabari", [Sample(0, "thumbnail", "big", 1, 0.0, 200, 90.0, 100.0,
                                           1000, 128, False, "d-0", False)],
                        [_record(0, 1000, 128, 90.0, 0.08)], {}, {}, [], 1.0, 0)
        per = {"shabari": summarize(run)}
        page = write_report(tmp_path, {"policies": per}, [run], comparison_table(per),
                            verdict(per), view)
        html = page.read_text()
        for png in ("choices.png", "tradeoff.png"):
            assert (tmp_path / png).stat().st_size > 1000 and png in html
