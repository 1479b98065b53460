"""The non-learning policies: what they pick, and that they share the Policy interface."""

from __future__ import annotations

import pytest

from shabari.agent import (
    POLICY_NAMES,
    Policy,
    RandomPolicy,
    StaticDefault,
    StaticMax,
    make_policy,
)
from shabari.core import (
    SLO,
    ConfigError,
    DecisionContext,
    FunctionName,
    FunctionSpec,
    Outcome,
    Size,
)
from shabari.core.spec import size_grid

SPEC = FunctionSpec(FunctionName("f"), SLO(latency_ms=100), size_grid([250, 1000, 4000], [128, 1024]),
                    default_size=Size(1000, 128))
CTX = DecisionContext(SPEC, {"bytes": 10.0}, now=0.0)


class TestStatic:
    def test_static_max_is_largest(self) -> None:
        d = StaticMax().decide(CTX)
        assert d.size == Size(4000, 1024)
        assert d.policy == "static-max" and d.probability == 1.0
        assert SPEC.sizes[d.action_index] == d.size

    def test_static_default_is_declared_default(self) -> None:
        assert StaticDefault().decide(CTX).size == Size(1000, 128)

    def test_static_default_falls_back_to_largest(self) -> None:
        spec = FunctionSpec(FunctionName("g"), SLO(latency_ms=100), size_grid([250, 500], [128]))
        assert StaticDefault().decide(DecisionContext(spec, {}, now=0.0)).size == Size(500, 128)

    def test_learning_changes_nothing(self) -> None:
        p = StaticMax()
        d = p.decide(CTX)
        p.learn(CTX, d, Outcome(latency_ms=1e6))
        assert p.decide(CTX).size == d.size

    def test_ids_unique(self) -> None:
        p = StaticDefault()
        assert len({p.decide(CTX).decision_id for _ in range(50)}) == 50


class TestRandom:
    def test_seeded(self) -> None:
        a = [RandomPolicy(3).decide(CTX).size for _ in range(1)]
        ra, rb = RandomPolicy(3), RandomPolicy(3)
        assert [ra.decide(CTX).size for _ in range(40)] == [rb.decide(CTX).size for _ in range(40)]
        assert a[0] in SPEC.sizes

    def test_covers_the_grid(self) -> None:
        p = RandomPolicy(1)
        ds = [p.decide(CTX) for _ in range(300)]
        assert {d.size for d in ds} == set(SPEC.sizes)
        assert all(d.explored and d.probability == pytest.approx(1 / 6) for d in ds)


class TestFactory:
    @pytest.mark.parametrize("name", POLICY_NAMES)
    def test_by_name(self, name: str) -> None:
        p = make_policy(name, seed=1)
        assert isinstance(p, Policy)
        assert p.name == name
        assert p.decide(CTX).size in SPEC.sizes

    def test_unknown_name(self) -> None:
        with pytest.raises(ConfigError, match="unknown policy"):
            make_policy("oracle")
