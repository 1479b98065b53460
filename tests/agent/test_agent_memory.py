"""The memory model: unsure until it has data, then a high quantile, pushed up hard by OOMs."""

from __future__ import annotations

import math
import random

import pytest

from shabari.agent import MemoryConfig, QuantileMemoryModel
from shabari.agent.encoding import FeatureVector
from shabari.core import ConfigError


def feats(mb: float) -> FeatureVector:
    return FeatureVector.of({"bytes": mb * 1e6})


def peak(mb: float, rng: random.Random) -> float:
    return (50 + 80 * mb) * math.exp(rng.gauss(0, 0.1))


class TestQuantile:
    def test_unknown_until_min_samples(self) -> None:
        m = QuantileMemoryModel(MemoryConfig(min_samples=5))
        for _ in range(4):
            m.learn(feats(1), 100)
            assert m.predict_mib(feats(1)) is None
        m.learn(feats(1), 100)
        assert m.predict_mib(feats(1)) is not None

    def test_covers_high_quantile_and_grows_with_input(self) -> None:
        rng = random.Random(1)
        m = QuantileMemoryModel()
        sizes = [0.1, 0.5, 1, 2, 5, 10]
        for _ in range(3000):
            mb = rng.choice(sizes)
            m.learn(feats(mb), peak(mb, rng))
        preds = [m.predict_mib(feats(mb)) for mb in sizes]
        assert all(p is not None for p in preds)
        assert preds == sorted(preds)  # type: ignore[type-var]
        under = 0
        for _ in range(2000):
            mb = rng.choice(sizes)
            p = m.predict_mib(feats(mb))
            assert p is not None
            under += peak(mb, rng) > p
        assert under / 2000 <= 0.05
        # and not absurdly high: within 2x of the true median peak
        for mb, p in zip(sizes, preds, strict=True):
            assert p is not None and p < 2 * (50 + 80 * mb)

    def test_ignores_missing_peaks(self) -> None:
        m = QuantileMemoryModel()
        for bad in (0.0, -1.0, math.nan, math.inf):
            m.learn(feats(1), bad)
        assert m.samples == 0


class TestOOM:
    def test_oom_lifts_prediction_above_limit(self) -> None:
        m = QuantileMemoryModel(MemoryConfig(min_samples=1))
        for _ in range(50):
            m.learn(feats(1), 100)
        before = m.predict_mib(feats(1))
        assert before is not None and before < 200
        m.learn_oom(feats(1), 200)
        after = m.predict_mib(feats(1))
        assert after is not None and after >= 200 * 1.5
        assert m.ooms == 1 and m.samples == 50

    def test_oom_before_any_sample(self) -> None:
        m = QuantileMemoryModel(MemoryConfig(min_samples=1))
        m.learn_oom(feats(1), 128)
        m.learn(feats(1), 50)
        p = m.predict_mib(feats(1))
        assert p is not None and p > 128  # the first sample does not erase the OOM


class TestState:
    def test_raw_mapping_same_as_feature_vector(self) -> None:
        m = QuantileMemoryModel(MemoryConfig(min_samples=1))
        m.learn({"bytes": 1e6}, 100)
        assert m.predict_mib({"bytes": 1e6}) == m.predict_mib(feats(1))

    def test_json_roundtrip(self) -> None:
        m = QuantileMemoryModel()
        rng = random.Random(2)
        for _ in range(100):
            mb = rng.random() * 5
            m.learn(feats(mb), peak(mb, rng))
        m2 = QuantileMemoryModel.from_json(m.to_json())
        assert m2.predict_mib(feats(3)) == m.predict_mib(feats(3))

    def test_bad_json(self) -> None:
        with pytest.raises(ConfigError):
            QuantileMemoryModel.from_json({"samples": "x"})

    def test_bad_config(self) -> None:
        with pytest.raises(ConfigError):
            MemoryConfig(quantile=1.0)
        with pytest.raises(ConfigError):
            MemoryConfig(margin=-0.1)
