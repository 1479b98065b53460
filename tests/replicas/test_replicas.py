"""Three gateway replicas learn as one: outcomes shipped to the elected learner, its models
sent back, and a new learner from the last snapshot when the old one dies."""

from __future__ import annotations

import asyncio
from pathlib import Path

from lease_api import LeaseApiServer
from replica_cluster import (
    LEASE_DURATION_S,
    SHIP_INTERVAL_S,
    SYNC_INTERVAL_S,
    replicas,
    until,
)

#: outcomes are on every replica within one shipment + one sync (+ slack for a loaded machine)
DISTRIBUTION_DELAY_S = 2.0
#: a follower's model is never older than one sync interval (+ one request) in steady state
MODEL_AGE_BOUND_S = SYNC_INTERVAL_S + 1.0
#: a learner is replaced within the Lease duration of its last renewal (lease.Election), plus
#: slack for three gateway processes answering /replica/state on a loaded 2-core machine
TAKEOVER_BOUND_S = LEASE_DURATION_S + 1.0


async def test_three_replicas_learn_as_one_and_survive_the_learner(
        leases: tuple[LeaseApiServer, str], tmp_path: Path) -> None:
    emulator, url = leases
    async with replicas(url, tmp_path, 3) as rs:
        await until(lambda: _one_learner(rs), 20, "one learner")
        states = await rs.states()
        learner_id = next(s["identity"] for s in states if s["role"] == "learner")
        assert all(s["leader"] == learner_id for s in states)

        # outcome shipping + model distribution: every replica's /functions counts all of them
        n = 240
        statuses = await rs.invoke_round_robin(n)
        assert statuses.count(200) == n
        took = await until(lambda: _all_learned(rs, n), DISTRIBUTION_DELAY_S + 10,
                           "every replica to show every outcome")
        assert took <= DISTRIBUTION_DELAY_S, f"distribution took {took:.2f}s"
        print(f"\nreplicas: {n} outcomes on every replica {took:.2f}s after the last answer")
        followers = [s for s in await rs.states() if s["role"] == "follower"]
        assert len(followers) == 2
        learner_flags = [await _metric(rs, p, "shabari_replica_learner") for p in rs.alive]
        assert sorted(learner_flags) == [0.0, 0.0, 1.0]
        for s in followers:
            assert s["counters"].get("shipped", 0) > 0
            assert s["counters"].get("snapshots_applied", 0) > 0
            assert s["model_age"]["decisions"] > 0
            assert s["model_age"]["max_s"] <= MODEL_AGE_BOUND_S, s["model_age"]
            print(f"replicas: {s['identity']} model age {s['model_age']}")

        # failover: SIGKILL the learner; another replica takes over from its snapshot
        (learner,) = await rs.learners()
        rs.kill(learner)
        took = await until(lambda: _one_learner(rs), TAKEOVER_BOUND_S + 10, "a new learner")
        assert took <= TAKEOVER_BOUND_S, f"takeover took {took:.2f}s"
        new = next(s for s in await rs.states() if s["role"] == "learner")
        assert new["identity"] != learner_id
        kept = new["learned_at_takeover"]["noop"]
        assert kept >= 0.9 * n, f"kept {kept} of {n} learned outcomes"
        print(f"replicas: learner killed, {new['identity']} took over {took:.2f}s later "
              f"with {kept} of {n} outcomes")

        # and learning goes on: the survivors agree again
        more = 60
        assert (await rs.invoke_round_robin(more)).count(200) == more
        await until(lambda: _all_learned(rs, kept + more, at_least=True),
                    DISTRIBUTION_DELAY_S + 10, "survivors to learn again")
        assert {v for v, _ in emulator.verbs} <= {"get", "create", "update"}


async def _one_learner(rs: object) -> bool:
    return len(await rs.learners()) == 1  # type: ignore[attr-defined]


async def _all_learned(rs: object, n: int, at_least: bool = False) -> bool:
    counts = [await rs.outcomes(p) for p in rs.alive]  # type: ignore[attr-defined]
    return all((c >= n) if at_least else (c == n) for c in counts)


def test_the_stated_bounds_are_consistent() -> None:
    assert SHIP_INTERVAL_S + SYNC_INTERVAL_S < DISTRIBUTION_DELAY_S
    assert SYNC_INTERVAL_S < MODEL_AGE_BOUND_S


async def test_a_learner_stopped_gracefully_checkpoints_and_hands_over_at_once(
        leases: tuple[LeaseApiServer, str], tmp_path: Path) -> None:
    emulator, url = leases
    async with replicas(url, tmp_path, 2) as rs:
        await until(lambda: _one_learner(rs), 20, "one learner")
        assert (await rs.invoke_round_robin(40)).count(200) == 40
        await until(lambda: _all_learned(rs, 40), DISTRIBUTION_DELAY_S + 10, "distribution")
        (learner,) = await rs.learners()
        index = rs.procs.index(learner)
        await asyncio.to_thread(learner.stop, 30)  # SIGTERM: drain, checkpoint, release
        rs.alive.remove(learner)
        ckpt = tmp_path / f"state-{index}" / "models" / "noop.ckpt"
        assert ckpt.is_file() and ckpt.stat().st_size > 0
        # released (holder cleared), not left to expire: the survivor takes it at once
        assert None in emulator.holders
        await until(lambda: _one_learner(rs), LEASE_DURATION_S + 10, "a new learner")
        assert emulator.holders[-1] == f"replica-{1 - index}"
        (survivor,) = rs.alive
        assert await rs.outcomes(survivor) == 40


async def _metric(rs: object, proc: object, name: str) -> float:
    async with rs.session.get(f"{proc.base}/metrics") as r:  # type: ignore[attr-defined]
        text = await r.text()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not exported")
