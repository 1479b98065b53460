"""`shabari demo` end to end, scaled down: real gateways, real workers, real HTTP, real report."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

import shabari.demo as demo
from shabari.core.waste import InvocationWaste  # noqa: F401  (the helper the summary uses)
from shabari.demo.plan import DEMO_PLAN

SCHEMA_KEYS = {"invocations", "slo_violations", "slo_violation_rate", "failures", "cold_starts",
               "latency_ms", "allocated_vcpu_seconds", "allocated_memory_gib_seconds",
               "idle_vcpu_seconds", "idle_memory_gib_seconds", "wasted_vcpus_p50",
               "wasted_memory_mib_p50", "decision_us", "wall_seconds"}
PLOTS = ("allocation.png", "latency_vs_slo.png", "learning_curve.png", "choices.png",
         "tradeoff.png")


@pytest.mark.slow
def test_demo_writes_summary_and_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(demo, "CANDIDATES_PER_FUNCTION", 10)
    monkeypatch.setattr(demo, "INPUTS_PER_FUNCTION", 2)
    monkeypatch.setattr(demo, "TRAIN_PER_FUNCTION", 2)
    monkeypatch.setattr(demo, "WARM_PER_FUNCTION", 1)
    monkeypatch.setattr(demo, "CALIBRATION_EXTRA_AT_LARGEST", 0)
    monkeypatch.setattr(demo, "TRAIN_CALIBRATION_REPEATS", 1)
    args = argparse.Namespace(report=str(tmp_path / "r"), seed=2, minutes=0.4,
                              policies=["shabari", "static-max", "static-default"],
                              no_progress=True)
    assert demo.run(args) == 0
    out = capsys.readouterr().out
    assert "static-max" in out and "shabari vs static-max" in out and "load average" in out
    r = tmp_path / "r"
    summary = json.loads((r / "summary.json").read_text())
    assert set(summary["policies"]) == {"shabari", "static-max", "static-default"}
    # both SLO forms, as the plan says, with the absolute ones set from the calibration
    forms = {p.name: p.slo_form for p in DEMO_PLAN}
    for name, slo in summary["slos"].items():
        assert set(slo) == {forms[name]}
        assert slo[forms[name]] > 0
    counts = {p["invocations"] for p in summary["policies"].values()}
    assert len(counts) == 1 and counts.pop() > 0  # every policy served the same replay
    for name, p in summary["policies"].items():
        assert set(p) >= SCHEMA_KEYS, name
        # allocation really measured: decided size x held time, for every invocation
        assert p["allocated_vcpu_seconds"] > 0 and p["allocated_memory_gib_seconds"] > 0
        assert p["latency_ms"]["p50"] > 0 and p["decision_us"]["p50"] > 0
        assert p["wasted_memory_mib_p50"] >= 0 and p["wasted_vcpus_p50"] >= 0
        samples = json.loads((r / name / "samples.json").read_text())
        assert len(samples) == p["invocations"]
        assert all(s["slo_ms"] for s in samples if s["status"] == 200)
    sizes = {(s["cpu_millicores"], s["memory_mib"]) for s in
             json.loads((r / "static-max" / "samples.json").read_text())}
    assert sizes == {(2000, 1024)}  # the menu's largest size, for every function
    sizes = {(s["cpu_millicores"], s["memory_mib"]) for s in
             json.loads((r / "static-default" / "samples.json").read_text())}
    assert sizes == {(500, 512)}
    # the calibration table covers the whole CPU menu for the replay inputs
    table = (r / "calibration" / "perf.csv").read_text().splitlines()
    assert (r / "calibration" / "slo-base.csv").is_file()
    cpus = {line.split(",")[2] for line in table[1:]}
    assert cpus == {"250", "500", "1000", "2000"}
    html = (r / "report.html").read_text()
    for plot in PLOTS:
        assert plot in html and (r / plot).is_file(), plot
