"""Performance tables (DESIGN 4.4): round trip, lookups, and errors that name line and column."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from shabari.core import SLO, DataFormatError, Size
from shabari.data.perf import (
    PerfRow,
    PerfTable,
    load_perf_table,
    load_perf_tables,
    write_perf_table,
)

SMALL, BIG = Size(500, 256), Size(2000, 256)


def _rows() -> list[PerfRow]:
    rows = []
    for inp, px, base in (("small", 1e4, 100.0), ("large", 1e6, 1000.0)):
        for size, factor in ((SMALL, 2.0), (BIG, 1.0)):
            for k in range(3):
                rows.append(PerfRow("resize", inp, size.cpu_millicores, size.memory_mib,
                                    base * factor + k, True, {"pixels": px}, cold_start_ms=300.0,
                                    peak_memory_mib=80.0 + k))
    return rows


class TestRoundTrip:
    def test_write_then_load_keeps_everything(self, tmp_path: Path) -> None:
        write_perf_table(_rows(), tmp_path / "t.csv")
        t = load_perf_table(tmp_path / "t.csv")
        assert t.functions() == ["resize"]
        assert t.sizes("resize") == (SMALL, BIG)
        assert t.inputs("resize") == ("large", "small")
        assert t.features("resize", "small") == {"pixels": 1e4}
        assert t.best_median_latency_ms("resize", "small") == 101.0
        assert t.median_latency_ms("resize", "large", SMALL) == 2001.0
        assert t.peak_memory_mib("resize", "small", BIG) == 82.0
        assert t.cold_start_ms("resize") == 300.0

    def test_spec_offers_exactly_the_grid(self, tmp_path: Path) -> None:
        t = PerfTable(_rows())
        spec = t.spec("resize", SLO(slowdown=1.5))
        assert spec.sizes == (SMALL, BIG)

    def test_several_tables_merge_but_not_twice_the_same_function(self, tmp_path: Path) -> None:
        write_perf_table(_rows(), tmp_path / "a.csv")
        other = [PerfRow("other", "x", 1000, 128, 5.0, True)]
        write_perf_table(other, tmp_path / "b.csv")
        assert load_perf_tables([tmp_path / "a.csv", tmp_path / "b.csv"]).functions() == [
            "other", "resize"]
        with pytest.raises(DataFormatError, match="also defined"):
            load_perf_tables([tmp_path / "a.csv", tmp_path / "a.csv"])


class TestLookups:
    def test_samples_come_from_the_measured_distribution(self) -> None:
        t = PerfTable(_rows())
        rng = random.Random(3)
        seen = {t.sample_latency("resize", "small", SMALL, rng) for _ in range(200)}
        assert seen == {(200.0, True), (201.0, True), (202.0, True)}

    def test_failed_size_is_never_best(self) -> None:
        rows = [PerfRow("f", "i", 500, 128, 10.0, False), PerfRow("f", "i", 500, 128, 10.0, False),
                PerfRow("f", "i", 1000, 128, 50.0, True)]
        t = PerfTable(rows)
        assert t.best_median_latency_ms("f", "i") == 50.0
        assert t.ok_fraction("f", "i", Size(500, 128)) == 0.0

    def test_estimate_uses_the_nearest_input_in_log_space(self) -> None:
        t = PerfTable(_rows())
        assert t.estimate_best_latency_ms("resize", {"pixels": 2e4}) == 101.0
        assert t.estimate_best_latency_ms("resize", {"pixels": 5e5}) == 1001.0
        assert t.estimate_best_latency_ms("resize", {"other": 1.0}) is None
        assert t.estimate_best_latency_ms("unknown", {"pixels": 1.0}) is None

    def test_unknown_function_says_which_exist(self) -> None:
        with pytest.raises(KeyError, match="resize"):
            PerfTable(_rows()).sizes("nope")


class TestErrors:
    def _write(self, tmp_path: Path, text: str) -> Path:
        p = tmp_path / "bad.csv"
        p.write_text(text)
        return p

    def test_missing_column(self, tmp_path: Path) -> None:
        p = self._write(tmp_path, "function,input,cpu_millicores,memory_mib,latency_ms\n")
        with pytest.raises(DataFormatError, match=r"bad.csv:1.*missing column\(s\) ok"):
            load_perf_table(p)

    def test_bad_number_names_line_and_column(self, tmp_path: Path) -> None:
        p = self._write(tmp_path, "function,input,cpu_millicores,memory_mib,latency_ms,ok\n"
                        "f,i,500,128,12,1\nf,i,500,128,fast,1\n")
        with pytest.raises(DataFormatError) as err:
            load_perf_table(p)
        assert err.value.line == 3 and err.value.column == "latency_ms"

    def test_bad_ok_flag(self, tmp_path: Path) -> None:
        p = self._write(tmp_path, "function,input,cpu_millicores,memory_mib,latency_ms,ok\n"
                        "f,i,500,128,12,maybe\n")
        with pytest.raises(DataFormatError, match="column 'ok'"):
            load_perf_table(p)

    def test_unknown_column_and_ragged_row(self, tmp_path: Path) -> None:
        p = self._write(tmp_path, "function,input,cpu_millicores,memory_mib,latency_ms,ok,x\n")
        with pytest.raises(DataFormatError, match="unknown column 'x'"):
            load_perf_table(p)
        p = self._write(tmp_path, "function,input,cpu_millicores,memory_mib,latency_ms,ok\n"
                        "f,i,500,128\n")
        with pytest.raises(DataFormatError, match=r":2: expected 6 cells"):
            load_perf_table(p)

    def test_incomplete_grid_and_empty_file(self, tmp_path: Path) -> None:
        p = self._write(tmp_path, "function,input,cpu_millicores,memory_mib,latency_ms,ok\n"
                        "f,a,500,128,12,1\nf,b,1000,128,12,1\n")
        with pytest.raises(DataFormatError, match="every input needs every size"):
            load_perf_table(p)
        with pytest.raises(DataFormatError, match="empty file"):
            load_perf_table(self._write(tmp_path, ""))
        with pytest.raises(DataFormatError, match="cannot read"):
            load_perf_table(tmp_path / "absent.csv")
