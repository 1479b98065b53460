"""ShabariAgent's contract: determinism, safe start, checkpoints, OOM escalation, bad input."""

from __future__ import annotations

import math
import random

import pytest
from agent_synthetic import SyntheticFunction

from shabari.agent import AgentConfig, LearningPolicy, Policy, ShabariAgent
from shabari.agent.encoding import FeatureVector
from shabari.agent.shabari_agent import COLD, RESIZE, WARM, _flags
from shabari.core import (
    SLO,
    ConfigError,
    DecisionContext,
    FunctionName,
    FunctionSpec,
    Outcome,
    OutcomeStatus,
    Size,
    size_grid,
)
from shabari.core.types import Decision

FN = SyntheticFunction()


def drive(agent: ShabariAgent, seed: int, n: int, spec: FunctionSpec | None = None,
          start: int = 0) -> list[Decision]:
    spec = spec or FN.spec()
    rng = random.Random(seed * 7919 + start)
    out = []
    for i in range(start, start + n):
        mb = rng.choice(FN.inputs_mb)
        ctx = DecisionContext(spec, FN.features(mb), now=float(i), slo_ms=FN.slo_ms(mb))
        d = agent.decide(ctx)
        agent.learn(ctx, d, FN.run(mb, d.size, rng))
        out.append(d)
    return out


def key(ds: list[Decision]) -> list[tuple[Size, int, float, bool, str]]:
    return [(d.size, d.action_index, d.probability, d.explored, d.reason) for d in ds]


class TestProtocol:
    def test_is_a_learning_policy(self) -> None:
        agent = ShabariAgent(1)
        assert isinstance(agent, Policy)
        assert isinstance(agent, LearningPolicy)
        assert agent.name == "shabari"

    def test_decision_records_everything(self) -> None:
        ds = drive(ShabariAgent(3), 3, 80)
        assert len({d.decision_id for d in ds}) == len(ds)
        assert all(d.function == FN.spec().name and d.policy == "shabari" for d in ds)
        assert all(0 < d.probability <= 1 for d in ds)
        assert all(d.size in FN.spec().sizes for d in ds)
        assert any(d.reason.startswith("sure") for d in ds), "the evidence decides"
        # model version counts learned outcomes
        assert [d.model_version for d in ds[:5]] == [0, 1, 2, 3, 4]

    def test_bad_config_rejected(self) -> None:
        with pytest.raises(ConfigError):
            AgentConfig(explore=2.0)
        with pytest.raises(ConfigError):
            AgentConfig(unseen="random")  # type: ignore[arg-type]
        with pytest.raises(ConfigError):
            AgentConfig(safe_start_outcomes=-1)


class TestDeterminism:
    def test_same_seed_same_decisions(self) -> None:
        assert key(drive(ShabariAgent(5), 5, 150)) == key(drive(ShabariAgent(5), 5, 150))

    def test_other_seed_other_decisions(self) -> None:
        assert key(drive(ShabariAgent(5), 5, 150)) != key(drive(ShabariAgent(6), 5, 150))

    def test_functions_do_not_perturb_each_other(self) -> None:
        """Each function draws from its own RNG: interleaving another one changes nothing
        (with the cross-function prior off: sharing what was learned is the prior's job)."""
        cfg = AgentConfig(unseen="default")
        a = ShabariAgent(9, cfg)
        alone = drive(a, 9, 120)
        other = FN.spec("other")
        # drive in the same call pattern as `alone`, interleaved with another function
        b2 = ShabariAgent(9, cfg)
        rng = random.Random(9 * 7919)
        got = []
        spec = FN.spec()
        for i in range(120):
            drive(b2, 1000 + i, 1, spec=other)
            mb = rng.choice(FN.inputs_mb)
            ctx = DecisionContext(spec, FN.features(mb), now=float(i), slo_ms=FN.slo_ms(mb))
            d = b2.decide(ctx)
            b2.learn(ctx, d, FN.run(mb, d.size, rng))
            got.append(d)
        assert key(got) == key(alone)


