"""`shabari demo` end to end, scaled down: real gateways, real workers, real HTTP, real report."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

import shabari.demo as demo


@pytest.mark.slow
def test_demo_writes_summary_and_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(demo, "INPUTS_PER_FUNCTION", 3)
    monkeypatch.setattr(demo, "TRAIN_PER_FUNCTION", 2)
    monkeypatch.setattr(demo, "WARM_PER_FUNCTION", 1)
    monkeypatch.setattr(demo, "CALIBRATION_REPEATS", 1)
    monkeypatch.setattr(demo, "SPEEDUP", 30.0)
    args = argparse.Namespace(report=str(tmp_path / "r"), seed=2, minutes=0.4,
                              policies=["shabari", "static-max"], no_progress=True)
    assert demo.run(args) == 0
    out = capsys.readouterr().out
    assert "static-max" in out and "shabari vs static-max" in out
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert set(summary["policies"]) == {"shabari", "static-max"}
    for name, p in summary["policies"].items():
        assert p["invocations"] > 0, name
        # allocation really measured: decided size x held time, for every invocation
        assert p["allocated_vcpu_seconds"] > 0 and p["allocated_memory_gib_seconds"] > 0
        assert p["latency_ms"]["p50"] > 0 and p["decision_us"]["p50"] > 0
        samples = json.loads((tmp_path / "r" / name / "samples.json").read_text())
        assert len(samples) == p["invocations"]
        assert all(s["slo_ms"] for s in samples if s["status"] == 200)
    sizes = {s["cpu_millicores"] for s in
             json.loads((tmp_path / "r" / "static-max" / "samples.json").read_text())}
    assert sizes == {2000}  # every bundled demo function's largest CPU
    html = (tmp_path / "r" / "report.html").read_text()
    assert "allocation.png" in html and (tmp_path / "r" / "allocation.png").is_file()
