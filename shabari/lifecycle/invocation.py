"""The invocation state machine: decide, place, run, judge, retry or finish, learn.

A driver calls, in order:

    inv = lc.begin(spec, features, slo_ms, now)           # decide (after lc.expire(now))
    step = lc.place(inv, now)                              # RUN | WAIT | FAIL
      WAIT: place again when capacity changes (or at inv.deadline)
      RUN:  stop step.stop, then start the pod (lc.started / lc.start_failed) or resize it
            (lc.resize_rejected places again; lc.resize_failed fails), then run it
    done = lc.complete(inv, measured_outcome, now)         # judge + learn; retry or finish
      done.retry: place inv again (its next attempt)
      done.finished: the invocation's record

Everything with a rule lives here, decided once for both drivers (docs/architecture.md):

- retry: only an OOM, once, with the policy's escalated decision (`EscalatingPolicy`);
- a capacity failure (REJECT, or no room within `capacity_wait_s`) fails the invocation and
  teaches the policy nothing (the size was never tried);
- latency counts from the first decision to the end of the last attempt, so a retried
  invocation is judged on both attempts; each attempt is learned on its own latency;
- an invocation queues behind a busy pod of its function when that is expected to be shorter
  than a cold start (the scheduler's rule, fed with the estimates kept here);
- a pod whose invocation failed (OOM, timeout, crash) leaves the pool; any other is released.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from functools import partial
from typing import Protocol

from shabari.agent.policy import EscalatingPolicy, Policy
from shabari.core.context import DecisionContext
from shabari.core.cost import violated as violated_fn
from shabari.core.ids import DecisionId, FunctionName, PodId
from shabari.core.spec import FunctionSpec, Size
from shabari.core.types import Decision, Outcome, OutcomeStatus, Placement, PlacementKind
from shabari.lifecycle.verdict import Verdict, cost_model_of, judge
from shabari.scheduler.scheduler import Scheduler

#: statuses after which the pod is not reused (its worker was killed or is broken)
POD_LOST = frozenset({OutcomeStatus.OOM, OutcomeStatus.TIMEOUT, OutcomeStatus.CRASH})

_REJECT = PlacementKind.REJECT
_QUEUE = PlacementKind.QUEUE
_COLD = PlacementKind.COLD
_OOM = OutcomeStatus.OOM


class SloSource(Protocol):
    """The SLO bound of an invocation once its outcome is known (the gateway's `SloResolver`
    refines slowdown SLOs from what it sees; the simulator knows every bound up front)."""

    def resolve_after(self, spec: FunctionSpec, features: Mapping[str, float],
                      slo_before: float | None, own_latency_ms: float, ok: bool) -> float: ...


class KnownSlo:
    """`SloSource` of a driver that resolved every bound before deciding (the simulator)."""

    def resolve_after(self, spec: FunctionSpec, features: Mapping[str, float],
                      slo_before: float | None, own_latency_ms: float, ok: bool) -> float:
        if slo_before is not None:
            return slo_before
        bound = spec.slo.latency_ms
        return float("inf") if bound is None else bound


@dataclass(frozen=True, slots=True)
class LifecycleConfig:
    #: retry an OOM-killed invocation once with the policy's escalated size
    retry_oom: bool = True
    #: how long an invocation may wait for room (QUEUE) before it fails
    capacity_wait_s: float = 30.0


class Estimates:
    """What the lifecycle has seen of one function: the scheduler's queueing inputs."""

    __slots__ = ("cold_start_ms_sum", "cold_starts", "warm_hold_ms")

    def __init__(self) -> None:
        self.cold_starts = 0
        self.cold_start_ms_sum = 0.0
        #: moving average of how long a warm invocation holds its pod (ms): the expected wait
        #: behind a busy pod, which the scheduler weighs against a cold start
        self.warm_hold_ms: float | None = None

    @property
    def cold_start_ms(self) -> float | None:
        return self.cold_start_ms_sum / self.cold_starts if self.cold_starts else None

    def observe_cold_start(self, ms: float) -> None:
        self.cold_starts += 1
        self.cold_start_ms_sum += ms

    def observe_warm_hold(self, held_ms: float) -> None:
        w = self.warm_hold_ms
        self.warm_hold_ms = held_ms if w is None else 0.8 * w + 0.2 * held_ms


