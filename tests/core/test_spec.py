"""Validation of sizes, SLOs and function specs: precise errors for every bad input."""

from __future__ import annotations

import pytest

from shabari.core import (
    SLO,
    FunctionName,
    FunctionSpec,
    Size,
    SpecError,
    parse_cpu,
    parse_memory,
    size_grid,
)


def spec(**kw: object) -> FunctionSpec:
    base: dict[str, object] = {
        "name": FunctionName("f"),
        "slo": SLO(latency_ms=100),
        "sizes": size_grid([250, 1000], [256, 512]),
    }
    base.update(kw)
    return FunctionSpec(**base)  # type: ignore[arg-type]


class TestSLO:
    @pytest.mark.parametrize("bad", [0, -1.0])
    def test_non_positive_latency(self, bad: float) -> None:
        with pytest.raises(SpecError, match=r"slo\.latencyMs"):
            SLO(latency_ms=bad)

    def test_slowdown_below_one(self) -> None:
        with pytest.raises(SpecError, match=r"slo\.slowdown"):
            SLO(slowdown=0.9)

    def test_exactly_one(self) -> None:
        with pytest.raises(SpecError, match="exactly one"):
            SLO()
        with pytest.raises(SpecError, match="exactly one"):
            SLO(latency_ms=1, slowdown=2)

    def test_bound(self) -> None:
        assert SLO(slowdown=1.5).bound_ms(200) == 300
        assert SLO(latency_ms=50).bound_ms() == 50


class TestSpec:
    def test_empty_grid(self) -> None:
        with pytest.raises(SpecError, match="empty"):
            spec(sizes=())

    def test_duplicate_sizes(self) -> None:
        with pytest.raises(SpecError, match="duplicate"):
            spec(sizes=(Size(250, 256), Size(250, 256)))

    def test_memory_floor(self) -> None:
        with pytest.raises(SpecError, match="below the floor"):
            spec(sizes=(Size(250, 32),))

    def test_gpu_needs_capability(self) -> None:
        with pytest.raises(SpecError, match="GPU-capable"):
            spec(sizes=(Size(250, 256, 1),))

    def test_unknown_featurizer(self) -> None:
        with pytest.raises(SpecError, match="unknown featurizer 'nope'"):
            spec(featurizer="nope").check_featurizer({"image", "auto"})

    def test_default_must_be_in_grid(self) -> None:
        with pytest.raises(SpecError, match="not in the grid"):
            spec(default_size=Size(3000, 256))

    def test_sorted_and_largest(self) -> None:
        s = spec(sizes=(Size(1000, 512), Size(250, 256)))
        assert s.sizes[0] == Size(250, 256)
        assert s.largest == Size(1000, 512) == s.safe_default


class TestUnits:
    @pytest.mark.parametrize(("text", "millis"), [("250m", 250), ("1", 1000), ("0.5", 500),
                                                  ("2", 2000)])
    def test_cpu(self, text: str, millis: int) -> None:
        assert parse_cpu(text) == millis

    @pytest.mark.parametrize(("text", "mib"), [("256Mi", 256), ("1Gi", 1024), ("1G", 954)])
    def test_memory(self, text: str, mib: int) -> None:
        assert parse_memory(text) == mib

    @pytest.mark.parametrize("bad", ["", "2x", "-1", "0", "1.2.3", "m"])
    def test_bad_cpu(self, bad: str) -> None:
        with pytest.raises(SpecError, match="CPU quantity"):
            parse_cpu(bad)

    @pytest.mark.parametrize("bad", ["", "12Zi", "0Mi", "abc"])
    def test_bad_memory(self, bad: str) -> None:
        with pytest.raises(SpecError, match="memory quantity"):
            parse_memory(bad)
