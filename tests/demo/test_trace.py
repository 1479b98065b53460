"""The demo's bundled trace: seeded, Azure-shaped (skewed popularity, bursty minutes)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from shabari.data.traces import load_invocations
from shabari.demo.trace import DEMO_FUNCTIONS, main, synth_demo_trace

ROOT = Path(__file__).resolve().parents[2]


class TestSynth:
    def test_deterministic_and_sorted(self) -> None:
        a = synth_demo_trace(seed=3)
        assert a == synth_demo_trace(seed=3)
        assert a != synth_demo_trace(seed=4)
        times = [x.time_s for x in a]
        assert times == sorted(times) and times[0] >= 0 and times[-1] < 6 * 60

    def test_popularity_is_skewed_and_minutes_are_bursty(self) -> None:
        a = synth_demo_trace(minutes=20, seed=1)
        counts = Counter(x.function for x in a).most_common()
        assert set(dict(counts)) == set(DEMO_FUNCTIONS)
        assert counts[0][1] >= 3 * counts[-1][1]  # Zipf-like head vs tail
        per_minute = Counter(int(x.time_s // 60) for x in a)
        assert max(per_minute.values()) >= 1.5 * min(per_minute.values())

    def test_committed_trace_is_what_the_generator_writes(self, tmp_path: Path) -> None:
        out = tmp_path / "demo.csv"
        assert main(["--out", str(out)]) == 0
        assert out.read_text() == (ROOT / "traces" / "demo.csv").read_text()
        trace = load_invocations(out)
        assert len(trace) > 100 and set(trace.functions()) == set(DEMO_FUNCTIONS)
