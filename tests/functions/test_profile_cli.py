"""`shabari profile`: real runs at each size become a DESIGN 4.4 performance table."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from shabari.backends.cgroups import CgroupMode, detect
from shabari.cli import main
from shabari.core import Size, SpecError
from shabari.data.perf import PerfRow, load_perf_table
from shabari.profiling import memory_twin_ratios, noise_line, parse_size_arg, profile_function
from shabari.runtime.catalog import GeneratedInput, bundled_functions


class TestSizeArguments:
    def test_cpu_memory_and_optional_gpu(self) -> None:
        assert parse_size_arg("250m:256Mi") == Size(250, 256)
        assert parse_size_arg("2:1Gi:1") == Size(2000, 1024, 1)

    @pytest.mark.parametrize("bad", ["250m", "lots:1Gi", "1:many", "1:2:3:4"])
    def test_bad_sizes_are_spec_errors(self, bad: str) -> None:
        with pytest.raises(SpecError):
            parse_size_arg(bad)


def _row(inp: str, cpu: int, mem: int, ms: float, ok: bool = True) -> PerfRow:
    return PerfRow("fn", inp, cpu, mem, ms, ok)


class TestNoiseYardstick:
    """Medians at memory sizes that do not limit the input should agree; the gap is noise."""

    def test_ratio_of_medians_across_memory_sizes_at_one_cpu(self) -> None:
        rows = [_row("a", 250, 256, ms) for ms in (100, 110, 400)]  # median 110
        rows += [_row("a", 250, 512, ms) for ms in (90, 99, 105)]   # median 99
        rows += [_row("a", 1000, 256, 10), _row("a", 1000, 512, 20)]
        rows += [_row("b", 250, 256, 5)]  # a single memory size: nothing to compare
        assert memory_twin_ratios(rows) == pytest.approx([110 / 99, 2.0])
        assert "1/2 (input, CPU) pairs differ by more than 1.5x" in noise_line(rows)

    def test_cells_with_failures_are_left_out(self) -> None:
        rows = [_row("a", 250, 64, 500, ok=False), _row("a", 250, 256, 10),
                _row("a", 250, 512, 12)]
        assert memory_twin_ratios(rows) == pytest.approx([1.2])
        assert noise_line(rows[:2]) == ""


class TestProfileCommand:
    def test_writes_a_loadable_table_with_features_and_measurements(
            self, tmp_path: Path) -> None:
        out = tmp_path / "perf.csv"
        rc = main(["profile", "markdown", "--sizes", "250m:128Mi", "1:256Mi", "--inputs", "2",
                   "--out", str(out)])
        assert rc == 0
        with out.open() as fh:
            header = next(csv.reader(fh))
        for col in ("function", "input", "cpu_millicores", "memory_mib", "latency_ms", "ok",
                    "cold_start_ms", "peak_memory_mib", "cpu_used_millicores",
                    "feature.bytes", "feature.lines"):
            assert col in header
        table = load_perf_table(out)
        assert table.sizes("markdown") == (Size(250, 128), Size(1000, 256))
        assert len(table.inputs("markdown")) == 2
        for inp in table.inputs("markdown"):
            for size in table.sizes("markdown"):
                assert table.ok_fraction("markdown", inp, size) == 1.0
                assert (table.peak_memory_mib("markdown", inp, size) or 0) > 0
        assert (table.cold_start_ms("markdown") or 0) > 0

    def test_unknown_function_is_a_clear_error(self, capsys: pytest.CaptureFixture[str]) -> None:
        assert main(["profile", "no-such-function"]) == 1
        err = capsys.readouterr().err
        assert "unknown function 'no-such-function'" in err and "markdown" in err


HOG = """
def handle(body, content_type, ctx):
    block = bytearray(b"\\x01") * (int(body) * 1024 * 1024)
    return str(len(block)).encode()
"""


@pytest.mark.cgroups
@pytest.mark.skipif(detect().mode is CgroupMode.NONE, reason="needs writable cgroups (root)")
async def test_an_oom_at_a_small_size_is_a_failed_row_not_an_abort(tmp_path: Path) -> None:
    d = tmp_path / "hog"
    d.mkdir()
    (d / "handler.py").write_text(HOG)
    (d / "function.yaml").write_text("slo: {slowdown: 1.5}\nsizes: {cpu: ['1'], "
                                     "memory: ['96Mi', '320Mi']}\n")
    fn = bundled_functions(tmp_path)["hog"]
    # big first: its OOM at 96Mi kills that pod, and the small input must still get measured
    inputs = [GeneratedInput(b"160", "text/plain", "big"),
              GeneratedInput(b"8", "text/plain", "small")]
    rows = await profile_function(fn, fn.spec.sizes, inputs, progress=False)
    by = {(r.input, r.memory_mib): r for r in rows}
    assert len(rows) == 4
    assert not by[("big", 96)].ok
    assert by[("big", 320)].ok and (by[("big", 320)].peak_memory_mib or 0) >= 160
    assert by[("small", 96)].ok  # on a fresh pod started after the OOM
