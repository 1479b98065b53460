"""The agent's use of the warm pool and of what it knows meets the SLO.

Two mechanisms on top of the bandit's pmf (docs/agent.md, "Deciding"):

- the resize guard: once in-place resizes have missed the SLO for a function, the mass of
  arms that would need one moves to an arm with an idle warm pod of exactly its size;
- the trust region (opt-in, `trust_steps`): exploration goes at most that many arms below the
  smallest arm known to meet the SLO for similar inputs.
"""

from __future__ import annotations

import json
import random
import struct

import pytest
from agent_synthetic import SyntheticFunction

from shabari.agent import AgentConfig, ShabariAgent
from shabari.agent.bandit import CHECKPOINT_MAGIC
from shabari.core import (
    SLO,
    ConfigError,
    DecisionContext,
    FunctionName,
    FunctionSpec,
    Outcome,
    Size,
    size_grid,
)

FN = SyntheticFunction()
GRID = size_grid([500, 1000, 2000], [256])
WARM = (Size(1000, 256),)


def replay_warm(config: AgentConfig, latency_ms: float, slo_ms: float, resize_ms: float,
                n: int = 300) -> list[int]:
    """A function whose only idle warm pod is 1 vCPU; returns the CPU of each decision.

    Latency does not depend on the CPU; running at another CPU costs `resize_ms` more.
    """
    spec = FunctionSpec(FunctionName("fn"), SLO(latency_ms=slo_ms), GRID,
                        default_size=Size(1000, 256))
    agent = ShabariAgent(3, config)
    chosen = []
    for i in range(n):
        ctx = DecisionContext(spec, {"bytes": 100.0}, now=float(i), warm_idle=WARM)
        d = agent.decide(ctx)
        resized = d.size.cpu_millicores != 1000
        agent.learn(ctx, d, Outcome(latency_ms=latency_ms + (resize_ms if resized else 0.0)))
        chosen.append(d.size.cpu_millicores)
    return chosen


class TestResizeGuard:
    def test_stops_resizing_after_a_resize_missed(self) -> None:
        """A 2 ms function, 10 ms SLO, 50 ms resize: after one missed resize, no more."""
        cfg = AgentConfig(safe_start_outcomes=5)
        guarded = replay_warm(cfg, 2.0, 10.0, 50.0)
        unguarded = replay_warm(AgentConfig(safe_start_outcomes=5, resize_probes=None),
                                2.0, 10.0, 50.0)
        assert sum(c != 1000 for c in guarded) == 1
        assert sum(c != 1000 for c in unguarded) > 1  # the bandit alone pays more

    def test_probes_more_before_judging(self) -> None:
        cfg = AgentConfig(safe_start_outcomes=5, resize_probes=3)
        assert sum(c != 1000 for c in replay_warm(cfg, 2.0, 10.0, 50.0)) == 3

    def test_keeps_resizing_when_resizes_meet_the_slo(self) -> None:
        """A 300 ms function with a 1 s SLO: the resize is harmless, so the agent still moves
        to the cheapest size even though that needs a resize every time."""
        chosen = replay_warm(AgentConfig(safe_start_outcomes=5), 300.0, 1000.0, 50.0)
        assert chosen[-100:].count(500) >= 80

    def test_moved_mass_keeps_a_pmf(self) -> None:
        agent = ShabariAgent(1, AgentConfig(safe_start_outcomes=0))
        spec = FunctionSpec(FunctionName("fn"), SLO(latency_ms=10), GRID,
                            default_size=Size(1000, 256))
        ctx = DecisionContext(spec, {"bytes": 100.0}, now=0.0, warm_idle=WARM)
        d = agent.decide(ctx)
        model = agent._models[spec.name]
        enc = agent._pending[d.decision_id]
        assert enc.flags == [" resize", "", " resize"]
        model.resize_stats["*"] = (1, 1)
        model.met_floor = dict.fromkeys(enc.keys, 1)
        pmf = agent._guard_resize([0.2, 0.3, 0.5], model, enc, 1)
        assert pmf == pytest.approx([0.0, 1.0, 0.0])
        model.resize_stats["*"] = (10, 0)  # resizes have been fine: nothing moves
        assert agent._guard_resize([0.2, 0.3, 0.5], model, enc, 1) == [0.2, 0.3, 0.5]

    def test_no_warm_target_keeps_the_resize(self) -> None:
        """Nothing idle of at least the chosen CPU and the smaller one is not known to meet
        the SLO: the resize stays (a slower size could miss it worse)."""
        agent = ShabariAgent(1, AgentConfig(safe_start_outcomes=0))
        spec = FunctionSpec(FunctionName("fn"), SLO(latency_ms=10), GRID,
                            default_size=Size(2000, 256))
        ctx = DecisionContext(spec, {"bytes": 100.0}, now=0.0, warm_idle=(Size(500, 256),))
        d = agent.decide(ctx)
        model = agent._models[spec.name]
        enc = agent._pending[d.decision_id]
        model.resize_stats["*"] = (1, 1)
        pmf = agent._guard_resize([0.1, 0.2, 0.7], model, enc, 2)
        assert pmf == [0.1, 0.2, 0.7]


