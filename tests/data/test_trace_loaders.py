"""Trace loaders: Azure 2019 (with/without Trigger), Azure 2021, the project's CSV, errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from shabari.core import DataFormatError
from shabari.data.traces import (
    Arrival,
    load_azure2019,
    load_azure2021,
    load_invocations,
    write_invocations,
)

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
AZURE400 = SHARED / "azure2019-400" / "400_inv.csv"


def _azure(tmp_path: Path, trigger: bool) -> Path:
    head = "HashOwner,HashApp,HashFunction," + ("Trigger," if trigger else "")
    trig = "http," if trigger else ""
    (tmp_path / "d_inv.csv").write_text(
        head + "minute_1,minute_2,minute_3\n"
        f"o,a1,f1,{trig}3,0,2\n"
        f"o,a2,f2,{trig}0,1,0\n")
    (tmp_path / "d_run.csv").write_text(
        "HashOwner,HashApp,HashFunction,Average,Count,Minimum,Maximum,percentile_Average_0,"
        "percentile_Average_1,percentile_Average_25,percentile_Average_50,percentile_Average_75,"
        "percentile_Average_99,percentile_Average_100\n"
        "o,a1,f1,100,5,10,1000,10,10,50,100,200,900,1000\n")
    (tmp_path / "d_mem.csv").write_text(
        "HashOwner,HashApp,SampleCount,AverageAllocatedMb,AverageAllocatedMb_pct1,"
        "AverageAllocatedMb_pct5,AverageAllocatedMb_pct25,AverageAllocatedMb_pct50,"
        "AverageAllocatedMb_pct75,AverageAllocatedMb_pct95,AverageAllocatedMb_pct99,"
        "AverageAllocatedMb_pct100\no,a1,10,150,100,110,120,150,160,170,180,190\n")
    return tmp_path / "d_inv.csv"


class TestAzure2019:
    @pytest.mark.parametrize("trigger", [False, True])
    def test_counts_become_arrivals_inside_their_minute(self, tmp_path: Path,
                                                        trigger: bool) -> None:
        tr = load_azure2019(_azure(tmp_path, trigger), seed=1)
        times = [a.time_s for a in tr.arrivals]
        assert times == sorted(times)
        f1 = [a.time_s for a in tr.arrivals if a.function == "f1"]
        assert len(f1) == 5 and sum(t < 60 for t in f1) == 3 and sum(t >= 120 for t in f1) == 2
        f2 = [a.time_s for a in tr.arrivals if a.function == "f2"]
        assert len(f2) == 1 and 60 <= f2[0] < 120

    def test_official_file_names_and_numeric_minute_columns(self, tmp_path: Path) -> None:
        inv = tmp_path / "invocations_per_function_md.anon.d01.csv"
        inv.write_text("HashOwner,HashApp,HashFunction,Trigger,1,2\no,a1,f1,timer,1,1\n")
        run = _azure(tmp_path, False).with_name("d_run.csv")
        run.rename(tmp_path / "function_durations_percentiles.anon.d01.csv")
        tr = load_azure2019(inv, seed=1)
        assert [a.function for a in tr.arrivals] == ["f1", "f1"]
        assert tr.arrivals[1].time_s >= 60
        assert tr.stats["f1"].median_duration_ms == 100

    def test_durations_and_memory_are_joined_from_siblings(self, tmp_path: Path) -> None:
        tr = load_azure2019(_azure(tmp_path, False), seed=1)
        f1 = [a for a in tr.arrivals if a.function == "f1"]
        assert all(a.duration_ms is not None and 10 <= a.duration_ms <= 1000 for a in f1)
        assert tr.stats["f1"].median_duration_ms == 100
        assert tr.stats["f1"].median_memory_mib == pytest.approx(150 * 1e6 / 2**20)
        assert all(a.duration_ms is None for a in tr.arrivals if a.function == "f2")

    def test_seeded_and_minutes_limit(self, tmp_path: Path) -> None:
        p = _azure(tmp_path, False)
        assert load_azure2019(p, seed=4) == load_azure2019(p, seed=4)
        assert load_azure2019(p, seed=4) != load_azure2019(p, seed=5)
        assert len(load_azure2019(p, minutes=1, seed=4)) == 3

    def test_bad_count_names_line_and_column(self, tmp_path: Path) -> None:
        p = tmp_path / "x_inv.csv"
        p.write_text("HashOwner,HashApp,HashFunction,minute_1\no,a,f,1\no,a,g,-2\n")
        with pytest.raises(DataFormatError) as err:
            load_azure2019(p)
        assert err.value.line == 3 and err.value.column == "minute_1"
        p.write_text("a,b\n1,2\n")
        with pytest.raises(DataFormatError, match="HashFunction"):
            load_azure2019(p)

    @pytest.mark.skipif(not AZURE400.exists(), reason="../shared/data is absent")
    def test_real_400_function_day(self) -> None:
        tr = load_azure2019(AZURE400, seed=1)
        assert len(tr.functions()) == 400
        assert 250_000 < len(tr) < 270_000
        assert tr.arrivals[0].time_s >= 0 and tr.arrivals[-1].time_s < 1440 * 60
        with_d = sum(1 for a in tr.arrivals if a.duration_ms is not None)
        assert with_d / len(tr) > 0.95
        assert len(load_azure2019(AZURE400, minutes=10, seed=1)) < len(tr) / 50


class TestAzure2021:
    def test_arrival_is_end_minus_duration(self, tmp_path: Path) -> None:
        p = tmp_path / "t.csv"
        p.write_text("app,func,end_timestamp,duration\na,f,10.5,0.5\na,g,5.0,1.0\n")
        tr = load_azure2021(p)
        assert [(a.time_s, a.function, a.duration_ms) for a in tr.arrivals] == [
            (0.0, "a/g", 1000.0), (6.0, "a/f", 500.0)]

    def test_bad_timestamp(self, tmp_path: Path) -> None:
        p = tmp_path / "t.csv"
        p.write_text("app,func,end_timestamp,duration\na,f,soon,0.5\n")
        with pytest.raises(DataFormatError, match=r"t.csv:2 \(column 'end_timestamp'\)"):
            load_azure2021(p)


class TestInvocations:
    def test_round_trip(self, tmp_path: Path) -> None:
        arrivals = [Arrival(0.5, "a", 12.0, 128.0), Arrival(1.25, "b")]
        write_invocations(arrivals, tmp_path / "t.csv")
        tr = load_invocations(tmp_path / "t.csv")
        assert tr.arrivals == (Arrival(0.5, "a", 12.0, 128.0), Arrival(1.25, "b"))
        assert load_invocations(tmp_path / "t.csv", minutes=0.01).arrivals == (arrivals[0],)

    def test_minimal_header_and_errors(self, tmp_path: Path) -> None:
        p = tmp_path / "t.csv"
        p.write_text("time_s,function\n2,b\n1,a\n")
        assert [a.function for a in load_invocations(p).arrivals] == ["a", "b"]
        p.write_text("time_s,function\n1,\n")
        with pytest.raises(DataFormatError, match="column 'function'"):
            load_invocations(p)
        p.write_text("when,function\n")
        with pytest.raises(DataFormatError, match="missing column time_s"):
            load_invocations(p)
