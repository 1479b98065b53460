"""The replica protocol in-process: outcome records round-trip, a learner learns shipped
outcomes, snapshots go only to replicas that lack them and make a follower's model the
learner's."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import featurizers
from shabari.agent import make_policy
from shabari.core import DecisionContext, FunctionName, Outcome, OutcomeStatus, Size
from shabari.gateway.cli import make_backend
from shabari.gateway.config import FunctionEntry, GatewayConfig
from shabari.gateway.replica import (
    FOLLOWER,
    ModelAges,
    Replica,
    ReplicaConfig,
    decode_outcome,
    encode_outcome,
    parse_have,
)
from shabari.gateway.service import Gateway
from shabari.runtime.catalog import bundled_functions

NOOP = bundled_functions()["noop"]
FN = FunctionName("noop")


def gateway(seed: int, state_dir: Path | None = None) -> Gateway:
    entries = {"noop": FunctionEntry(spec=NOOP.spec, directory=NOOP.directory)}
    return Gateway(functions={"noop": NOOP.spec}, policy=make_policy("shabari", seed),
                   backend=make_backend("local", entries), featurize=featurizers.extract,
                   config=GatewayConfig(state_dir=state_dir))


def outcomes(n: int, seed: int = 1) -> list[tuple[DecisionContext, object, Outcome]]:
    policy = make_policy("shabari", seed)
    out = []
    for i in range(n):
        ctx = DecisionContext(spec=NOOP.spec, features={"bytes": 100.0 + i}, now=float(i),
                              warm_idle=(Size(1000, 128),), slo_ms=5.0)
        d = policy.decide(ctx)
        status = OutcomeStatus.OOM if i == 3 else OutcomeStatus.OK
        out.append((ctx, d, Outcome(latency_ms=1.5, status=status, cpu_seconds=0.001,
                                    peak_memory_mib=30.0, detail="x" * 900)))
    return out


class TestOutcomeRecords:
    def test_round_trip_keeps_what_learn_needs(self) -> None:
        for ctx, d, o in outcomes(6):
            ctx2, d2, o2 = decode_outcome(encode_outcome(ctx, d, o, 0.25), NOOP.spec)
            assert ctx2 == ctx and d2 == d
            assert o2 == dataclasses.replace(o, detail=o.detail[:500])

    def test_have_query(self) -> None:
        assert parse_have("noop:12,resize:3,junk,bad:x,:4") == {"noop": 12, "resize": 3}
        assert parse_have(None) == {}


class TestLearnerAndFollower:
    def test_shipped_outcomes_are_learned_and_snapshots_follow(self) -> None:
        learner_gw, follower_gw = gateway(1), gateway(2)
        learner = Replica(learner_gw, ReplicaConfig("a", "http://a"))
        follower = Replica(follower_gw, ReplicaConfig("b", "http://b"))
        learner.role = "learner"
        assert follower.role == FOLLOWER
        # the follower's hook puts outcomes in its outbox instead of learning them
        for ctx, d, o in outcomes(50):
            follower.learn(ctx, d, o)  # type: ignore[arg-type]
        assert len(follower.outbox) == 50
        assert follower_gw.policy.state(FN).outcomes == 0  # type: ignore[attr-defined]
        assert learner.receive(list(follower.outbox)) == 50
        assert learner_gw.learning_state("noop")["outcomes"] == 50
        # snapshots: only what the asker lacks
        snaps = learner.snapshots({})
        assert set(snaps) == {"noop"} and snaps["noop"]["version"] == 50
        assert learner.snapshots({"noop": 50}) == {}
        import base64

        follower_gw.policy.restore(FN, base64.b64decode(snaps["noop"]["checkpoint"]))  # type: ignore[attr-defined]
        assert follower_gw.learning_state("noop")["outcomes"] == 50
        assert follower_gw.learning_state("noop")["phase"] == \
            learner_gw.learning_state("noop")["phase"]

    def test_records_of_unknown_functions_or_malformed_are_counted_not_learned(self) -> None:
        learner = Replica(gateway(1), ReplicaConfig("a", "http://a"))
        learner.role = "learner"
        (ctx, d, o), = outcomes(1)
        good = encode_outcome(ctx, d, o)  # type: ignore[arg-type]
        assert learner.receive([{**good, "function": "nope"}, {"function": "noop"}, good]) == 1
        assert learner.counters["unknown_function"] == 1 and learner.counters["malformed"] == 1


class TestModelAges:
    def test_age_is_time_since_the_last_sync_before_the_decision(self) -> None:
        ages = ModelAges()
        assert ages.age_at(5.0) is None
        ages.synced(1.0)
        ages.synced(2.0)
        assert ages.age_at(1.5) == 0.5 and ages.age_at(2.75) == 0.75
        assert ages.age_at(0.5) is None
        for a in (0.1, 0.2, 0.9):
            ages.record(a)
        assert ages.summary()["max_s"] == 0.9 and ages.summary()["decisions"] == 3


class TestTakeoverFromTheLastCheckpoint:
    """A new learner continues from whichever knows more: its snapshot or the checkpoint the
    old learner wrote to the shared state dir."""

    @staticmethod
    def _write_checkpoint(state: Path, n: int) -> None:
        old_learner = make_policy("shabari", 7)
        for ctx, d, o in outcomes(n):
            old_learner.learn(ctx, d, o)  # type: ignore[arg-type]
        (state / "models").mkdir(parents=True, exist_ok=True)
        (state / "models" / "noop.ckpt").write_bytes(old_learner.checkpoint(FN))  # type: ignore[attr-defined]

    async def test_a_replica_without_a_snapshot_takes_the_checkpoint(self, tmp_path: Path
                                                                     ) -> None:
        self._write_checkpoint(tmp_path, 30)
        gw = gateway(2, tmp_path)
        replica = Replica(gw, ReplicaConfig("b", "http://b"))
        await replica.started_leading()
        assert replica.learned_at_takeover == {"noop": 30}
        assert gw.learning_state("noop")["outcomes"] == 30

    async def test_a_fresher_snapshot_wins_over_an_older_checkpoint(self, tmp_path: Path
                                                                   ) -> None:
        self._write_checkpoint(tmp_path, 30)
        gw = gateway(2, tmp_path)
        replica = Replica(gw, ReplicaConfig("b", "http://b"))
        replica.role = "learner"
        replica.receive([encode_outcome(c, d, o) for c, d, o in outcomes(45)])  # type: ignore[arg-type]
        replica.role = FOLLOWER
        await replica.started_leading()
        assert replica.learned_at_takeover == {"noop": 45}
