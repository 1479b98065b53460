"""`shabari simulate` and `shabari trace synth` through the real CLI entry point."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from simtables import cpu_bound_table, small_trace

from shabari.cli import main
from shabari.data.perf import PerfRow, write_perf_table
from shabari.data.traces import write_invocations
from shabari.sim.policies import POLICY_NAMES

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
KEYS = {"invocations", "slo_violations", "slo_violation_rate", "failures", "cold_starts",
        "latency_ms", "allocated_vcpu_seconds", "allocated_memory_gib_seconds",
        "idle_vcpu_seconds", "idle_memory_gib_seconds", "decision_us", "wall_seconds"}


@pytest.fixture()
def files(tmp_path: Path) -> tuple[Path, Path]:
    table = cpu_bound_table()
    rows = [PerfRow(fn, inp, s.cpu_millicores, s.memory_mib,
                    table.median_latency_ms(fn, inp, s), table.ok_fraction(fn, inp, s) == 1.0,
                    table.features(fn, inp), peak_memory_mib=100.0)
            for fn in table.functions() for inp in table.inputs(fn) for s in table.sizes(fn)]
    write_perf_table(rows, tmp_path / "perf.csv")
    write_invocations(small_trace(4, 10), tmp_path / "trace.csv")
    return tmp_path / "trace.csv", tmp_path / "perf.csv"


class TestSimulate:
    def test_json_has_the_design_schema(self, files: tuple[Path, Path], tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
        trace, perf = files
        out = tmp_path / "out.json"
        rc = main(["simulate", "--trace", str(trace), "--trace-format", "invocations",
                   "--perf", str(perf), "--seed", "4", "--json", str(out),
                   "--plots", str(tmp_path / "plots")])
        assert rc == 0
        doc = json.loads(out.read_text())
        assert doc["trace"] == "trace.csv" and doc["seed"] == 4 and doc["slo_slowdown"] == 1.5
        assert list(doc["policies"]) == list(POLICY_NAMES)
        for p in doc["policies"].values():
            assert set(p) >= KEYS
            assert set(p["latency_ms"]) == {"p50", "p90", "p99"}
            assert set(p["decision_us"]) == {"p50", "p99"}
            assert p["invocations"] == 40
        assert "oracle" in capsys.readouterr().out
        assert (tmp_path / "plots" / "allocated_vcpu_seconds.png").stat().st_size > 0

    def test_bad_inputs_fail_with_a_message(self, files: tuple[Path, Path], tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
        trace, perf = files
        bad = tmp_path / "bad.csv"
        bad.write_text("time_s,function\nsoon,f\n")
        assert main(["simulate", "--trace", str(bad), "--trace-format", "invocations",
                     "--perf", str(perf)]) == 1
        assert "bad.csv:2 (column 'time_s')" in capsys.readouterr().err
        assert main(["simulate", "--trace", str(trace), "--trace-format", "invocations",
                     "--perf", str(perf), "--policies", "nope"]) == 1
        assert "unknown policy 'nope'" in capsys.readouterr().err

    def test_platform_knobs(self, files: tuple[Path, Path], tmp_path: Path,
                            capsys: pytest.CaptureFixture[str]) -> None:
        trace, perf = files
        common = ["simulate", "--trace", str(trace), "--trace-format", "invocations",
                  "--perf", str(perf), "--policies", "static-max"]
        out = tmp_path / "a.json"
        assert main([*common, "--cold-start-ms", "5000", "--keep-alive-s", "0",
                     "--json", str(out)]) == 0
        slow = json.loads(out.read_text())["policies"]["static-max"]
        assert main([*common, "--json", str(out)]) == 0
        fast = json.loads(out.read_text())["policies"]["static-max"]
        # no keep-alive: every invocation cold starts, each paying 5 s instead of 1 s
        assert slow["cold_starts"] == slow["invocations"] > fast["cold_starts"]
        assert slow["latency_ms"]["p50"] > 5000 > fast["latency_ms"]["p50"]
        assert main([*common, "--no-resize"]) == 0
        assert main([*common, "--cold-start-ms", "-1"]) == 1
        assert "--cold-start-ms must be a finite number >= 0" in capsys.readouterr().err

    @pytest.mark.skipif(not SHARED.exists(), reason="../shared/data is absent")
    def test_real_azure_minutes_with_vswarm(self, tmp_path: Path) -> None:
        out = tmp_path / "out.json"
        rc = main(["simulate", "--trace", str(SHARED / "azure2019-400" / "400_inv.csv"),
                   "--perf", str(SHARED / "vswarm-profile" / "profile.json"), "--minutes", "3",
                   "--policies", "static-max,oracle", "--json", str(out)])
        assert rc == 0
        doc = json.loads(out.read_text())
        n = doc["policies"]["oracle"]["invocations"]
        assert n > 100 and doc["policies"]["static-max"]["invocations"] == n
        assert (doc["policies"]["oracle"]["allocated_vcpu_seconds"]
                < doc["policies"]["static-max"]["allocated_vcpu_seconds"])


class TestTraceSynth:
    def test_writes_an_invocations_csv(self, tmp_path: Path) -> None:
        out = tmp_path / "t.csv"
        assert main(["trace", "synth", "--out", str(out), "--functions", "5",
                     "--minutes", "3", "--seed", "2"]) == 0
        assert out.read_text().startswith("time_s,function,duration_ms,memory_mib\n")
