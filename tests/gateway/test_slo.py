"""Per-invocation SLO bounds: absolute, from a perf table, or from observed latencies."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from shabari.core import SLO, FunctionName, FunctionSpec, Size
from shabari.gateway.slo import SloResolver


def _spec(slo: SLO) -> FunctionSpec:
    return FunctionSpec(FunctionName("f"), slo, (Size(500, 256), Size(1000, 256)))


class _Table:
    def estimate_best_latency_ms(self, function: str, features: Mapping[str, float]) -> float:
        return 10.0 * features["bytes"]


class TestSloResolver:
    def test_absolute(self) -> None:
        r = SloResolver()
        spec = _spec(SLO(latency_ms=80))
        assert r.resolve_before(spec, {}) == 80
        assert r.resolve_after(spec, {}, 80, 500.0, True) == 80

    def test_slowdown_from_table(self) -> None:
        r = SloResolver({"f": _Table()})
        assert r.resolve_before(_spec(SLO(slowdown=1.5)), {"bytes": 4.0}) == pytest.approx(60.0)

    def test_slowdown_without_table_learns_best_per_bucket(self) -> None:
        r = SloResolver()
        spec = _spec(SLO(slowdown=2.0))
        feats = {"bytes": 1000.0}
        assert r.resolve_before(spec, feats) is None
        # unknown: judged against itself, so it cannot count as a violation
        assert r.resolve_after(spec, feats, None, 50.0, True) == pytest.approx(100.0)
        assert r.resolve_before(spec, feats) == pytest.approx(100.0)
        r.resolve_after(spec, feats, 100.0, 30.0, True)
        assert r.resolve_before(spec, feats) == pytest.approx(60.0)
        # another size bucket knows nothing yet
        assert r.resolve_before(spec, {"bytes": 1e6}) is None