class Invocation:
    """One invocation in flight (mutable; owned by its driver between lifecycle calls)."""

    __slots__ = ("arrival", "attempt", "attempt_start", "attempts", "cold_start_ms",
                 "committed_at", "ctx", "deadline", "decision", "held", "key", "placement",
                 "pod_id", "pod_size", "retry_of", "spec", "waited")

    def __init__(self, spec: FunctionSpec, ctx: DecisionContext, decision: Decision,
                 now: float, deadline: float, key: object) -> None:
        self.spec = spec
        self.ctx = ctx
        self.decision = decision
        self.key = key
        self.arrival = now
        self.attempt = 1
        self.attempt_start = now
        self.deadline = deadline
        self.retry_of: DecisionId | None = None
        self.placement: Placement | None = None
        self.pod_id: PodId | None = None
        self.pod_size: Size | None = None
        self.committed_at = now
        self.cold_start_ms = 0.0
        #: pods whose in-place resize was refused: busy at their real size until placed
        self.held: list[PodId] = []
        self.attempts: list[AttemptRecord] = []
        #: whether this attempt waited for room at least once
        self.waited = False


class StepKind(enum.Enum):
    RUN = "run"  # committed: start, resize or reuse the pod, then run
    WAIT = "wait"  # no room now: place again when capacity changes or at the deadline
    FAIL = "fail"  # cannot be placed (REJECT, or waited past the deadline): finished


@dataclass(slots=True)
class Step:
    """What `place` asks of the driver (a transient answer, not a record: not frozen, which
    keeps it cheap on the simulator's hot path)."""

    kind: StepKind
    placement: Placement | None = None
    #: pods that left the model (expired, evicted) and must be stopped before the run
    stop: tuple[PodId, ...] = ()
    reason: str = ""
    #: the invocation's record when kind is FAIL
    finished: Finished | None = None


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    """One placed (or unplaceable) decision of an invocation, as every report counts it."""

    number: int
    decision: Decision
    placement: Placement | None
    #: the size the pod ran at (None: never placed)
    pod_size: Size | None
    outcome: Outcome
    verdict: Verdict
    #: whether the policy learned from it (capacity failures teach nothing)
    learned: bool
    #: how long it held its pod (commit to end, cold start and resize included)
    held_s: float
    retry_of: DecisionId | None

    @property
    def allocated_vcpu_s(self) -> float:
        return 0.0 if self.pod_size is None else self.pod_size.vcpu * self.held_s

    @property
    def allocated_memory_gib_s(self) -> float:
        return 0.0 if self.pod_size is None else self.pod_size.memory_gib * self.held_s


@dataclass(frozen=True, slots=True)
class Finished:
    """An invocation's final record: its attempts and its end-to-end verdict."""

    key: object
    function: FunctionName
    attempts: tuple[AttemptRecord, ...]
    #: from the first decision to the end of the last attempt (ms)
    latency_ms: float
    slo_ms: float
    violated: bool
    failed: bool

    @property
    def final(self) -> AttemptRecord:
        return self.attempts[-1]


@dataclass(slots=True)
class Completion:
    """What `complete` asks of the driver (transient, like `Step`)."""

    record: AttemptRecord
    #: pods to stop (the failed attempt's pod)
    stop: tuple[PodId, ...] = ()
    #: the invocation goes on with another attempt (place it again)
    retry: bool = False
    finished: Finished | None = None


