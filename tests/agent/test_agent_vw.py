"""The VW adapter and the feature encoding it reads."""

from __future__ import annotations

import math

import pytest

from shabari.agent.encoding import FeatureVector, scaled_features, shared_line, vw_name
from shabari.agent.vw import SharedPrior


class TestSharedPrior:
    def test_learns_a_function_agnostic_relation(self) -> None:
        """ln(run time / SLO) falls with the arm's vCPU for CPU-bound functions."""
        p = SharedPrior()
        for i in range(600):
            v = (i % 5) - 2  # log2 vCPU in -2..2
            p.learn(f"|s u:1 |a v:{v}", -0.4 * v)
        assert p.predict("|s u:1 |a v:-2") > p.predict("|s u:1 |a v:2") + 1.0
        assert p.updates == 600

    def test_save_load_roundtrip(self) -> None:
        p = SharedPrior()
        for i in range(50):
            p.learn(f"|s x:{i % 3} |a v:1", 0.1 * (i % 3))
        q = SharedPrior.load(p.save())
        assert q.predict("|s x:2 |a v:1") == p.predict("|s x:2 |a v:1")
        p.learn("|s x:1 |a v:1", 0.9)
        q.learn("|s x:1 |a v:1", 0.9)
        assert q.predict("|s x:1 |a v:1") == p.predict("|s x:1 |a v:1")

    def test_garbage_bytes_are_refused(self) -> None:
        with pytest.raises(RuntimeError):
            SharedPrior.load(b"garbage")


class TestEncoding:
    def test_log_scaling_and_sign(self) -> None:
        s = scaled_features({"a": 0.0, "b": math.e - 1, "c": -(math.e - 1)})
        assert s == pytest.approx({"a": 0.0, "b": 1.0, "c": -1.0})

    def test_non_finite_dropped_and_flagged(self) -> None:
        s = scaled_features({"ok": 1.0, "n": math.nan, "i": math.inf, "s": "x"})  # type: ignore[dict-item]
        assert set(s) == {"ok", "nonfinite"}

    def test_names_safe_for_vw(self) -> None:
        assert vw_name("a b:c|d") == "a_b_c_d"
        line = shared_line(FeatureVector.of({"a b:c|d": 5.0}), 100.0, 2.0)
        assert line.startswith("shared |S ")
        assert "|" not in line[len("shared |S"):]
        for token in line.split()[2:]:
            assert token.count(":") <= 1

    def test_tiles_separate_inputs_a_factor_two_apart(self) -> None:
        a = FeatureVector.of({"bytes": 1e6})
        b = FeatureVector.of({"bytes": 2e6})
        assert len(a.tiles) == 2
        assert set(a.tiles) != set(b.tiles)
        line = shared_line(a, None, 2.0).split()
        assert set(a.tiles) <= set(line)

    def test_indicators_are_not_tiled(self) -> None:
        fv = FeatureVector.of({"kind.image": 1.0, "malformed": 0.0, "width": 640.0})
        assert all(t.startswith("width") for t in fv.tiles)
