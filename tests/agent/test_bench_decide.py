"""`shabari bench decide` runs the real path end to end and writes the DESIGN 4.6 JSON."""

from __future__ import annotations

import json
from pathlib import Path

import featurizers
from shabari.bench.decide import measure, workload
from shabari.cli import main


class TestWorkload:
    def test_inputs_are_real_and_featurize(self) -> None:
        functions, inputs = workload(1)
        assert {i.content_type for i in inputs} >= {"image/png", "image/jpeg", "audio/wav",
                                                   "application/json"}
        for inp in inputs:
            f = featurizers.extract(inp.body, inp.content_type)
            assert "malformed" not in f, inp.content_type
            assert inp.function in functions
        widths = {featurizers.extract(i.body, i.content_type).get("width")
                  for i in inputs if i.content_type == "image/png"}
        assert widths == {64.0, 320.0, 800.0, 1920.0}


class TestMeasure:
    def test_result_schema_and_sanity(self) -> None:
        r = measure(60, seed=1, warmup_per_function=40)
        assert r["decisions"] == 60
        assert 0 < r["us_p50"] <= r["us_p99"]
        assert r["per_second"] > 0
        assert set(r["stages_us_p50"]) == {"featurize", "decide", "place", "learn"}


class TestCLI:
    def test_writes_json(self, tmp_path: Path, capsys: object) -> None:
        out = tmp_path / "sub" / "decide.json"
        assert main(["bench", "decide", "--n", "30", "--json", str(out)]) == 0
        data = json.loads(out.read_text())
        assert {"decisions", "us_p50", "us_p99", "per_second"} <= set(data)
        assert data["decisions"] == 30

    def test_rejects_non_positive_n(self) -> None:
        assert main(["bench", "decide", "--n", "0"]) == 2