class Lifecycle:
    """Applies the lifecycle rules to one policy and one scheduler (one per driver)."""

    def __init__(self, policy: Policy, scheduler: Scheduler, *, supports_resize: bool,
                 slo: SloSource | None = None, config: LifecycleConfig = LifecycleConfig(),
                 on_finished: Callable[[Finished], None] | None = None,
                 learn: Callable[[DecisionContext, Decision, Outcome], None] | None = None,
                 ) -> None:
        """`learn`: where outcomes go to be learned (default `policy.learn`; the gateway
        defers learning past the response and ships it to the learner replica)."""
        self.policy = policy
        self.learn = learn if learn is not None else policy.learn
        self.scheduler = scheduler
        self.supports_resize = supports_resize
        self.slo: SloSource = slo if slo is not None else KnownSlo()
        self.config = config
        self.cost_model = cost_model_of(policy)
        self._escalate = policy if isinstance(policy, EscalatingPolicy) else None
        self.estimates: dict[FunctionName, Estimates] = {}
        self.on_finished = on_finished
        #: pod -> the invocation running on it (a platform model may ask what was decided)
        self.running: dict[PodId, Invocation] = {}

    def estimate(self, function: FunctionName) -> Estimates:
        est = self.estimates.get(function)
        if est is None:
            est = self.estimates[function] = Estimates()
        return est

    # -- decide ----------------------------------------------------------------------------

    def expire(self, now: float) -> list[PodId]:
        """Pods idle past their keep-alive window leave the model; returns them to stop."""
        return [p.pod_id for p in self.scheduler.expire(now)]

    def context(self, spec: FunctionSpec, features: Mapping[str, float], slo_ms: float | None,
                now: float) -> DecisionContext:
        fn = spec.name
        sched = self.scheduler
        return DecisionContext(spec, features, now, sched.warm_idle(fn, now),
                               self.supports_resize, slo_ms, partial(sched.preview, fn))

    def begin(self, spec: FunctionSpec, features: Mapping[str, float], slo_ms: float | None,
              now: float, key: object = None) -> Invocation:
        """Decide: the policy picks a size for this input given the warm pool at `now`."""
        ctx = self.context(spec, features, slo_ms, now)
        decision = self.policy.decide(ctx)
        return Invocation(spec, ctx, decision, now, now + self.config.capacity_wait_s, key)

    # -- place -----------------------------------------------------------------------------

    def place(self, inv: Invocation, now: float, queued: int = 0) -> Step:
        """Place the invocation's current decision at `now` (commits on RUN). `queued`: how
        many invocations of its function wait behind its busy pods (the driver's line); a
        WAIT behind a busy pod has `step.placement.pod_id` set."""
        sched = self.scheduler
        expired = sched.expire(now)
        stop = tuple(p.pod_id for p in expired) if expired else ()
        fn = inv.spec.name
        est = self.estimates.get(fn)
        if est is None:
            est = self.estimates[fn] = Estimates()
        cold_est = est.cold_start_ms
        size = inv.decision.size
        # not behind a busy pod once a resize was refused: that could be the held pod
        placement = sched.place(fn, size, now, cold_start_ms=cold_est,
                                busy_wait_ms=None if inv.held else est.warm_hold_ms,
                                queued=queued)
        kind = placement.kind
        if kind is _REJECT:
            self._release_held(inv, now)
            return Step(StepKind.FAIL, placement, stop, placement.reason,
                        self._fail(inv, now, placement))
        if kind is _QUEUE:
            # the cluster is full: give held pods back (usable at their real size) and wait
            self._release_held(inv, now)
            if now >= inv.deadline:
                return Step(StepKind.FAIL, placement, stop, placement.reason,
                            self._fail(inv, now, placement))
            inv.waited = True
            return Step(StepKind.WAIT, placement, stop, placement.reason)
        pod = sched.commit(placement, fn, now, cold_start_ms=cold_est or 0.0)
        if placement.pod_id is None:
            placement = replace(placement, pod_id=pod.pod_id)
        inv.placement = placement
        inv.pod_id = pod.pod_id
        inv.pod_size = pod.size
        inv.committed_at = now
        inv.cold_start_ms = 0.0
        self.running[pod.pod_id] = inv
        self._release_held(inv, now)
        return Step(StepKind.RUN, placement, stop + placement.evict if placement.evict else stop)

    def _release_held(self, inv: Invocation, now: float) -> None:
        if inv.held:
            for pod_id in inv.held:
                self.scheduler.release(pod_id, now)
            inv.held.clear()

    def started(self, inv: Invocation, now: float, cold_start_ms: float) -> None:
        """The cold-started pod is up (its cold start took `cold_start_ms`)."""
        assert inv.pod_id is not None
        self.scheduler.ready(inv.pod_id, now)
        inv.cold_start_ms = cold_start_ms
        self.estimate(inv.spec.name).observe_cold_start(cold_start_ms)

    def start_failed(self, inv: Invocation, now: float, detail: str) -> Finished:
        """The pod never came up: it leaves the model, the invocation fails untaught."""
        self._drop_pod(inv, now)
        return self._fail(inv, now, inv.placement, detail)

    def resize_rejected(self, inv: Invocation, now: float) -> None:
        """The platform refused the in-place resize: the pod stays at its old size, held
        aside (busy) while the invocation is placed again."""
        placement, pod_id = inv.placement, inv.pod_id
        assert placement is not None and pod_id is not None
        assert placement.resized_from is not None
        self.scheduler.revert_resize(pod_id, placement.resized_from, now)
        self.running.pop(pod_id, None)
        inv.held.append(pod_id)
        inv.placement = None
        inv.pod_id = None

    def pod_lost(self, inv: Invocation, now: float) -> None:
        """The pod turned out dead before the invocation reached it (it died while idle):
        nothing ran, the size is not to blame; the pod leaves the pool, place again."""
        self._drop_pod(inv, now)
        inv.placement = None
        inv.pod_id = None
        inv.pod_size = None

    def fail(self, inv: Invocation, now: float, detail: str) -> Finished:
        """No pod could run the current attempt (the driver gave up): finished, untaught."""
        self._drop_pod(inv, now)
        return self._fail(inv, now, inv.placement, detail)

    def resize_failed(self, inv: Invocation, now: float, detail: str) -> Finished:
        """The resize broke the pod: it leaves the model, the invocation fails untaught."""
        self._drop_pod(inv, now)
        return self._fail(inv, now, inv.placement, detail)

    def _drop_pod(self, inv: Invocation, now: float) -> None:
        if inv.pod_id is not None:
            self.scheduler.remove(inv.pod_id, now)
            self.running.pop(inv.pod_id, None)

    # -- judge, learn, retry or finish -------------------------------------------------------

    def complete(self, inv: Invocation, measured: Outcome, now: float) -> Completion:
        """The attempt ended at `now` with what the platform measured (its status, CPU seconds,
        peak memory; latency and cold start are the lifecycle's own)."""
        pod_id = inv.pod_id
        assert pod_id is not None and inv.placement is not None
        spec = inv.spec
        fn = spec.name
        sched = self.scheduler
        self.running.pop(pod_id, None)
        cold = inv.placement.kind is _COLD
        status = measured.status
        held_s = now - inv.committed_at
        stop: tuple[PodId, ...] = ()
        if status in POD_LOST:
            sched.remove(pod_id, now)
            stop = (pod_id,)
        else:
            sched.release(pod_id, now)
            if not cold:
                self.estimate(fn).observe_warm_hold(held_s * 1000.0)
        cold_ms = inv.cold_start_ms if cold else 0.0
        latency_ms = (now - inv.attempt_start) * 1000.0
        outcome = Outcome(latency_ms, status, cold, cold_ms, measured.cpu_seconds,
                          measured.peak_memory_mib, measured.detail)
        ctx = inv.ctx
        # the input's own cost, without the cold start, is what a slowdown SLO is relative to
        slo_ms = self.slo.resolve_after(spec, ctx.features, ctx.slo_ms, latency_ms - cold_ms,
                                        status is OutcomeStatus.OK)
        decision = inv.decision
        verdict = judge(decision.size, outcome, slo_ms, spec.largest, self.cost_model)
        learn_ctx = ctx if ctx.slo_ms is not None else replace(ctx, slo_ms=slo_ms)
        self.learn(learn_ctx, decision, outcome)
        record = AttemptRecord(inv.attempt, decision, inv.placement, inv.pod_size, outcome,
                               verdict, True, held_s, inv.retry_of)
        inv.attempts.append(record)
        if (status is _OOM and inv.attempt == 1 and self.config.retry_oom
                and self._escalate is not None):
            bigger = self._escalate.escalate(ctx, decision)
            if bigger is not None:
                inv.retry_of = decision.decision_id
                inv.decision = bigger
                inv.attempt = 2
                inv.attempt_start = now
                inv.deadline = now + self.config.capacity_wait_s
                inv.placement = None
                inv.pod_id = None
                inv.pod_size = None
                inv.waited = False
                return Completion(record, stop, retry=True)
        return Completion(record, stop, finished=self._finish(inv, now))

    def _fail(self, inv: Invocation, now: float, placement: Placement | None,
              detail: str = "") -> Finished:
        """No pod could run the attempt: a failure for the reports, nothing to learn."""
        spec = inv.spec
        outcome = Outcome((now - inv.attempt_start) * 1000.0, OutcomeStatus.CRASH,
                          detail=detail or (placement.reason if placement else ""))
        ctx = inv.ctx
        slo_ms = self.slo.resolve_after(spec, ctx.features, ctx.slo_ms, outcome.latency_ms,
                                        False)
        verdict = judge(inv.decision.size, outcome, slo_ms, spec.largest, self.cost_model)
        inv.attempts.append(AttemptRecord(inv.attempt, inv.decision, placement, None, outcome,
                                          verdict, False, 0.0, inv.retry_of))
        return self._finish(inv, now)

    def _finish(self, inv: Invocation, now: float) -> Finished:
        last = inv.attempts[-1]
        latency_ms = (now - inv.arrival) * 1000.0
        slo_ms = last.verdict.slo_ms
        status = last.outcome.status
        end_to_end = Outcome(latency_ms, status)
        done = Finished(inv.key, inv.spec.name, tuple(inv.attempts), latency_ms, slo_ms,
                        violated_fn(end_to_end, slo_ms), not end_to_end.ok)
        if self.on_finished is not None:
            self.on_finished(done)
        return done
