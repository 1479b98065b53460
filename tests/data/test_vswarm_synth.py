"""vSwarm conversion (the documented CPU-cap model) and the synthetic trace generator."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from shabari.core import DataFormatError, Size
from shabari.data.perf import PerfTable
from shabari.data.synth import synthesize
from shabari.data.traces import load_invocations, write_invocations
from shabari.data.vswarm import convert_vswarm, load_vswarm_rows

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
PROFILE = SHARED / "vswarm-profile" / "profile.json"


def _entry(cpu: float, mem: float, dur: float) -> dict[str, dict[str, float]]:
    pct = (0, 1, 5, 25, 50, 75, 95, 99, 100)
    return {"cpu": {f"{p}-percentile": cpu for p in pct},
            "memory": {f"{p}-percentile": mem for p in pct},
            "duration": {f"{p}-percentile": dur * (1 + p / 1000) for p in pct}}


class TestVSwarm:
    def test_cpu_cap_model_and_oom_below_peak(self, tmp_path: Path) -> None:
        src = tmp_path / "p.json"
        src.write_text(json.dumps({"video-10": _entry(1500, 200, 100.0),
                                   "video-20": _entry(3000, 300, 200.0),
                                   "service": _entry(40, 50, 5.0)}))
        t = PerfTable(load_vswarm_rows(src, cpu_grid=(500, 1000, 2000),
                                       memory_grid=(128, 256, 512)))
        assert t.functions() == ["service", "video"]
        assert t.inputs("video") == ("10", "20")
        assert t.features("video", "20") == {"param": 20.0}
        # 1500m of demand: throttled 3x at 500m, unaffected at 2000m
        assert t.median_latency_ms("video", "10", Size(500, 256)) == pytest.approx(300 * 1.05)
        assert t.median_latency_ms("video", "10", Size(2000, 256)) == pytest.approx(100 * 1.05)
        assert t.best_median_latency_ms("video", "20") == pytest.approx(1.5 * 200 * 1.05)
        # 300 MiB peak: every 128/256 MiB size fails
        assert t.ok_fraction("video", "20", Size(2000, 256)) == 0.0
        assert t.ok_fraction("video", "20", Size(2000, 512)) == 1.0
        # a light service is flat across CPU sizes
        assert t.median_latency_ms("service", "default", Size(500, 128)) == t.median_latency_ms(
            "service", "default", Size(2000, 128))

    def test_malformed_profile(self, tmp_path: Path) -> None:
        src = tmp_path / "p.json"
        src.write_text("{not json")
        with pytest.raises(DataFormatError, match="not JSON"):
            load_vswarm_rows(src)
        src.write_text(json.dumps({"f-1": {"cpu": {}}}))
        with pytest.raises(DataFormatError, match=r"cpu\.50-percentile"):
            load_vswarm_rows(src)

    @pytest.mark.skipif(not PROFILE.exists(), reason="../shared/data is absent")
    def test_real_profile_converts_to_a_valid_table(self, tmp_path: Path) -> None:
        n = convert_vswarm(PROFILE, tmp_path / "vswarm.csv")
        from shabari.data.perf import load_perf_table

        t = load_perf_table(tmp_path / "vswarm.csv")
        assert n > 20_000
        assert "video-processing-python" in t.functions()
        assert len(t.inputs("video-processing-python")) >= 10
        assert len(t.sizes("aes-python")) == 25


class TestSynth:
    def test_seeded_heavy_tailed_and_round_trips(self, tmp_path: Path) -> None:
        a = synthesize(40, 30, seed=2)
        assert a == synthesize(40, 30, seed=2)
        assert a != synthesize(40, 30, seed=3)
        counts = sorted(Counter(x.function for x in a.arrivals).values(), reverse=True)
        top = sum(counts[: max(1, len(counts) // 5)])
        assert top / len(a) > 0.6  # a fifth of the functions carry most invocations
        assert all(0 <= x.time_s < 30 * 60 for x in a.arrivals)
        write_invocations(a, tmp_path / "t.csv")
        back = load_invocations(tmp_path / "t.csv")
        assert len(back) == len(a)
        assert [x.function for x in back.arrivals] == [x.function for x in a.arrivals]
