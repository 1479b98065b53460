"""The discrete-event simulator: a trace replayed through the real policies and scheduler.

Nothing here decides sizes or places pods: each policy is the same object the gateway drives
(`shabari.agent`, or a baseline of `shabari.sim.baselines`), and placement is the gateway's
`shabari.scheduler.Scheduler`, both under a simulated clock. The engine only supplies what the
platform would: the input of each invocation (drawn from the performance table), its latency
at the size it actually runs at, cold starts, in-place resize latency, queueing when the
cluster is full, keep-alive expiry, and the accounting of DESIGN 4.5.

Events: arrivals come pre-sorted from the trace; completions live in a heap of
`(time, seq, attempt)` tuples; pods waiting for room sit in one FIFO queue that is retried
whenever an invocation finishes. Random draws (which input, which latency sample) are made
once per invocation from the seed and shared by every policy (common random numbers), so two
policies differ only by their decisions. See docs/simulator.md.
"""

from __future__ import annotations

import heapq
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from shabari.agent.policy import Policy
from shabari.core import (
    SLO,
    ConfigError,
    DecisionContext,
    FunctionName,
    FunctionSpec,
    NodeCapacity,
    NodeId,
    Outcome,
    OutcomeStatus,
    PlacementKind,
    PodId,
    Size,
)
from shabari.core.types import Decision
from shabari.core.waste import invocation_waste, waste_p50
from shabari.data.perf import PerfTable
from shabari.data.traces import Trace
from shabari.scheduler.config import SchedulerConfig
from shabari.scheduler.scheduler import Scheduler
from shabari.sim.baselines import ProbeResult, Profiling

__all__ = ["PolicyResult", "SimConfig", "Workload", "run_policy"]


@dataclass(frozen=True, slots=True)
class SimConfig:
    slo_slowdown: float = 1.5
    seed: int = 1
    nodes: int = 64
    node_vcpus: float = 32.0
    node_memory_gib: float = 128.0
    keep_alive_s: float = 600.0
    supports_resize: bool = True
    resize_latency_ms: float = 50.0
    #: cold start of functions whose table has no `cold_start_ms`
    default_cold_start_ms: float = 1000.0
    #: static-default's size: the grid size nearest this (cpu millicores, memory MiB)
    default_size: tuple[int, int] = (1000, 1024)

    def __post_init__(self) -> None:
        if not self.slo_slowdown >= 1.0:
            raise ConfigError(f"--slo-slowdown must be >= 1, got {self.slo_slowdown}")
        if self.nodes < 1 or self.node_vcpus <= 0 or self.node_memory_gib <= 0:
            raise ConfigError("the cluster needs at least one node with positive capacity")
        for name, flag in (("keep_alive_s", "--keep-alive-s"),
                           ("resize_latency_ms", "--resize-latency-ms"),
                           ("default_cold_start_ms", "--cold-start-ms")):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ConfigError(f"{flag} must be a finite number >= 0, got {value}")

    def node_capacities(self) -> list[NodeCapacity]:
        return [NodeCapacity(NodeId(f"node-{i}"), round(self.node_vcpus * 1000),
                             round(self.node_memory_gib * 1024)) for i in range(self.nodes)]


def _nearest_default(sizes: tuple[Size, ...], cpu: int, mem: int) -> Size:
    def dist(s: Size) -> tuple[float, int]:
        return (abs(math.log(s.cpu_millicores / cpu)) + abs(math.log(s.memory_mib / mem)),
                -s.cpu_millicores)
    return min((s for s in sizes if s.gpu == 0), key=dist, default=sizes[-1])