def trust_violations(config: AgentConfig, seed: int, n: int = 600) -> int:
    """Decisions below (the smallest arm that has met the SLO so far, else the safe arm) - 1."""
    spec = FN.spec()
    agent = ShabariAgent(seed, config)
    rng = random.Random(seed)
    model = agent._model(spec)
    safe = next(i for i, a in enumerate(model.actions)
                if a.cpu_millicores == spec.safe_default.cpu_millicores)
    smallest_met = safe
    bad = 0
    for i in range(n):
        mb = rng.choice(FN.inputs_mb)
        ctx = DecisionContext(spec, FN.features(mb), now=float(i), slo_ms=FN.slo_ms(mb))
        d = agent.decide(ctx)
        bad += d.action_index < smallest_met - 1
        out = FN.run(mb, d.size, rng)
        agent.learn(ctx, d, out)
        if out.ok and out.latency_ms <= FN.slo_ms(mb):
            smallest_met = min(smallest_met, d.action_index)
    return bad


class TestTrustRegion:
    def test_explores_one_step_below_what_met_the_slo(self) -> None:
        assert trust_violations(AgentConfig(trust_steps=1), 1) == 0
        assert trust_violations(AgentConfig(trust_steps=None), 1) > 0

    def test_reaches_small_sizes_step_by_step(self) -> None:
        spec = FN.spec()
        agent = ShabariAgent(2, AgentConfig(trust_steps=1))
        rng = random.Random(2)
        for i in range(1500):
            mb = rng.choice(FN.inputs_mb)
            ctx = DecisionContext(spec, FN.features(mb), now=float(i), slo_ms=FN.slo_ms(mb))
            d = agent.decide(ctx)
            agent.learn(ctx, d, FN.run(mb, d.size, rng))
        assert min(agent._models[spec.name].met_floor.values()) == 0


class TestCheckpointState:
    def test_trust_and_resize_state_survive_a_checkpoint(self) -> None:
        cfg = AgentConfig(safe_start_outcomes=5, trust_steps=1)
        a = ShabariAgent(5, cfg)
        spec = FunctionSpec(FunctionName("fn"), SLO(latency_ms=10), GRID,
                            default_size=Size(1000, 256))
        for i in range(60):
            ctx = DecisionContext(spec, {"bytes": 100.0}, now=float(i), warm_idle=WARM)
            d = a.decide(ctx)
            a.learn(ctx, d, Outcome(latency_ms=2.0 if d.size.cpu_millicores == 1000 else 52.0))
        b = ShabariAgent(5, cfg)
        b.restore(spec.name, a.checkpoint(spec.name))
        ma, mb = a._models[spec.name], b._models[spec.name]
        assert (mb.met_floor, mb.resize_stats) == (ma.met_floor, ma.resize_stats)
        assert ma.resize_stats

    def test_older_checkpoint_without_them_loads(self) -> None:
        a = ShabariAgent(5)
        spec = FN.spec()
        rng = random.Random(5)
        for i in range(40):
            mb = rng.choice(FN.inputs_mb)
            ctx = DecisionContext(spec, FN.features(mb), now=float(i), slo_ms=FN.slo_ms(mb))
            a.learn(ctx, a.decide(ctx), FN.run(mb, a.decide(ctx).size, rng))
        data = a.checkpoint(spec.name)
        start = len(CHECKPOINT_MAGIC)
        (n,) = struct.unpack_from(">I", data, start)
        meta = json.loads(data[start + 4:start + 4 + n])
        del meta["met_floor"], meta["resize_stats"]
        header = json.dumps(meta).encode()
        old = CHECKPOINT_MAGIC + struct.pack(">I", len(header)) + header + data[start + 4 + n:]
        b = ShabariAgent(5)
        b.restore(spec.name, old)
        assert b._models[spec.name].met_floor == {}
        assert b.state(spec.name) == a.state(spec.name)

    def test_bad_config_rejected(self) -> None:
        with pytest.raises(ConfigError, match="trust_steps"):
            AgentConfig(trust_steps=-1)
        with pytest.raises(ConfigError, match="resize_probes"):
            AgentConfig(resize_probes=-1)
        with pytest.raises(ConfigError, match="resize_max_violation"):
            AgentConfig(resize_max_violation=1.5)