class TestSafeStart:
    def test_safe_default_until_enough_outcomes(self) -> None:
        spec = FunctionSpec(FunctionName("f"), SLO(latency_ms=100),
                            size_grid([250, 1000, 2000], [128, 512]),
                            default_size=Size(1000, 512))
        agent = ShabariAgent(1, AgentConfig(safe_start_outcomes=10))
        ctx = DecisionContext(spec, {"bytes": 1000.0}, now=0.0)
        for _ in range(10):
            assert agent.state(spec.name).phase == "safe-start"
            d = agent.decide(ctx)
            assert d.size == Size(1000, 512)
            assert d.reason == "safe-start" and d.probability == 1.0 and not d.explored
            agent.learn(ctx, d, Outcome(latency_ms=50, peak_memory_mib=100))
        assert agent.state(spec.name).phase == "exploring"
        assert agent.state(spec.name).outcomes == 10
        assert agent.decide(ctx).reason != "safe-start"

    def test_largest_without_default(self) -> None:
        agent = ShabariAgent(1, AgentConfig(safe_start_outcomes=1))
        d = agent.decide(DecisionContext(FN.spec(), FN.features(1.0), now=0.0))
        assert d.size == FN.spec().largest

    def test_unknown_function_state(self) -> None:
        s = ShabariAgent(1).state(FunctionName("nope"))
        assert (s.outcomes, s.model_version, s.phase) == (0, 0, "safe-start")


class TestCheckpoint:
    def test_restore_continues_identically(self) -> None:
        a = ShabariAgent(4)
        drive(a, 4, 200)
        data = a.checkpoint(FN.spec().name)
        b = ShabariAgent(4)
        b.restore(FN.spec().name, data)
        assert b.state(FN.spec().name) == a.state(FN.spec().name)
        assert key(drive(a, 4, 100, start=200)) == key(drive(b, 4, 100, start=200))

    def test_checkpoint_is_not_pickle(self) -> None:
        a = ShabariAgent(4)
        drive(a, 4, 40)
        data = a.checkpoint(FN.spec().name)
        assert data.startswith(b"SHABARI-AGENT-2\n")
        assert b"\x80\x04\x95" not in data[:64]  # no pickle protocol header

    @pytest.mark.parametrize("data", [b"", b"garbage", b"SHABARI-AGENT-2\n\x00",
                                      b"SHABARI-AGENT-1\n\x00\x00\x00\x02{}",
                                      b"SHABARI-AGENT-2\n\x00\x00\x00\x05{bad}",
                                      b"SHABARI-AGENT-2\n\x00\x00\x00\x02[]",
                                      b"SHABARI-AGENT-2\n\x00\x00\x00\x02{}"])
    def test_corrupt_checkpoint_is_a_clear_error(self, data: bytes) -> None:
        with pytest.raises(ConfigError, match="checkpoint"):
            ShabariAgent(1).restore(FunctionName("f"), data)

    def test_corrupt_vw_bytes_is_a_clear_error(self) -> None:
        a = ShabariAgent(4)
        drive(a, 4, 40)
        data = a.checkpoint(FN.spec().name)
        with pytest.raises(ConfigError, match="VW"):
            ShabariAgent(1).restore(FN.spec().name, data[:-300] + b"x" * 10)

    def test_vw_rejects_garbage_even_with_matching_checksum(self) -> None:
        import hashlib
        import json
        import struct

        a = ShabariAgent(4)
        drive(a, 4, 120)
        data = a.checkpoint(FN.spec().name)
        (n,) = struct.unpack_from(">I", data, 16)
        meta = json.loads(data[20:20 + n])
        meta["vw_sha256"] = hashlib.sha256(b"garbage").hexdigest()
        header = json.dumps(meta).encode()
        bad = b"SHABARI-AGENT-2\n" + struct.pack(">I", len(header)) + header + b"garbage"
        with pytest.raises(ConfigError, match="VW"):
            ShabariAgent(1).restore(FN.spec().name, bad)

    def test_roundtrip_keeps_every_part_of_the_state(self) -> None:
        """The whole model state survives: evidence, memory model, RNG, shared estimates."""
        a = ShabariAgent(4)
        drive(a, 4, 150)
        b = ShabariAgent(4)
        b.restore(FN.spec().name, a.checkpoint(FN.spec().name))

        def meta(agent: ShabariAgent) -> dict[str, object]:
            import json
            import struct
            data = agent.checkpoint(FN.spec().name)
            (n,) = struct.unpack_from(">I", data, 16)
            doc: dict[str, object] = json.loads(data[20:20 + n])
            del doc["vw_sha256"]  # VW writes a loaded model's options differently
            return doc

        assert meta(b) == meta(a)
        features = a._prior_features(a._fns[FN.spec().name], FeatureVector.of({"bytes": 1e6}),
                                     100.0, a._fns[FN.spec().name].actions[0])
        assert b._prior.predict(features) == a._prior.predict(features)

    def test_checkpoint_of_unknown_function(self) -> None:
        with pytest.raises(ConfigError, match="no model"):
            ShabariAgent(1).checkpoint(FunctionName("nope"))

    def test_changed_grid_starts_fresh(self) -> None:
        a = ShabariAgent(4)
        drive(a, 4, 60)
        b = ShabariAgent(4)
        b.restore(FN.spec().name, a.checkpoint(FN.spec().name))
        spec2 = FunctionSpec(FN.spec().name, SLO(latency_ms=100), size_grid([500, 1000], [256]))
        d = b.decide(DecisionContext(spec2, {"bytes": 1.0}, now=0.0))
        assert d.size in spec2.sizes
        assert b.state(spec2.name).outcomes == 0