class Workload:
    """Everything shared by all policies of one run: mapping, specs, per-invocation draws.

    Each trace function is its own function (own spec, own model) mapped, seeded, onto a
    performance-table function; each invocation draws one of that function's inputs uniformly
    and one uniform number that picks its latency sample (and one more for a retry).
    """

    def __init__(self, trace: Trace, table: PerfTable, config: SimConfig) -> None:
        if not trace.arrivals:
            raise ConfigError(f"trace {trace.name} has no invocations in the simulated window")
        self.trace = trace
        self.table = table
        self.config = config
        rng = np.random.default_rng(config.seed)
        perf_fns = table.functions()
        trace_fns = trace.functions()
        picks = rng.integers(0, len(perf_fns), size=len(trace_fns))
        self.mapping: dict[str, str] = {tf: perf_fns[int(k)] for tf, k in zip(trace_fns, picks,
                                                                               strict=True)}
        self.specs: dict[str, FunctionSpec] = {}
        slo = SLO(slowdown=config.slo_slowdown)
        for tf in trace_fns:
            pf = self.mapping[tf]
            sizes = table.sizes(pf)
            self.specs[tf] = table.spec(pf, slo, name=tf, default_size=_nearest_default(
                sizes, *config.default_size))
        self.cold_ms: dict[str, float] = {
            pf: (c if (c := table.cold_start_ms(pf)) is not None else config.default_cold_start_ms)
            for pf in perf_fns}
        n = len(trace.arrivals)
        self.function_of: list[str] = [a.function for a in trace.arrivals]
        self.times: list[float] = [a.time_s for a in trace.arrivals]
        raw = rng.random(n)
        self.input_of: list[str] = []
        for tf, u in zip(self.function_of, raw.tolist(), strict=True):
            inputs = table.inputs(self.mapping[tf])
            self.input_of.append(inputs[min(int(u * len(inputs)), len(inputs) - 1)])
        self.u_sample: list[float] = rng.random(n).tolist()
        self.u_retry: list[float] = rng.random(n).tolist()
        # SLO bound and features per (perf function, input), resolved once
        self.slo_ms: dict[tuple[str, str], float] = {}
        for pf in perf_fns:
            for inp in table.inputs(pf):
                self.slo_ms[(pf, inp)] = slo.bound_ms(table.best_median_latency_ms(pf, inp))
        self.profile_seed = config.seed + 7919
        # one features object per (perf function, input), shared by every context
        self.features = {(pf, inp): table.features(pf, inp) for pf in perf_fns
                         for inp in table.inputs(pf)}
        #: index of the invocation being decided (only the clairvoyant oracle looks at it)
        self.current = 0

    def __len__(self) -> int:
        return len(self.times)


@dataclass
class PolicyResult:
    """One policy's totals: the per-policy object of the DESIGN 4.5 JSON, plus extras."""

    policy: str
    invocations: int = 0
    slo_violations: int = 0
    failures: int = 0
    cold_starts: int = 0
    allocated_vcpu_seconds: float = 0.0
    allocated_memory_gib_seconds: float = 0.0
    idle_vcpu_seconds: float = 0.0
    idle_memory_gib_seconds: float = 0.0
    wall_seconds: float = 0.0
    retries: int = 0
    queued: int = 0
    rejected: int = 0
    profiling_invocations: int = 0
    profiling_vcpu_seconds: float = 0.0
    #: latency of every invocation in completion order (for the percentiles)
    latencies_ms: list[float] = field(default_factory=list, repr=False)
    decision_us: list[float] = field(default_factory=list, repr=False)
    #: per invocation (trace order; only with `keep_per_invocation`): vCPU of the size it
    #: finally ran at, whether it met its SLO, its latency (tests and analyses use them)
    vcpu_of: list[float] = field(default_factory=list, repr=False)
    met_of: list[bool] = field(default_factory=list, repr=False)
    latency_of: list[float] = field(default_factory=list, repr=False)
    #: per-invocation waste in the paper's terms (shabari.core.waste), measured ones only
    wasted_vcpus: list[float] = field(default_factory=list, repr=False)
    wasted_memory_mib: list[float] = field(default_factory=list, repr=False)

    @property
    def slo_violation_rate(self) -> float:
        return self.slo_violations / self.invocations if self.invocations else 0.0

    def to_json(self) -> dict[str, Any]:
        lat = np.asarray(self.latencies_ms) if self.latencies_ms else np.zeros(1)
        dec = np.asarray(self.decision_us) if self.decision_us else np.zeros(1)
        p50, p90, p99 = np.percentile(lat, [50, 90, 99]).tolist()
        d50, d99 = np.percentile(dec, [50, 99]).tolist()
        return {
            "invocations": self.invocations,
            "slo_violations": self.slo_violations,
            "slo_violation_rate": round(self.slo_violation_rate, 6),
            "failures": self.failures,
            "cold_starts": self.cold_starts,
            "latency_ms": {"p50": round(p50, 3), "p90": round(p90, 3), "p99": round(p99, 3)},
            "allocated_vcpu_seconds": round(self.allocated_vcpu_seconds, 3),
            "allocated_memory_gib_seconds": round(self.allocated_memory_gib_seconds, 3),
            "idle_vcpu_seconds": round(self.idle_vcpu_seconds, 3),
            "idle_memory_gib_seconds": round(self.idle_memory_gib_seconds, 3),
            **waste_p50(self.wasted_vcpus, self.wasted_memory_mib),
            "decision_us": {"p50": round(d50, 2), "p99": round(d99, 2)},
            "wall_seconds": round(self.wall_seconds, 3),
            "retries": self.retries,
            "queued": self.queued,
            "rejected": self.rejected,
            "profiling_invocations": self.profiling_invocations,
            "profiling_vcpu_seconds": round(self.profiling_vcpu_seconds, 3),
        }


