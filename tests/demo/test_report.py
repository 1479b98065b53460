"""The demo's numbers: summary schema (DESIGN 4.5), the comparison table and the verdict."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from shabari.demo.replay import Sample
from shabari.demo.report import (
    PolicyRun,
    comparison_table,
    percentile,
    summarize,
    verdict,
    write_report,
)

SCHEMA_KEYS = {"invocations", "slo_violations", "slo_violation_rate", "failures", "cold_starts",
               "latency_ms", "allocated_vcpu_seconds", "allocated_memory_gib_seconds",
               "idle_vcpu_seconds", "idle_memory_gib_seconds", "decision_us", "wall_seconds"}


def _sample(i: int, latency: float, slo: float, status: int = 200, cold: bool = False) -> Sample:
    return Sample(i, "f", f"in{i}", 100, float(i), status, latency, slo, 1000, 512, cold,
                  f"d-{i}", False)


def _record(i: int, cpu: int, mem: int, held_ms: float, cpu_s: float, **extra: Any
            ) -> dict[str, Any]:
    return {"decision_id": f"d-{i}", "retry_of": None, "ts": 100.0 + i, "held_ms": held_ms,
            "decision_us": 200.0 + i, "pod_size": {"cpu_millicores": cpu, "memory_mib": mem},
            "action": {"cpu_millicores": cpu, "memory_mib": mem}, "cost": 0.1,
            "violated": False, "outcome": {"cpu_seconds": cpu_s, "peak_memory_mib": 100.0},
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


class TestVerdict:
    def test_claim_holds_only_with_less_allocation_and_close_violations(self) -> None:
        sh = summarize(_run("shabari", 500, [50.0] * 10, mem=256))
        mx = summarize(_run("static-max", 2000, [50.0] * 10))
        assert "claim holds" in verdict({"shabari": sh, "static-max": mx})
        worse = summarize(_run("shabari", 500, [500.0] * 10, mem=256))
        assert "DOES NOT HOLD" in verdict({"shabari": worse, "static-max": mx})
        assert "not both" in verdict({"static-max": mx})

    def test_table_lists_every_policy(self) -> None:
        table = comparison_table({"shabari": summarize(_run("shabari", 500, [1.0])),
                                  "static-max": summarize(_run("static-max", 2000, [1.0]))})
        lines = table.splitlines()
        assert lines[0].startswith("policy") and len(lines) == 4
        assert lines[2].startswith("shabari") and lines[3].startswith("static-max")


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
        json.dumps(summary)  # the summary is plain JSON
