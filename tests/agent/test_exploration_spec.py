"""The FunctionSizingPolicy's `exploration` reaches the agent through the spec."""

from __future__ import annotations

from shabari.agent import ShabariAgent
from shabari.core import SLO, DecisionContext, Exploration, FunctionName, FunctionSpec, Outcome
from shabari.core.spec import size_grid

GRID = size_grid([250, 500, 1000, 2000], [512])


def run(exploration: Exploration, n: int = 60) -> list[tuple[str, float, bool]]:
    spec = FunctionSpec(FunctionName("fn"), SLO(latency_ms=400.0), GRID,
                        exploration=exploration)
    agent = ShabariAgent(5)
    out = []
    for i in range(n):
        ctx = DecisionContext(spec=spec, features={"bytes": 1000.0}, now=float(i),
                              warm_idle=GRID, slo_ms=400.0)
        d = agent.decide(ctx)
        out.append((d.reason, d.probability, d.explored))
        # 100 ms of work at 1 vCPU, capped CPU: the smaller sizes are slower, some miss
        agent.learn(ctx, d, Outcome(latency_ms=100.0 / d.size.vcpu,
                                    cpu_seconds=0.1))
    return out


def test_default_explores() -> None:
    assert any(explored for _, _, explored in run(Exploration()))


def test_disabled_never_explores() -> None:
    decisions = run(Exploration(enabled=False))
    assert not any(explored for _, _, explored in decisions)
    assert all(p == 1.0 for _, p, _ in decisions)


def test_rate_caps_every_probe() -> None:
    uncapped = [p for _, p, explored in run(Exploration(), n=200) if explored]
    assert max(uncapped) > 0.05  # the agent's own first probes are likelier than the cap
    capped = [p for _, p, explored in run(Exploration(rate=0.05), n=200) if explored]
    assert capped and max(capped) <= 0.05


def test_warmup_runs_the_safe_size_first() -> None:
    decisions = run(Exploration(warmup_invocations=7), n=10)
    assert [r for r, _, _ in decisions[:7]] == ["safe-start"] * 7
    assert decisions[7][0] != "safe-start"
