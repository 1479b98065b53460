"""The gateway and the simulator run the same lifecycle: same trace, same records.

One 1,000-invocation trace runs twice with fresh, identically seeded policies: through the
simulator (`run_policy`), and through the gateway in process (`Gateway.invoke`, real
`InvocationPath`, `PodPool`, `PoolLedger`, `SloResolver`) on a `TableBackend` under a virtual
clock. Every invocation must get the same decisions, placements, outcomes, verdicts, costs
and allocations, and the pools the same busy and idle integrals. The workload is built to
exercise every rule: cold starts and warm reuse, in-place resizes limited by node headroom,
queueing behind busy pods, OOMs retried with escalated memory, keep-alive expiry, and
evictions on a small cluster.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest

from shabari.agent.policy import Policy
from shabari.core import Decision, DecisionContext, DecisionId, Outcome, PodId, Size
from shabari.data.perf import PerfRow, PerfTable
from shabari.data.traces import Arrival, Trace
from shabari.gateway.config import GatewayConfig
from shabari.gateway.service import Gateway
from shabari.gateway.slo import SloResolver
from shabari.lifecycle import AttemptRecord, Finished
from shabari.scheduler import SchedulerConfig
from shabari.sim.engine import SimConfig, Workload, run_policy
from shabari.sim.policies import make_policy

from .virtual import TableBackend, VirtualClockLoop

CPUS = (250, 500, 1000, 2000)
MEMS = (128, 512, 1024)


def _table(seed: int = 3) -> PerfTable:
    """Three functions, noisy samples (3 per cell), inputs that OOM below their peak."""
    rng = np.random.default_rng(seed)
    rows = []
    # function -> cold start ms, inputs (single-core work ms, parallelism, peak MiB)
    spec = {
        "thumb": (400.0, ((30.0, 500, 90.0), (160.0, 1000, 300.0), (900.0, 2000, 700.0),
                          (160.0, 1000, 1000.0))),
        "hash": (150.0, ((6.0, 250, 40.0), (25.0, 500, 60.0))),
        "video": (900.0, ((1500.0, 2000, 450.0), (4000.0, 2000, 900.0))),
    }
    for fn, (cold, inputs) in spec.items():
        for k, (work, par, peak) in enumerate(inputs):
            for cpu in CPUS:
                for mem in MEMS:
                    for _ in range(3):
                        lat = work * 1000.0 / min(cpu, par) * float(rng.uniform(0.9, 1.15))
                        rows.append(PerfRow(fn, f"in{k}", cpu, mem, lat, mem >= peak,
                                            {"work": work, "peak": peak},
                                            cold_start_ms=cold, peak_memory_mib=peak,
                                            cpu_used_millicores=float(min(cpu, par))))
    return PerfTable(rows, source="differential")


def _trace(n: int = 1000, functions: int = 12, seed: int = 5) -> Trace:
    """Skewed popularity, bursts and quiet spells (so pods expire and queue behind busy)."""
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, functions + 1)
    weights /= weights.sum()
    times = np.sort(np.concatenate([
        rng.uniform(0.0, 400.0, n // 2),
        *[rng.normal(c, 1.5, n // 10) for c in (30.0, 120.0, 200.0, 310.0, 380.0)]]))
    times = np.clip(times, 0.0, None)
    fns = rng.choice(functions, size=n, p=weights)
    return Trace("differential", tuple(Arrival(float(t), f"fn{f}")
                                      for t, f in zip(times.tolist(), fns.tolist(),
                                                      strict=True)))


def _config() -> SimConfig:
    # a small cluster (evictions, resize headroom, waits for room), a short keep-alive
    return SimConfig(seed=7, nodes=4, node_vcpus=6.0, node_memory_gib=8.0, keep_alive_s=20.0,
                     resize_latency_ms=50.0, capacity_wait_s=10.0)


class SmallThenEscalate:
    """Always the smallest size; after an OOM, the same CPU with the most memory."""

    name = "small-then-escalate"

    def __init__(self) -> None:
        self.n = 0

    def decide(self, ctx: DecisionContext) -> Decision:
        self.n += 1
        size = ctx.spec.sizes[0]
        return Decision(DecisionId(f"s{self.n}"), ctx.spec.name, size, 0, 1.0, 0, "smallest")

    def learn(self, ctx: DecisionContext, decision: Decision, outcome: Outcome) -> None:
        return None

    def escalate(self, ctx: DecisionContext, decision: Decision) -> Decision | None:
        size = decision.size.with_memory(max(ctx.spec.memory_options))
        self.n += 1
        return Decision(DecisionId(f"e{self.n}"), ctx.spec.name, size,
                        ctx.spec.sizes.index(size), 1.0, 0, "escalated")


def _policy(name: str, work: Workload) -> Policy:
    return SmallThenEscalate() if name == SmallThenEscalate.name else make_policy(name, work)


class _MappedTable:
    """The gateway's SLO source: each trace function's table function (as `simulate` maps)."""

    def __init__(self, work: Workload) -> None:
        self.work = work

    def estimate_best_latency_ms(self, function: str,
                                 features: Mapping[str, float]) -> float | None:
        return self.work.table.estimate_best_latency_ms(self.work.mapping[function], features)


def _through_simulator(work: Workload, policy: str) -> dict[int, Finished]:
    out: dict[int, Finished] = {}

    def keep(done: Finished) -> None:
        assert isinstance(done.key, int)
        out[done.key] = done

    res = run_policy(work, _policy(policy, work), on_finished=keep)
    assert res.invocations == len(work)
    out_totals[policy, "sim"] = (res.idle_vcpu_seconds, res.idle_memory_gib_seconds)
    return out


out_totals: dict[tuple[str, str], tuple[float, float]] = {}


def _through_gateway(work: Workload, policy: str) -> tuple[dict[int, Finished], Gateway]:
    loop = VirtualClockLoop()
    out: dict[int, Finished] = {}
    cfg = work.config

    def featurize(body: bytes, content_type: str | None, kind: str,
                  options: Mapping[str, object]) -> dict[str, float]:
        i = int(json.loads(body)["i"])
        return dict(work.features[(work.mapping[work.function_of[i]], work.input_of[i])])

    gw: Gateway

    def decided(pod_id: PodId) -> Size:
        return gw.path.lifecycle.running[pod_id].decision.size

    backend = TableBackend(work, decided)
    gw = Gateway(
        functions=work.specs, policy=_policy(policy, work), backend=backend,
        featurize=featurize, slo=SloResolver({tf: _MappedTable(work) for tf in work.specs}),
        config=GatewayConfig(keep_alive_s=cfg.keep_alive_s, capacity_wait_s=cfg.capacity_wait_s,
                             invoke_timeout_s=3600.0, sweep_interval_s=1e9,
                             max_concurrent=10_000),
        clock=loop.time,
        scheduler_config=SchedulerConfig(keep_alive_s=cfg.keep_alive_s,
                                         supports_resize=cfg.supports_resize,
                                         resize_latency_ms=cfg.resize_latency_ms))

    def keep(done: Finished) -> None:
        assert isinstance(done.key, int)
        out[done.key] = done

    # learning right after each response (the simulator learns at completion): the gateway's
    # batching window only lets a decision miss the last few milliseconds of outcomes
    gw.after.window_s = 0.0

    async def main() -> None:
        await gw.start()
        gw.path.on_finished = keep
        tasks: list[asyncio.Task[Any]] = []
        all_arrived = asyncio.Event()

        def arrive(i: int) -> None:
            body = json.dumps({"i": i}).encode()
            tasks.append(asyncio.ensure_future(
                gw.invoke(work.function_of[i], body, "application/json", key=i)))
            if len(tasks) == len(work):
                all_arrived.set()

        for i, t in enumerate(work.times):
            loop.call_at(t, arrive, i)
        await all_arrived.wait()
        await asyncio.gather(*tasks)
        await gw.close()

    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
    totals = gw.ledger.totals(gw.now())
    out_totals[policy, "gateway"] = (totals.idle_vcpu_seconds, totals.idle_memory_gib_seconds)
    return out, gw


def _same_attempt(g: AttemptRecord, s: AttemptRecord, where: str) -> None:
    gd, sd = g.decision, s.decision
    assert (gd.size, gd.action_index, gd.probability, gd.model_version, gd.reason,
            gd.explored) == (sd.size, sd.action_index, sd.probability, sd.model_version,
                             sd.reason, sd.explored), where
    assert g.placement == s.placement, where
    assert g.pod_size == s.pod_size, where
    go, so = g.outcome, s.outcome
    assert (go.status, go.cold_start, go.cold_start_ms, go.peak_memory_mib) == (
        so.status, so.cold_start, so.cold_start_ms, so.peak_memory_mib), where
    assert go.latency_ms == pytest.approx(so.latency_ms, rel=1e-9, abs=1e-6), where
    assert go.cpu_seconds == pytest.approx(so.cpu_seconds, rel=1e-9, abs=1e-9), where
    assert g.verdict.slo_ms == pytest.approx(s.verdict.slo_ms, rel=1e-12), where
    assert g.verdict.cost == pytest.approx(s.verdict.cost, rel=1e-9, abs=1e-12), where
    assert g.verdict.violated == s.verdict.violated, where
    assert g.learned == s.learned, where
    assert g.held_s == pytest.approx(s.held_s, rel=1e-9, abs=1e-9), where
    assert g.allocated_vcpu_s == pytest.approx(s.allocated_vcpu_s, rel=1e-9, abs=1e-9), where


@pytest.fixture(scope="module")
def work() -> Workload:
    return Workload(_trace(), _table(), _config())


@pytest.mark.parametrize("policy", ["shabari", "static-default", SmallThenEscalate.name])
def test_gateway_and_simulator_produce_identical_invocations(work: Workload,
                                                             policy: str) -> None:
    sim = _through_simulator(work, policy)
    gw_records, _ = _through_gateway(work, policy)
    assert len(sim) == len(gw_records) == len(work) == 1000
    for i in range(len(work)):
        g, s = gw_records[i], sim[i]
        where = f"invocation {i} ({work.function_of[i]} at {work.times[i]:.3f}s)"
        assert len(g.attempts) == len(s.attempts), where
        for ga, sa in zip(g.attempts, s.attempts, strict=True):
            _same_attempt(ga, sa, where)
        assert g.latency_ms == pytest.approx(s.latency_ms, rel=1e-9, abs=1e-6), where
        assert (g.violated, g.failed) == (s.violated, s.failed), where
    g_idle, s_idle = out_totals[policy, "gateway"], out_totals[policy, "sim"]
    assert g_idle == pytest.approx(s_idle, rel=1e-9)
    # what the rules must have exercised for the comparison to mean something
    attempts = [a for r in sim.values() for a in r.attempts]
    kinds = {a.placement.kind.value for a in attempts if a.placement is not None}
    assert {"cold", "warm"} <= kinds
    assert sum(a.outcome.cold_start for a in attempts) < len(work)
    if policy == "shabari":
        assert "resize" in kinds
    if policy == SmallThenEscalate.name:
        assert any(len(r.attempts) == 2 for r in sim.values())  # OOMs retried
        assert any(not r.final.learned for r in sim.values())  # no room in time: failed
    assert not math.isnan(sum(r.latency_ms for r in sim.values()))