class TestOOM:
    SPEC = FunctionSpec(FunctionName("m"), SLO(latency_ms=1000),
                        size_grid([500, 1000], [128, 256, 512, 1024]))

    def test_escalate_steps_memory_up_then_none(self) -> None:
        agent = ShabariAgent(1)
        ctx = DecisionContext(self.SPEC, {"bytes": 10.0}, now=0.0)
        d = agent.decide(ctx)
        low = Decision(d.decision_id, d.function, Size(500, 128), 0, 0.4, 3, "probe p=0.40")
        up = agent.escalate(ctx, low)
        assert up is not None
        assert up.size == Size(500, 256)
        assert (up.action_index, up.probability, up.reason) == (0, 0.4, "oom-escalation")
        assert up.decision_id != low.decision_id
        top = Decision(d.decision_id, d.function, Size(1000, 1024), 1, 1.0, 3, "x")
        assert agent.escalate(ctx, top) is None

    def test_oom_pushes_memory_above_the_failed_limit(self) -> None:
        agent = ShabariAgent(1, AgentConfig(safe_start_outcomes=0))
        feats = {"bytes": 5e6}
        ctx = DecisionContext(self.SPEC, feats, now=0.0)
        for _ in range(30):  # learn that this input peaks at ~100 MiB
            d = agent.decide(ctx)
            agent.learn(ctx, d, Outcome(latency_ms=10, peak_memory_mib=100))
        d = agent.decide(ctx)
        assert d.size.memory_mib == 128
        # now the same input OOMs at 128: the next decision must use more
        agent.learn(ctx, d, Outcome(latency_ms=5, status=OutcomeStatus.OOM,
                                    peak_memory_mib=128))
        assert agent.decide(ctx).size.memory_mib > 128

    def test_oom_does_not_teach_run_time(self) -> None:
        agent = ShabariAgent(1, AgentConfig(safe_start_outcomes=0))
        ctx = DecisionContext(self.SPEC, {"bytes": 1.0}, now=0.0)
        d = agent.decide(ctx)
        agent.learn(ctx, d, Outcome(latency_ms=1, status=OutcomeStatus.OOM))
        fs = agent._fns[self.SPEC.name]
        for b in fs.bins.values():
            assert not b.observed and b.mem_oom == d.size.memory_mib
        assert fs.memory.ooms == 1


class TestBadInput:
    @pytest.mark.parametrize("features", [
        {},
        {"bytes": math.nan},
        {"bytes": math.inf, "width": -math.inf},
        {"weird name:with|bars": 3.0, "text": "not a number"},  # type: ignore[dict-item]
        {"bytes": 1e308, "neg": -5.0},
    ])
    def test_decides_and_learns_on_any_features(self, features: dict[str, float]) -> None:
        agent = ShabariAgent(1, AgentConfig(safe_start_outcomes=2))
        for i in range(5):
            ctx = DecisionContext(FN.spec(), features, now=float(i), slo_ms=100.0)
            d = agent.decide(ctx)
            assert d.size in FN.spec().sizes
            agent.learn(ctx, d, Outcome(latency_ms=math.nan if i == 3 else 50.0,
                                        peak_memory_mib=math.inf if i == 2 else 80.0))

    def test_slowdown_slo_without_bound_still_learns(self) -> None:
        agent = ShabariAgent(1, AgentConfig(safe_start_outcomes=1))
        ctx = DecisionContext(FN.spec(), {"bytes": 10.0}, now=0.0)  # no slo_ms
        for _ in range(3):
            d = agent.decide(ctx)
            agent.learn(ctx, d, Outcome(latency_ms=10.0))
        assert agent.state(FN.spec().name).outcomes == 3

    @pytest.mark.parametrize("slo", [math.nan, -5.0, 0.0, math.inf])
    def test_broken_slo_bound(self, slo: float) -> None:
        agent = ShabariAgent(1, AgentConfig(safe_start_outcomes=1))
        ctx = DecisionContext(FN.spec(), {"bytes": 10.0}, now=0.0, slo_ms=slo)
        for _ in range(3):
            d = agent.decide(ctx)
            assert d.size in FN.spec().sizes
            agent.learn(ctx, d, Outcome(latency_ms=10.0))
        assert agent.state(FN.spec().name).outcomes == 3

    def test_learn_without_decide_of_this_agent(self) -> None:
        """A decision logged by another instance (e.g. before a restart) is still learnable."""
        a, b = ShabariAgent(1), ShabariAgent(2)
        ctx = DecisionContext(FN.spec(), {"bytes": 10.0}, now=0.0, slo_ms=50.0)
        d = a.decide(ctx)
        b.learn(ctx, d, Outcome(latency_ms=10.0))
        assert b.state(FN.spec().name).outcomes == 1


