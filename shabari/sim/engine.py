"""The discrete-event simulator: a trace replayed through the gateway's invocation lifecycle.

Nothing here decides sizes, places pods or judges outcomes: each invocation runs through
`shabari.lifecycle.Lifecycle` (decide, place, run, judge, retry or finish, learn) over the
same policy objects and the same `Scheduler` the gateway drives, under a simulated clock.
The engine only supplies what the platform would: the input of each invocation (drawn from
the performance table), what it measures at the size it actually runs at, cold starts,
in-place resize latency, and when a waiting invocation is placed again; the accounting of
DESIGN 4.5 reads the lifecycle's records and the scheduler's pod events.

Events: arrivals come pre-sorted from the trace; a heap of `(time, seq, kind, invocation,
measured)` holds pods becoming ready, runs ending and waits for room timing out; invocations
waiting for room are placed again, oldest first, whenever a pod goes idle or away (as the
gateway wakes its waiters). Random draws (which input, which latency sample) are made once
per invocation from the seed and shared by every policy (common random numbers), so two
policies differ only by their decisions. See docs/simulator.md and docs/architecture.md.
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
    FunctionSpec,
    NodeCapacity,
    NodeId,
    Outcome,
    OutcomeStatus,
    PlacementKind,
    Size,
)
from shabari.core.waste import invocation_waste, waste_p50
from shabari.data.perf import PerfTable
from shabari.data.traces import Trace
from shabari.lifecycle import (
    Finished,
    Invocation,
    Lifecycle,
    LifecycleConfig,
    PoolIntegrals,
    StepKind,
)
from shabari.scheduler import PodEvent, PodEventKind, Scheduler, SchedulerConfig, can_take
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
    #: retry an OOM-killed invocation once with the policy's escalated size (as the gateway)
    retry_oom: bool = True
    #: how long an invocation may wait for room before it fails (as the gateway's default)
    capacity_wait_s: float = 30.0

    def __post_init__(self) -> None:
        if not self.slo_slowdown >= 1.0:
            raise ConfigError(f"--slo-slowdown must be >= 1, got {self.slo_slowdown}")
        if self.nodes < 1 or self.node_vcpus <= 0 or self.node_memory_gib <= 0:
            raise ConfigError("the cluster needs at least one node with positive capacity")
        for name, flag in (("keep_alive_s", "--keep-alive-s"),
                           ("resize_latency_ms", "--resize-latency-ms"),
                           ("default_cold_start_ms", "--cold-start-ms"),
                           ("capacity_wait_s", "capacity_wait_s")):
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

    def execute(self, i: int, attempt: int, size: Size, decided: Size) -> tuple[Outcome, float]:
        """What the platform measures when invocation `i` runs (attempt 1 or 2) on a pod of
        `size` for a decision of `decided`: (status, CPU seconds, peak memory; latency and
        cold start are the lifecycle's), and its execution time in ms.

        The pod runs at its own size when the table measured it, else as the decided size.
        Memory beyond the decision does not change speed in this model: a pod with the decided
        CPU and more memory runs the invocation as the decided size would (same sample),
        unless that size would have failed, which the bigger pod avoids. Without this, the
        memory twins' measurement noise decides the latency, and the oracle, clairvoyant about
        the decided size's sample, stops being the limit.
        """
        table = self.table
        pf = self.mapping[self.function_of[i]]
        inp = self.input_of[i]
        run_size = size if table.has_size(pf, inp, size) else decided
        u = self.u_sample[i] if attempt == 1 else self.u_retry[i]
        lat, ok = table.latency_at(pf, inp, run_size, u)
        if (run_size != decided and size.cpu_millicores == decided.cpu_millicores
                and size.gpu == decided.gpu and size.memory_mib > decided.memory_mib
                and table.has_size(pf, inp, decided)):
            lat_d, ok_d = table.latency_at(pf, inp, decided, u)
            if ok_d:
                lat, ok, run_size = lat_d, ok_d, decided
        status = OutcomeStatus.OK
        if not ok:
            peak_run = table.peak_memory_mib(pf, inp, run_size)
            status = (OutcomeStatus.OOM if peak_run is None or peak_run > size.memory_mib
                      else OutcomeStatus.TIMEOUT)
        peak = table.peak_memory_mib(pf, inp, size) or 0.0
        used = table.cpu_used_millicores(pf, inp, size)
        # no CPU reading in the table: report none (as OpenWhisk does), not a fake full use
        cpu_s = (min(used, size.cpu_millicores) / 1000.0 * lat / 1000.0
                 if used is not None else 0.0)
        return Outcome(0.0, status, cpu_seconds=cpu_s, peak_memory_mib=peak), lat


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


_IDLE = PodEventKind.IDLE
_STOPPED = PodEventKind.STOPPED

#: heap entry kinds: the attempt's pod is up / its run ends / its wait for room ends
_READY, _DONE, _DEADLINE = 0, 1, 2
_RESIZED = Outcome(0.0)


class _Replay:
    """One policy's replay: the event loop of the simulated platform around the lifecycle.

    Pure platform model: arrivals from the trace, a heap of timed events (a cold-started pod
    becomes ready, an attempt's run ends, a waiting invocation's deadline for room), and the
    invocations waiting for room, placed again (in the order they started waiting) whenever
    a pod goes idle or away, as the gateway's waiters are woken. Everything with a rule
    (placement, judging, retry, learning) is `Lifecycle`'s, the gateway's too.
    """

    def __init__(self, work: Workload, policy: Policy, *, keep_per_invocation: bool,
                 on_finished: Callable[[Finished], None] | None) -> None:
        cfg = work.config
        self.work = work
        self.table = work.table
        self.sched = Scheduler(cfg.node_capacities(), SchedulerConfig(
            keep_alive_s=cfg.keep_alive_s, supports_resize=cfg.supports_resize,
            resize_latency_ms=cfg.resize_latency_ms))
        self.pool = PoolIntegrals()
        self.sched.subscribe(self.pool)
        self.sched.subscribe(self._on_pod)
        self.lc = Lifecycle(policy, self.sched, supports_resize=cfg.supports_resize,
                            config=LifecycleConfig(retry_oom=cfg.retry_oom,
                                                   capacity_wait_s=cfg.capacity_wait_s),
                            on_finished=self._finished)
        self.res = PolicyResult(policy.name)
        self.keep = keep_per_invocation
        n = len(work)
        if keep_per_invocation:
            self.res.vcpu_of = [0.0] * n
            self.res.met_of = [False] * n
            self.res.latency_of = [0.0] * n
        self.final_seen = bytearray(n)
        self.heap: list[tuple[float, int, int, Invocation, Outcome | None]] = []
        self.seq = 0
        # waiting invocations, as the gateway's PodPool keeps them: for room (oldest first,
        # a place kept until placed) and behind busy pods (a FIFO per function)
        self.waiting: set[Invocation] = set()
        self.room: dict[Invocation, None] = {}
        self.behind: dict[str, deque[Invocation]] = {}
        #: woken waiters, in the order they place again (the gateway's ready queue)
        self.woken: deque[Invocation] = deque()
        self.pending: set[Invocation] = set()
        self.supports_resize = cfg.supports_resize
        self.horizon = 0.0
        self.resize_s = cfg.resize_latency_ms / 1000.0
        self.user_finished = on_finished

    # -- events ------------------------------------------------------------------------------

    def _on_pod(self, ev: PodEvent) -> None:
        """Wake waiters as the gateway's pool does: every room waiter, then on a release the
        first waiter behind that function's busy pods that the pod can take, on a stop all."""
        kind = ev.kind
        if kind is _IDLE:
            released: str | None = ev.function
        elif kind is _STOPPED:
            released = None
        else:
            return
        if self.room:
            for w in self.room:
                self._wake(w)
        if not self.behind:
            return
        if released is not None:
            q = self.behind.get(released)
            if q:
                for k, w in enumerate(q):
                    if can_take(ev.size, w.decision.size, self.supports_resize):
                        del q[k]
                        self._wake(w)
                        break
            return
        for q in self.behind.values():
            while q:
                self._wake(q.popleft())

    def _wake(self, inv: Invocation) -> None:
        if inv not in self.pending:
            self.pending.add(inv)
            self.woken.append(inv)

    def _push(self, t: float, kind: int, inv: Invocation, measured: Outcome | None) -> None:
        self.seq += 1
        heapq.heappush(self.heap, (t, self.seq, kind, inv, measured))

    def run_until(self, now: float) -> None:
        """Handle every event due at or before `now`, in time order (ties in the order they
        were scheduled); waiters are woken once all events of an instant are handled."""
        heap = self.heap
        lc = self.lc
        while heap and heap[0][0] <= now:
            t, _, kind, inv, measured = heapq.heappop(heap)
            if kind == _DEADLINE and (inv not in self.waiting or t != inv.deadline):
                continue  # placed before its deadline
            if t > self.horizon:
                self.horizon = t
            if kind == _DONE:
                assert measured is not None
                done = lc.complete(inv, measured, t)
                if done.retry:
                    self.res.retries += 1
                    self.place(inv, t)
            elif kind == _READY:
                # the pod is up (cold start) or resized: the run starts now
                assert measured is not None
                if inv.placement is not None and inv.placement.kind is PlacementKind.COLD:
                    lc.started(inv, t, measured.cold_start_ms)
                self._run(inv, t)
            elif inv not in self.pending:  # a wait still going on times out: wake it
                q = self.behind.get(inv.spec.name)
                if q and inv in q:
                    q.remove(inv)
                self._wake(inv)
            if self.woken and not (heap and heap[0][0] == t):
                self.drain(t)

    def drain(self, now: float) -> None:
        """The woken waiters place again, in the order they were woken; what their placements
        free or take wakes others behind them (as the gateway's tasks run)."""
        woken, pending = self.woken, self.pending
        while woken:
            inv = woken.popleft()
            pending.discard(inv)
            if inv in self.waiting:
                self.place(inv, now)

    # -- one attempt ---------------------------------------------------------------------------

    def place(self, inv: Invocation, now: float) -> None:
        fn = inv.spec.name
        behind = self.behind.get(fn)
        step = self.lc.place(inv, now, len(behind) if behind else 0)
        kind = step.kind
        if kind is StepKind.WAIT:
            assert step.placement is not None
            if step.placement.pod_id is not None:  # behind a busy pod of its own
                self.room.pop(inv, None)
                if behind is None:
                    behind = self.behind[fn] = deque()
                behind.append(inv)
            else:
                self.room[inv] = None
            if inv not in self.waiting:
                self.waiting.add(inv)
                self.res.queued += 1
                self._push(inv.deadline, _DEADLINE, inv, None)
            return
        if inv in self.waiting:
            self.waiting.discard(inv)
            self.room.pop(inv, None)
        if kind is StepKind.FAIL:
            if step.placement is not None and step.placement.kind is PlacementKind.REJECT:
                self.res.rejected += 1
            return
        placement = step.placement
        assert placement is not None
        if placement.kind is PlacementKind.COLD:
            i = inv.key
            assert isinstance(i, int)
            cold_ms = self.work.cold_ms[self.work.mapping[self.work.function_of[i]]]
            self._push(now + cold_ms / 1000.0, _READY, inv, Outcome(0.0, cold_start_ms=cold_ms))
        elif placement.kind is PlacementKind.RESIZE:
            self._push(now + self.resize_s, _READY, inv, _RESIZED)
        else:
            self._run(inv, now)

    def _run(self, inv: Invocation, begin: float) -> None:
        """The pod is ready at `begin`: the run ends after the table's execution time."""
        assert inv.pod_size is not None
        i = inv.key
        assert isinstance(i, int)
        measured, exec_ms = self.work.execute(i, inv.attempt, inv.pod_size, inv.decision.size)
        self._push(begin + exec_ms / 1000.0, _DONE, inv, measured)

    def _finished(self, done: Finished) -> None:
        i = done.key
        assert isinstance(i, int)
        if self.final_seen[i]:
            raise AssertionError(f"invocation {i} finished twice")
        self.final_seen[i] = 1
        res = self.res
        res.invocations += 1
        res.latencies_ms.append(done.latency_ms)
        if done.failed:
            res.failures += 1
        if done.violated:
            res.slo_violations += 1
        for a in done.attempts:
            if a.pod_size is not None:
                res.allocated_vcpu_seconds += a.allocated_vcpu_s
                res.allocated_memory_gib_seconds += a.allocated_memory_gib_s
                if a.placement is not None and a.placement.kind is PlacementKind.COLD:
                    res.cold_starts += 1
        final = done.final
        size = final.pod_size
        if size is not None:  # it held a size (a rejected or never-placed one did not)
            work = self.work
            pf, inp = work.mapping[work.function_of[i]], work.input_of[i]
            table = self.table
            w = invocation_waste(size.cpu_millicores, size.memory_mib,
                                 table.cpu_used_millicores(pf, inp, size),
                                 table.peak_memory_mib(pf, inp, size))
            if w.vcpus is not None:
                res.wasted_vcpus.append(w.vcpus)
            if w.memory_mib is not None:
                res.wasted_memory_mib.append(w.memory_mib)
        if self.keep:
            res.vcpu_of[i] = (size or final.decision.size).vcpu
            res.met_of[i] = not done.violated
            res.latency_of[i] = done.latency_ms
        if self.user_finished is not None:
            self.user_finished(done)

    # -- profiling runs of offline baselines ---------------------------------------------------

    def profile(self, profiler: Profiling, tf: str, rng: np.random.Generator) -> None:
        work, res, table = self.work, self.res, self.table
        spec = work.specs[tf]
        pf = work.mapping[tf]
        inputs = table.inputs(pf)
        while (size := profiler.next_probe(spec)) is not None:
            inp = inputs[int(rng.integers(len(inputs)))]
            lat, ok = table.latency_at(pf, inp, size, float(rng.random()))
            peak = table.peak_memory_mib(pf, inp, size)
            profiler.observe_probe(spec, ProbeResult(size, lat, ok, work.slo_ms[(pf, inp)],
                                                     peak, work.features[(pf, inp)]))
            res.profiling_invocations += 1
            res.profiling_vcpu_seconds += size.vcpu * lat / 1000.0
            res.allocated_vcpu_seconds += size.vcpu * lat / 1000.0
            res.allocated_memory_gib_seconds += size.memory_gib * lat / 1000.0


def run_policy(work: Workload, policy: Policy, *, keep_per_invocation: bool = False,
               progress: Callable[[int], None] | None = None,
               on_finished: Callable[[Finished], None] | None = None) -> PolicyResult:
    """Replay the workload through `policy` on a fresh scheduler; returns its totals.

    `on_finished` sees every invocation's lifecycle record (decisions, placements, verdicts,
    costs, allocations), in completion order.
    """
    rp = _Replay(work, policy, keep_per_invocation=keep_per_invocation,
                 on_finished=on_finished)
    lc, res = rp.lc, rp.res
    profiler = policy if isinstance(policy, Profiling) else None
    profiled: set[str] = set()
    prof_rng = np.random.default_rng(work.profile_seed)
    specs, mapping, slo_of, feats = work.specs, work.mapping, work.slo_ms, work.features
    times, function_of, input_of = work.times, work.function_of, work.input_of
    perf = time.perf_counter
    decision_us = res.decision_us
    wall0 = perf()
    for i in range(len(work)):
        now = times[i]
        rp.run_until(now)
        if now > rp.horizon:
            rp.horizon = now
        lc.expire(now)
        tf = function_of[i]
        if profiler is not None and tf not in profiled:
            profiled.add(tf)
            rp.profile(profiler, tf, prof_rng)
        key = (mapping[tf], input_of[i])
        work.current = i
        t0 = perf()
        inv = lc.begin(specs[tf], feats[key], slo_of[key], now, i)
        rp.place(inv, now)
        decision_us.append((perf() - t0) * 1e6)
        if rp.woken:
            rp.drain(now)
        if progress is not None and i % 10000 == 0:
            progress(i)
    rp.run_until(math.inf)
    # idle pods stop when their keep-alive ends, or at the end of the replay
    rp.sched.shutdown(rp.horizon)
    res.idle_vcpu_seconds = rp.pool.idle_vcpu_s
    res.idle_memory_gib_seconds = rp.pool.idle_memory_gib_s
    res.wall_seconds = perf() - wall0
    missing = len(work) - res.invocations
    if missing:
        raise AssertionError(f"{missing} invocations were never accounted for")
    return res