class _Attempt:
    """One attempt of one invocation (an OOM retry is a second attempt)."""

    __slots__ = (
        "alloc_vcpu_s",
        "arrival",
        "cold",
        "ctx",
        "decision",
        "exec_ms",
        "index",
        "number",
        "pod_id",
        "size",
        "start",
        "status",
    )

    def __init__(self, index: int, arrival: float, ctx: DecisionContext, decision: Decision,
                 number: int) -> None:
        self.index = index
        self.arrival = arrival
        self.ctx = ctx
        self.decision = decision
        self.number = number
        self.alloc_vcpu_s = 0.0
        self.cold = False
        self.pod_id: PodId | None = None
        self.size = decision.size
        self.start = arrival
        self.status = OutcomeStatus.OK
        self.exec_ms = 0.0


def run_policy(work: Workload, policy: Policy, *, keep_per_invocation: bool = False,
               progress: Callable[[int], None] | None = None) -> PolicyResult:
    """Replay the workload through `policy` on a fresh scheduler; returns its totals."""
    cfg = work.config
    table = work.table
    sched = Scheduler(cfg.node_capacities(), SchedulerConfig(
        keep_alive_s=cfg.keep_alive_s, supports_resize=cfg.supports_resize,
        resize_latency_ms=cfg.resize_latency_ms))
    res = PolicyResult(policy.name)
    n = len(work)
    if keep_per_invocation:
        res.vcpu_of = [0.0] * n
        res.met_of = [False] * n
        res.latency_of = [0.0] * n
    final_seen = bytearray(n)
    escalate = getattr(policy, "escalate", None)
    profiler = policy if isinstance(policy, Profiling) else None
    profiled: set[str] = set()
    prof_rng = np.random.default_rng(work.profile_seed)
    specs, mapping, slo_of, cold_of = work.specs, work.mapping, work.slo_ms, work.cold_ms
    feats = work.features
    keep_alive = cfg.keep_alive_s
    resize_s = cfg.resize_latency_ms / 1000.0
    supports_resize = cfg.supports_resize
    heap: list[tuple[float, int, _Attempt]] = []
    queue: deque[_Attempt] = deque()
    idle_since: dict[PodId, tuple[float, Size]] = {}
    seq = 0
    perf = time.perf_counter
    latencies = res.latencies_ms
    decision_us = res.decision_us
    wall0 = perf()
    horizon = 0.0

    def end_idle(pid: PodId, now: float) -> None:
        got = idle_since.pop(pid, None)
        if got is not None:
            t0, size = got
            dt = max(0.0, min(now, t0 + keep_alive) - t0)
            res.idle_vcpu_seconds += size.vcpu * dt
            res.idle_memory_gib_seconds += size.memory_gib * dt

    def profile(tf: str) -> None:
        assert profiler is not None
        spec = specs[tf]
        pf = mapping[tf]
        inputs = table.inputs(pf)
        while (size := profiler.next_probe(spec)) is not None:
            inp = inputs[int(prof_rng.integers(len(inputs)))]
            lat, ok = table.latency_at(pf, inp, size, float(prof_rng.random()))
            peak = table.peak_memory_mib(pf, inp, size)
            profiler.observe_probe(spec, ProbeResult(size, lat, ok, slo_of[(pf, inp)], peak,
                                                     feats[(pf, inp)]))
            res.profiling_invocations += 1
            res.profiling_vcpu_seconds += size.vcpu * lat / 1000.0
            res.allocated_vcpu_seconds += size.vcpu * lat / 1000.0
            res.allocated_memory_gib_seconds += size.memory_gib * lat / 1000.0

    def start(att: _Attempt, now: float) -> bool:
        """Place and run `att` at `now`; False when it must wait in the queue."""
        nonlocal seq
        i = att.index
        tf = work.function_of[i]
        fn = FunctionName(tf)
        pf = mapping[tf]
        cold_ms = cold_of[pf]
        placement = sched.place(fn, att.decision.size, now, cold_start_ms=cold_ms)
        kind = placement.kind
        if kind is PlacementKind.QUEUE:
            return False
        if kind is PlacementKind.REJECT:
            att.status = OutcomeStatus.CRASH
            att.exec_ms = 0.0
            res.rejected += 1
            seq += 1
            heapq.heappush(heap, (now, seq, att))
            return True
        for pid in placement.evict:
            end_idle(pid, now)
        if placement.pod_id is not None:
            end_idle(placement.pod_id, now)
        pod = sched.commit(placement, fn, now, cold_start_ms=cold_ms)
        att.pod_id = pod.pod_id
        size = placement.size
        att.size = size
        begin = now
        if kind is PlacementKind.COLD:
            att.cold = True
            res.cold_starts += 1
            begin += cold_ms / 1000.0
        elif kind is PlacementKind.RESIZE:
            begin += resize_s
        inp = work.input_of[i]
        decided = att.decision.size
        run_size = size if table.has_size(pf, inp, size) else decided
        u = work.u_sample[i] if att.number == 0 else work.u_retry[i]
        lat, ok = table.latency_at(pf, inp, run_size, u)
        if (run_size != decided and size.cpu_millicores == decided.cpu_millicores
                and size.gpu == decided.gpu and size.memory_mib > decided.memory_mib
                and table.has_size(pf, inp, decided)):
            # Memory beyond the decision does not change speed in this model: a warm pod with
            # the decided CPU and more memory runs the invocation as the decided size would
            # (same sample), unless that size would have failed, which the bigger pod avoids.
            # Without this, the memory twins' measurement noise decides the latency, and the
            # oracle, clairvoyant about the decided size's sample, stops being the limit.
            lat_d, ok_d = table.latency_at(pf, inp, decided, u)
            if ok_d:
                lat, ok, run_size = lat_d, ok_d, decided
        if not ok:
            peak = table.peak_memory_mib(pf, inp, run_size)
            att.status = (OutcomeStatus.OOM if peak is None or peak > size.memory_mib
                          else OutcomeStatus.TIMEOUT)
        att.exec_ms = lat
        end = begin + lat / 1000.0
        held = end - now
        att.alloc_vcpu_s = size.vcpu * held
        res.allocated_vcpu_seconds += att.alloc_vcpu_s
        res.allocated_memory_gib_seconds += size.memory_gib * held
        seq += 1
        heapq.heappush(heap, (end, seq, att))
        return True

    def begin_attempt(att: _Attempt, now: float) -> None:
        if queue or not start(att, now):  # FIFO: nobody overtakes a waiting invocation
            res.queued += 1
            queue.append(att)

    def drain(now: float) -> None:
        while queue:
            if not start(queue[0], now):
                return
            queue.popleft()

    def finish(att: _Attempt, now: float) -> None:
        nonlocal horizon
        horizon = max(horizon, now)
        if att.pod_id is not None:
            sched.release(att.pod_id, now)
            idle_since[att.pod_id] = (now, att.size)
        i = att.index
        tf = work.function_of[i]
        pf = mapping[tf]
        inp = work.input_of[i]
        latency_ms = (now - att.arrival) * 1000.0
        cold_ms = cold_of[pf] if att.cold else 0.0
        peak = table.peak_memory_mib(pf, inp, att.size) or 0.0
        used = table.cpu_used_millicores(pf, inp, att.size)
        # no CPU reading in the table: report none (as OpenWhisk does), not a fake full use
        cpu_s = (min(used, att.size.cpu_millicores) / 1000.0 * att.exec_ms / 1000.0
                 if used is not None else 0.0)
        outcome = Outcome(latency_ms, att.status, att.cold, cold_ms, cpu_s, peak)
        policy.learn(att.ctx, att.decision, outcome)
        if att.status is not OutcomeStatus.OK and att.number == 0 and escalate is not None:
            ctx = DecisionContext(att.ctx.spec, att.ctx.features, now,
                                  sched.warm_idle(FunctionName(tf), now), supports_resize,
                                  att.ctx.slo_ms)
            retry = escalate(ctx, att.decision)
            if retry is not None:
                res.retries += 1
                nxt = _Attempt(i, att.arrival, ctx, retry, 1)
                nxt.start = now
                begin_attempt(nxt, now)
                return
        # final attempt of invocation i
        if final_seen[i]:
            raise AssertionError(f"invocation {i} finished twice")
        final_seen[i] = 1
        res.invocations += 1
        latencies.append(latency_ms)
        slo = att.ctx.slo_ms if att.ctx.slo_ms is not None else math.inf
        failed = att.status is not OutcomeStatus.OK
        met = not failed and latency_ms <= slo
        if failed:
            res.failures += 1
        if not met:
            res.slo_violations += 1
        if att.pod_id is not None:  # it held a size (a rejected or never-placed one did not)
            w = invocation_waste(att.size.cpu_millicores, att.size.memory_mib, used,
                                 table.peak_memory_mib(pf, inp, att.size))
            if w.vcpus is not None:
                res.wasted_vcpus.append(w.vcpus)
            if w.memory_mib is not None:
                res.wasted_memory_mib.append(w.memory_mib)
        if keep_per_invocation:
            res.vcpu_of[i] = att.size.vcpu
            res.met_of[i] = met
            res.latency_of[i] = latency_ms

    times = work.times
    function_of = work.function_of
    input_of = work.input_of
    for i in range(n):
        now = times[i]
        while heap and heap[0][0] <= now:
            t_done, _, att = heapq.heappop(heap)
            finish(att, t_done)
            drain(t_done)
        for pod in sched.expire(now):
            end_idle(pod.pod_id, now)
        tf = function_of[i]
        if profiler is not None and tf not in profiled:
            profiled.add(tf)
            profile(tf)
        pf = mapping[tf]
        inp = input_of[i]
        spec = specs[tf]
        ctx = DecisionContext(spec, feats[(pf, inp)], now, sched.warm_idle(spec.name, now),
                              supports_resize, slo_of[(pf, inp)])
        work.current = i
        t0 = perf()
        decision = policy.decide(ctx)
        begin_attempt(_Attempt(i, now, ctx, decision, 0), now)
        decision_us.append((perf() - t0) * 1e6)
        if progress is not None and i % 10000 == 0:
            progress(i)
    while heap:
        t_done, _, att = heapq.heappop(heap)
        finish(att, t_done)
        drain(t_done)
    # anything still queued could never be placed: count it as failed (never silently lost)
    while queue:
        att = queue.popleft()
        att.status = OutcomeStatus.CRASH
        finish(att, max(horizon, att.arrival))
    for pid in list(idle_since):
        end_idle(pid, horizon)
    res.wall_seconds = perf() - wall0
    missing = n - res.invocations
    if missing:
        raise AssertionError(f"{missing} invocations were never accounted for")
    return res