class TestActions:
    def test_gpu_variants_are_arms(self) -> None:
        spec = FunctionSpec(FunctionName("g"), SLO(latency_ms=100),
                            size_grid([1000, 2000], [1024, 2048], [0, 1]), gpu_capable=True)
        agent = ShabariAgent(1, AgentConfig(safe_start_outcomes=0))
        fs = agent._fn(spec)
        assert [(a.cpu_millicores, a.gpu) for a in fs.actions] == [
            (1000, 0), (2000, 0), (1000, 1), (2000, 1)]
        # a GPU is weighted as 8 vCPUs: the CPU-only arms are cheaper
        assert fs.order == [0, 1, 2, 3]
        ctx = DecisionContext(spec, {"bytes": 10.0}, now=0.0)
        for _ in range(20):
            d = agent.decide(ctx)
            assert d.size in spec.sizes
            # without a GPU it is slow, with one fast: the agent must find the GPU arm
            agent.learn(ctx, d, Outcome(latency_ms=30.0 if d.size.gpu else 500.0))
        assert agent.decide(ctx).size.gpu == 1

    def test_many_arms(self) -> None:
        cpus = list(range(100, 4100, 100))  # 40 CPU options
        spec = FunctionSpec(FunctionName("many"), SLO(latency_ms=100), size_grid(cpus, [256]))
        agent = ShabariAgent(1, AgentConfig(safe_start_outcomes=0))
        ctx = DecisionContext(spec, {"bytes": 10.0}, now=0.0)
        for _ in range(30):
            d = agent.decide(ctx)
            agent.learn(ctx, d, Outcome(latency_ms=50.0))
        assert agent.state(spec.name).outcomes == 30

    @pytest.mark.parametrize(("resize", "flags"), [
        (True, [RESIZE, WARM, RESIZE]),
        (False, [WARM, WARM, COLD]),  # without resize a pod with more CPU still fits as it is
    ])
    def test_warm_pool_flags(self, resize: bool, flags: list[int]) -> None:
        sizes = [Size(500, 512), Size(1000, 512), Size(2000, 512)]
        ctx = DecisionContext(FN.spec(), {}, now=0.0, warm_idle=(Size(1000, 512),),
                              supports_resize=resize)
        assert _flags(ctx, sizes) == flags
        assert _flags(DecisionContext(FN.spec(), {}, now=0.0), sizes) == [COLD] * 3

    def test_flags_follow_the_scheduler_smallest_memory_first(self) -> None:
        # the scheduler takes the smallest idle memory that fits, then its exact CPU if any
        warm = (Size(1000, 1024), Size(500, 512))
        ctx = DecisionContext(FN.spec(), {}, now=0.0, warm_idle=warm)
        assert _flags(ctx, [Size(1000, 256), Size(500, 256)]) == [RESIZE, WARM]

    def test_learns_to_avoid_resizes_for_fast_functions(self) -> None:
        """A 2 ms function whose warm pod is at 1 vCPU: resizing costs 50 ms, i.e. the SLO."""
        spec = FunctionSpec(FunctionName("fast"), SLO(latency_ms=10),
                            size_grid([500, 1000, 2000], [256]))
        agent = ShabariAgent(1)
        warm = (Size(1000, 256),)
        chosen = []
        for i in range(400):
            ctx = DecisionContext(spec, {"bytes": 100.0}, now=float(i), warm_idle=warm)
            d = agent.decide(ctx)
            resized = d.size.cpu_millicores != 1000
            agent.learn(ctx, d, Outcome(latency_ms=52.0 if resized else 2.0,
                                        cpu_seconds=0.0005 if not resized else 0.0))
            chosen.append(d.size.cpu_millicores)
        tail = chosen[-100:]
        assert tail.count(1000) >= 95
        assert agent._resize_ms is not None and agent._resize_ms > 40
