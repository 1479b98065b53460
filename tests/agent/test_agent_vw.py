"""The VW adapter and the feature encoding it reads."""

from __future__ import annotations

import math

import pytest

from shabari.agent.encoding import FeatureVector, scaled_features, shared_line, vw_name
from shabari.agent.vw import CBModel, VWConfig

ACTIONS = ["|A a0", "|A a1", "|A a2"]


class TestCBModel:
    def test_pmf_is_a_distribution(self) -> None:
        pmf = CBModel().predict("shared |S x:1", ACTIONS)
        assert len(pmf) == 3
        assert sum(pmf) == pytest.approx(1.0, abs=1e-5)

    def test_learns_the_cheap_action(self) -> None:
        m = CBModel()
        for i in range(300):
            a = i % 3
            m.learn("shared |S x:1", ACTIONS, a, [1.0, 0.1, 0.6][a], 1 / 3)
        pmf = m.predict("shared |S x:1", ACTIONS)
        assert max(range(3), key=pmf.__getitem__) == 1
        assert pmf[1] > 0.8

    def test_pmf_follows_squarecb_formula(self) -> None:
        """`ShabariAgent._mask` relies on p = 1 / (K + gamma * gap) with VW's gamma."""
        cfg = VWConfig()
        m = CBModel(cfg)
        costs = [0.1, 0.3, 0.6]
        for i in range(200):
            m.learn("shared |S x", ACTIONS, i % 3, costs[i % 3], 1 / 3)
        pmf = m.predict("shared |S x", ACTIONS)
        gamma = cfg.gamma(200)
        for j in (1, 2):
            assert pmf[j] == pytest.approx(1 / (3 + gamma * (costs[j] - costs[0])), rel=0.2)

    def test_save_load_roundtrip(self) -> None:
        m = CBModel()
        for i in range(50):
            m.learn("shared |S x:1", ACTIONS, i % 3, 0.1 * (i % 3), 1 / 3)
        m2 = CBModel.load(m.save())
        assert m2.predict("shared |S x:1", ACTIONS) == m.predict("shared |S x:1", ACTIONS)
        m.learn("shared |S x:1", ACTIONS, 2, 0.9, 0.2)
        m2.learn("shared |S x:1", ACTIONS, 2, 0.9, 0.2)
        assert m2.predict("shared |S x:1", ACTIONS) == m.predict("shared |S x:1", ACTIONS)

    def test_chosen_out_of_range(self) -> None:
        with pytest.raises(IndexError):
            CBModel().learn("shared |S x", ACTIONS, 3, 0.1, 0.5)


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
