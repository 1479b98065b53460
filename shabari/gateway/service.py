"""The invocation path of the gateway, independent of HTTP.

    featurize -> DecisionContext -> policy.decide -> scheduler.place/commit
              -> backend (start pod | resize | invoke) -> Outcome -> policy.learn
              -> metrics, decision log, ledger

This is the same sequence of the same objects as the simulator's: only the clock (monotonic
wall time here) and the backend (real worker processes here) differ. Everything runs on one
event loop: `decide` and `learn` are synchronous and never interleave with each other for the
same function, which is what the VW workspaces need (they are not thread-safe). Nothing here
blocks the loop: backend calls are awaited, checkpoints are written in a worker thread.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from shabari.agent.policy import Policy
from shabari.backends.base import Backend
from shabari.core import (
    BackendError,
    CapacityError,
    Decision,
    DecisionContext,
    FunctionName,
    FunctionSpec,
    Outcome,
    OutcomeStatus,
    Placement,
    PlacementKind,
    PodId,
    ShabariError,
    Size,
    UnknownFunctionError,
    spec_to_mapping,
)
from shabari.core.cost import cost as cost_of
from shabari.core.cost import violated as violated_fn
from shabari.core.errors import ResizeRejectedError
from shabari.gateway.admission import AdmissionController
from shabari.gateway.config import GatewayConfig
from shabari.gateway.decisionlog import DecisionLog, decision_record
from shabari.gateway.metrics import GatewayMetrics, PoolLedger
from shabari.gateway.slo import BestLatencyTable, SloResolver
from shabari.scheduler import Scheduler, SchedulerConfig

log = logging.getLogger(__name__)


class Featurize(Protocol):
    def __call__(
        self, body: bytes, content_type: str | None, kind: str, options: Mapping[str, object]
    ) -> dict[str, float]: ...


@dataclass(slots=True)
class FunctionStats:
    invocations: int = 0
    slo_violations: int = 0
    failures: int = 0
    cold_starts: int = 0
    oom_retries: int = 0
    cold_start_ms_sum: float = 0.0
    #: moving average of how long a warm invocation holds its pod (ms): the expected wait
    #: behind a busy pod, which the scheduler weighs against a cold start
    warm_hold_ms: float | None = None

    @property
    def slo_attainment(self) -> float | None:
        if not self.invocations:
            return None
        return 1.0 - self.slo_violations / self.invocations

    def cold_start_estimate_ms(self) -> float | None:
        return self.cold_start_ms_sum / self.cold_starts if self.cold_starts else None

    def observe_warm_hold(self, held_ms: float) -> None:
        w = self.warm_hold_ms
        self.warm_hold_ms = held_ms if w is None else 0.8 * w + 0.2 * held_ms


@dataclass(frozen=True, slots=True)
class FunctionsChange:
    """What `Gateway.update_functions` did (names, sorted)."""

    added: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    #: changed functions whose size grid changed: their model starts fresh
    fresh_models: tuple[str, ...] = ()
    #: new or changed functions the backend could not prepare: not served (name -> reason)
    failed: Mapping[str, str] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.added or self.changed or self.removed or self.failed)


@dataclass(frozen=True, slots=True)
class Reply:
    """What the HTTP layer sends back for one invocation (success or post-decision failure)."""

    status: int
    body: bytes
    content_type: str
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Attempt:
    decision: Decision
    placement: Placement | None
    outcome: Outcome
    body: bytes
    content_type: str
    error: ShabariError | None
    pod_size: Size
    slo_ms: float
    violated: bool


def _outcome_of(exc: BackendError, latency_ms: float) -> Outcome:
    if exc.outcome is not None:
        return exc.outcome
    status = {
        "OutOfMemoryError": OutcomeStatus.OOM,
        "InvocationTimeoutError": OutcomeStatus.TIMEOUT,
    }.get(type(exc).__name__, OutcomeStatus.CRASH)
    return Outcome(latency_ms=latency_ms, status=status, detail=str(exc))


class Gateway:
    """Owns the pool model, the policy and the backend of one gateway process."""

    def __init__(
        self,
        *,
        functions: Mapping[str, FunctionSpec],
        policy: Policy,
        scheduler: Scheduler | None = None,
        backend: Backend,
        featurize: Featurize,
        slo: SloResolver | None = None,
        config: GatewayConfig | None = None,
        clock: Callable[[], float] = time.monotonic,
        scheduler_config: SchedulerConfig | None = None,
    ) -> None:
        """Without a `scheduler`, one is built in `start()` from the nodes the started backend
        reports (a cluster backend knows its real nodes only once started)."""
        self.functions = dict(functions)
        self.policy = policy
        self._scheduler = scheduler
        self._scheduler_config = scheduler_config
        self.backend = backend
        self.featurize = featurize
        self.slo = slo or SloResolver()
        self.config = config or GatewayConfig()
        self._clock = clock
        self._t0 = clock()
        self.metrics = GatewayMetrics()
        self.ledger = PoolLedger(self.metrics)
        self.admission = AdmissionController(
            self.config.max_concurrent, self.config.max_queue, self.config.queue_timeout_s)
        self.decisions = DecisionLog(self.config.decision_log_path,
                                     self.config.decision_log_max_bytes,
                                     self.config.decision_log_backups)
        self.stats: dict[str, FunctionStats] = {name: FunctionStats() for name in self.functions}
        self.ready = False
        #: the last registry reload's error (None: the file in use is the one on disk)
        self.registry_error: str | None = None
        self.restored: dict[str, int] = {}
        self._capacity = asyncio.Event()
        self._sweeper: asyncio.Task[None] | None = None
        self._touched: set[str] = set()
        #: functions whose spec changed since their last decision (see update_functions)
        self._refit: set[str] = set()
        self._closed = False
        self._flushing = False
        self._background: set[asyncio.Task[None]] = set()

    # -- clock -----------------------------------------------------------------------------

    def now(self) -> float:
        """Seconds since the gateway started (monotonic): the `now` every decision gets."""
        return self._clock() - self._t0

    @property
    def scheduler(self) -> Scheduler:
        if self._scheduler is None:
            raise RuntimeError("the gateway's scheduler is built by start(); call it first")
        return self._scheduler

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        await self.backend.start()
        if self._scheduler is None:
            cfg = self._scheduler_config or SchedulerConfig(
                keep_alive_s=self.config.keep_alive_s,
                supports_resize=self.backend.supports_resize)
            self._scheduler = Scheduler(self.backend.nodes(), cfg)
        for spec in self.functions.values():
            await self.backend.prepare(spec)
        await self._restore()
        self._sweeper = asyncio.create_task(self._sweep_loop(), name="shabari-keepalive")
        self.ready = True

    async def close(self) -> None:
        """Graceful shutdown: stop admitting, drain, checkpoint every model, stop every pod."""
        if self._closed:
            return
        self._closed = True
        self.ready = False
        self.admission.start_draining()
        drained = await self.admission.drained(self.config.drain_timeout_s)
        if not drained:
            log.warning("shutdown: %d invocations still running after %.0fs",
                        self.admission.running, self.config.drain_timeout_s)
        if self._sweeper is not None:
            self._sweeper.cancel()
            try:
                await self._sweeper
            except asyncio.CancelledError:
                pass
        try:
            await self.checkpoint_all()
        finally:
            now = self.now()
            for pod_id in self.ledger.pod_ids():
                self.ledger.stopped(pod_id, now)
            await self.backend.close()
            self.decisions.close()

    def _checkpoint_path(self, function: str) -> Path | None:
        d = self.config.checkpoint_dir
        return None if d is None else d / f"{function}.ckpt"

    async def _restore(self) -> None:
        restore = getattr(self.policy, "restore", None)
        if restore is None:
            return
        for name in self.functions:
            path = self._checkpoint_path(name)
            if path is None or not path.exists():
                continue
            data = await asyncio.to_thread(path.read_bytes)
            try:
                restore(name, data)
            except Exception as exc:  # a corrupt checkpoint must not keep the gateway down
                log.warning("checkpoint %s not restored (%s); starting %s from scratch",
                            path, exc, name)
                continue
            self._touched.add(name)
            self.restored[name] = self._model_version(name)

    async def checkpoint_all(self) -> list[Path]:
        """Write every touched function's model to `state_dir/models/<function>.ckpt`."""
        checkpoint = getattr(self.policy, "checkpoint", None)
        written: list[Path] = []
        if checkpoint is None:
            return written
        for name in sorted(self._touched):
            path = self._checkpoint_path(name)
            if path is None:
                continue
            data: bytes = checkpoint(name)
            await asyncio.to_thread(_atomic_write, path, data)
            written.append(path)
        return written

    async def update_functions(
        self, functions: Mapping[str, FunctionSpec],
        perf_tables: Mapping[str, BestLatencyTable] | None = None,
    ) -> FunctionsChange:
        """Serve `functions` from now on (a registry reload), without a restart.

        Added and changed functions are prepared on the backend first (one that fails is not
        served and is reported in `failed`; a changed one keeps its previous spec). Removed
        functions answer 404 from now on; their idle pods are stopped, in-flight invocations
        finish. Learned models survive: an unchanged function is not touched; a changed one
        keeps its model when its size grid is unchanged, and starts a fresh model otherwise
        (its idle pods, sized for the old grid, are stopped too). `perf_tables` replace the
        SLO resolver's tables (the best latencies it learned are kept).
        """
        old = self.functions
        added = sorted(set(functions) - set(old))
        removed = sorted(set(old) - set(functions))
        changed = sorted(n for n in set(functions) & set(old) if functions[n] != old[n])
        failed: dict[str, str] = {}
        for name in (*added, *changed):
            try:
                await self.backend.prepare(functions[name])
            except ShabariError as exc:
                failed[name] = str(exc)
                log.error("registry: function %s not served: %s", name, exc)
        new = dict(functions)
        for name in failed:
            if name in old:
                new[name] = old[name]
            else:
                del new[name]
        fresh = [n for n in changed if n not in failed and new[n].sizes != old[n].sizes]
        # the policy meets a changed spec right before that function's next decision (not
        # now: an invocation still in flight under the old spec would bind the old grid again)
        self._refit.update(n for n in changed if n not in failed)
        if perf_tables is not None:
            self.slo.set_tables(perf_tables)
        self.functions = new
        for name in new:  # a removed function keeps its counters (in-flight calls use them)
            self.stats.setdefault(name, FunctionStats())
        if self._scheduler is not None:
            now = self.now()
            for name in (*removed, *fresh):
                for pod in self._scheduler.pods(FunctionName(name)):
                    if pod.busy:
                        continue  # released when its invocation ends, then expires
                    self._scheduler.remove(pod.pod_id)
                    self.ledger.stopped(pod.pod_id, now)
                    await self._stop_pod(pod.pod_id)
            self._capacity_changed()
        change = FunctionsChange(tuple(added), tuple(n for n in changed if n not in failed),
                                 tuple(removed), tuple(fresh), failed)
        if change:
            log.info("registry: added %s, changed %s, removed %s, fresh models %s",
                     list(change.added), list(change.changed), list(change.removed),
                     list(change.fresh_models))
        return change

    def _refit_model(self, function: str) -> None:
        """Make the policy meet `function`'s new spec (right before its first decision).

        A learning policy's checkpoint round trip detaches the model from its old grid: the
        decision that follows keeps it when the new spec has the same grid, and starts a fresh
        model otherwise (`LearningPolicy.restore`). Static policies read the spec per decision.
        """
        checkpoint = getattr(self.policy, "checkpoint", None)
        restore = getattr(self.policy, "restore", None)
        if checkpoint is None or restore is None or function not in self._touched:
            return
        try:
            restore(function, checkpoint(function))
        except ShabariError as exc:
            log.warning("model of %s not carried over the spec change: %s", function, exc)

    async def _sweep_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.sweep_interval_s)
            await self.decisions.flush()
            now = self.now()
            for pod in self.scheduler.expire(now):
                self.ledger.stopped(pod.pod_id, now)
                await self._stop_pod(pod.pod_id)

    async def _stop_pod(self, pod_id: PodId) -> None:
        try:
            await self.backend.stop_pod(pod_id)
        except Exception as exc:  # best effort: the pod is gone from the model already
            log.warning("stopping pod %s failed: %s", pod_id, exc)

    def _capacity_changed(self) -> None:
        ev, self._capacity = self._capacity, asyncio.Event()
        ev.set()

    # -- introspection ---------------------------------------------------------------------

    def _model_version(self, function: str) -> int:
        state = self.learning_state(function)
        v = state.get("model_version", 0) if state else 0
        return int(v) if isinstance(v, int | float) else 0

    def learning_state(self, function: str) -> dict[str, Any]:
        state_fn = getattr(self.policy, "state", None)
        if state_fn is None:
            return {"phase": "static", "outcomes_seen": 0, "model_version": 0}
        state = state_fn(FunctionName(function))
        if dataclasses.is_dataclass(state) and not isinstance(state, type):
            return dataclasses.asdict(state)
        if isinstance(state, Mapping):
            return dict(state)
        return {"state": str(state)}

    # -- the invocation path -----------------------------------------------------------------

    def spec(self, function: str) -> FunctionSpec:
        spec = self.functions.get(function)
        if spec is None:
            raise UnknownFunctionError(f"unknown function {function!r}",
                                       detail=f"known: {', '.join(sorted(self.functions))}")
        return spec

    async def invoke(self, function: str, body: bytes, content_type: str | None) -> Reply:
        """Run one invocation end to end (the caller holds an admission slot)."""
        spec = self.spec(function)
        t_start = self._clock()
        features = self.featurize(body, content_type, spec.featurizer, spec.featurizer_options)
        slo_before = self.slo.resolve_before(spec, features)
        now = self.now()
        ctx = DecisionContext(
            spec=spec, features=features, now=now,
            warm_idle=self.scheduler.warm_idle(spec.name, now),
            supports_resize=self.backend.supports_resize, slo_ms=slo_before)
        if function in self._refit:
            self._refit.discard(function)
            self._refit_model(function)
        decision = self.policy.decide(ctx)
        self._touched.add(function)
        attempt = await self._attempt(spec, ctx, decision, body, content_type, t_start, 1, None)
        first = attempt
        if attempt.outcome.status is OutcomeStatus.OOM and self.config.retry_oom:
            escalate = getattr(self.policy, "escalate", None)
            bigger: Decision | None = escalate(ctx, attempt.decision) if escalate else None
            if bigger is not None:
                self.metrics.oom_retries.labels(function).inc()
                self.stats[function].oom_retries += 1
                attempt = await self._attempt(spec, ctx, bigger, body, content_type,
                                              self._clock(), 2, first.decision.decision_id)
        return self._reply(spec, attempt, retried=attempt is not first)

    async def _attempt(
        self, spec: FunctionSpec, ctx: DecisionContext, decision: Decision, body: bytes,
        content_type: str | None, t_start: float, attempt_no: int, retry_of: str | None,
    ) -> _Attempt:
        """Place and run one decision; latency counts from here (capacity wait, cold start,
        resize and execution included: what the caller waits for after the decision)."""
        fn = spec.name
        placement: Placement | None = None
        pod_size = decision.size
        error: ShabariError | None = None
        resp_body, resp_ct = b"", "application/octet-stream"
        t_decided = self._clock()
        decision_s = t_decided - t_start
        self.metrics.decision_seconds.labels(fn).observe(decision_s)
        held_s = 0.0
        try:
            placement, pod_id, pod_size, cold_ms, t_commit = await self._place(spec, decision)
            if placement.pod_id is None:
                placement = dataclasses.replace(placement, pod_id=pod_id)
            try:
                result = await self.backend.invoke(
                    pod_id, body, content_type, self.config.invoke_timeout_s)
            except BackendError as exc:
                t_end = self._clock()
                latency_ms = (t_end - t_decided) * 1000.0
                held_s = t_end - t_commit
                error = exc
                raw = _outcome_of(exc, latency_ms)
                outcome = dataclasses.replace(
                    raw, latency_ms=latency_ms, cold_start=placement.cold_start,
                    cold_start_ms=cold_ms, detail=raw.detail or str(exc))
                now = self.now()
                self.scheduler.remove(pod_id)
                self.ledger.stopped(pod_id, now)
                self._capacity_changed()
                await self._stop_pod(pod_id)
            else:
                t_end = self._clock()
                latency_ms = (t_end - t_decided) * 1000.0
                held_s = t_end - t_commit
                if not placement.cold_start:
                    self.stats[fn].observe_warm_hold(held_s * 1000.0)
                resp_body, resp_ct = result.body, result.content_type
                outcome = dataclasses.replace(
                    result.outcome, latency_ms=latency_ms, cold_start=placement.cold_start,
                    cold_start_ms=cold_ms)
                now = self.now()
                self.scheduler.release(pod_id, now)
                self.ledger.idle(pod_id, now)
                self._capacity_changed()
        except ShabariError as exc:
            # no pod could run it (capacity, backend down): nothing to learn about the size
            error = exc
            outcome = Outcome(latency_ms=(self._clock() - t_decided) * 1000.0,
                              status=OutcomeStatus.CRASH, detail=str(exc))
            slo_ms, violated = self._account(spec, ctx, decision, placement, outcome, None,
                                             attempt_no, retry_of, 0.0, decision_s, learn=False)
            return _Attempt(decision, placement, outcome, b"", "", error, pod_size, slo_ms,
                            violated)
        slo_ms, violated = self._account(spec, ctx, decision, placement, outcome, pod_size,
                                         attempt_no, retry_of, held_s, decision_s, learn=True)
        return _Attempt(decision, placement, outcome, resp_body, resp_ct, error, pod_size, slo_ms,
                        violated)

    async def _place(
        self, spec: FunctionSpec, decision: Decision
    ) -> tuple[Placement, PodId, Size, float, float]:
        """Place, commit, then start, resize or reuse the pod.

        Returns (placement, pod, pod size, cold start ms, clock at commit).

        A scheduler QUEUE waits (bounded) for capacity to change. A resize the platform
        rejects (`ResizeRejectedError`) leaves the pod usable at its old size: it is held
        aside while the invocation is placed again (another warm pod, or a cold start of the
        decided size), then released to the pool at its real size.
        """
        held: list[PodId] = []
        try:
            return await self._place_once(spec, decision, held)
        finally:
            if held:
                now = self.now()
                for pod_id in held:
                    self.scheduler.release(pod_id, now)
                    self.ledger.idle(pod_id, now)
                self._capacity_changed()

    async def _place_once(
        self, spec: FunctionSpec, decision: Decision, held: list[PodId]
    ) -> tuple[Placement, PodId, Size, float, float]:
        fn = spec.name
        deadline = self._clock() + self.config.capacity_wait_s
        est = self.stats[fn].cold_start_estimate_ms()
        while True:
            now = self.now()
            # not behind a busy pod once a resize was rejected: that could be the held pod
            placement = self.scheduler.place(
                fn, decision.size, now, cold_start_ms=est,
                busy_wait_ms=None if held else self.stats[fn].warm_hold_ms)
            if placement.kind is PlacementKind.REJECT:
                raise CapacityError(f"cannot place {fn} at {decision.size}",
                                    detail=placement.reason)
            if placement.kind is PlacementKind.QUEUE and held:
                # the cluster is full: give the held pods back (usable at their real size)
                # and wait for capacity like any other invocation
                now = self.now()
                for pod_id in held:
                    self.scheduler.release(pod_id, now)
                    self.ledger.idle(pod_id, now)
                held.clear()
                self._capacity_changed()
            if placement.kind is PlacementKind.QUEUE:
                remaining = deadline - self._clock()
                if remaining <= 0:
                    raise CapacityError(f"no capacity for {fn} at {decision.size} "
                                        f"within {self.config.capacity_wait_s:g}s",
                                        detail=placement.reason)
                ev = self._capacity
                try:
                    await asyncio.wait_for(ev.wait(), timeout=min(remaining, 1.0))
                except TimeoutError:
                    pass
                continue
            pod = self.scheduler.commit(placement, fn, now, cold_start_ms=est or 0.0)
            t_commit = self._clock()
            for victim in placement.evict:
                self.ledger.stopped(victim, now)
                await self._stop_pod(victim)
            if placement.kind is PlacementKind.COLD:
                try:
                    handle = await self.backend.start_pod(pod.pod_id, spec, pod.size,
                                                          pod.node_id)
                except BaseException:
                    self.scheduler.remove(pod.pod_id)
                    self._capacity_changed()
                    raise
                self.scheduler.ready(pod.pod_id, self.now())
                cold_ms = handle.cold_start_ms
                st = self.stats[fn]
                st.cold_starts += 1
                st.cold_start_ms_sum += cold_ms
                self.metrics.cold_starts.labels(fn).inc()
                self.ledger.started(pod.pod_id, fn, pod.size, self.now())
                return placement, pod.pod_id, pod.size, cold_ms, t_commit
            if placement.kind is PlacementKind.RESIZE:
                try:
                    await self.backend.resize(pod.pod_id, pod.size.cpu_millicores)
                except ResizeRejectedError as exc:
                    log.info("resize of %s to %s rejected (%s); placing again, the pod stays "
                             "warm at %s", pod.pod_id, pod.size, exc.reason or exc,
                             placement.resized_from)
                    self.metrics.resizes_rejected.labels(fn, exc.reason or "unknown").inc()
                    # the pod is back at its real size, still busy (held by this invocation
                    # so the next `place` looks elsewhere)
                    assert placement.resized_from is not None
                    self.scheduler.revert_resize(pod.pod_id, placement.resized_from)
                    held.append(pod.pod_id)
                    continue
                except BaseException:
                    self.scheduler.remove(pod.pod_id)
                    self.ledger.stopped(pod.pod_id, self.now())
                    self._capacity_changed()
                    await self._stop_pod(pod.pod_id)
                    raise
                self.metrics.resizes.labels(fn).inc()
            self.ledger.busy(pod.pod_id, pod.size, self.now())
            return placement, pod.pod_id, pod.size, 0.0, t_commit

    def _account(
        self, spec: FunctionSpec, ctx: DecisionContext, decision: Decision,
        placement: Placement | None, outcome: Outcome, pod_size: Size | None, attempt_no: int,
        retry_of: str | None, held_s: float, decision_s: float, *, learn: bool,
    ) -> tuple[float, bool]:
        fn = spec.name
        # the input's own cost, without the cold start, is what a slowdown SLO is relative to
        slo_ms = self.slo.resolve_after(spec, ctx.features, ctx.slo_ms,
                                        outcome.latency_ms - outcome.cold_start_ms, outcome.ok)
        c = cost_of(decision.size, outcome, slo_ms, spec.largest)
        violated = violated_fn(outcome, slo_ms)
        if learn:
            learn_ctx = ctx if ctx.slo_ms is not None else dataclasses.replace(ctx, slo_ms=slo_ms)
            self.policy.learn(learn_ctx, decision, outcome)
            self.metrics.model_version.labels(fn).set(decision.model_version)
        if pod_size is not None:
            self.metrics.allocated_vcpu_seconds.labels(fn).inc(pod_size.vcpu * held_s)
            self.metrics.allocated_memory_gib_seconds.labels(fn).inc(pod_size.memory_gib * held_s)
        self.metrics.used_vcpu_seconds.labels(fn).inc(max(outcome.cpu_seconds, 0.0))
        self.metrics.used_memory_gib_seconds.labels(fn).inc(
            max(outcome.peak_memory_mib, 0.0) / 1024.0 * held_s)
        rec = decision_record(
            ts=time.time(), decision=decision, features=ctx.features, slo_ms=slo_ms,
            placement=placement, outcome=outcome, cost=c, violated=violated,
            attempt=attempt_no, retry_of=retry_of)
        rec["held_ms"] = held_s * 1000.0
        rec["decision_us"] = decision_s * 1e6
        if pod_size is not None:
            rec["pod_size"] = {"cpu_millicores": pod_size.cpu_millicores,
                               "memory_mib": pod_size.memory_mib, "gpu": pod_size.gpu}
        self.decisions.write(rec)
        if self.decisions.pending >= self.decisions.batch and not self._flushing:
            self._flushing = True
            task = asyncio.create_task(self._flush_decisions())
            self._background.add(task)
            task.add_done_callback(self._background.discard)
        return slo_ms, violated

    async def _flush_decisions(self) -> None:
        try:
            await self.decisions.flush()
        finally:
            self._flushing = False

    def _reply(self, spec: FunctionSpec, attempt: _Attempt, *, retried: bool) -> Reply:
        fn = spec.name
        outcome = attempt.outcome
        st = self.stats[fn]
        st.invocations += 1
        violated = attempt.violated
        if violated:
            st.slo_violations += 1
            self.metrics.slo_violations.labels(fn).inc()
        status_label = outcome.status.value if attempt.error is None or attempt.placement \
            else "rejected"
        if not outcome.ok:
            st.failures += 1
        self.metrics.invocations.labels(fn, status_label).inc()
        self.metrics.latency_seconds.labels(fn).observe(outcome.latency_ms / 1000.0)
        size = attempt.decision.size
        headers = {
            "X-Shabari-Cpu-Millicores": str(size.cpu_millicores),
            "X-Shabari-Memory-Mib": str(size.memory_mib),
            "X-Shabari-Gpu": str(size.gpu),
            "X-Shabari-Cold-Start": "true" if outcome.cold_start else "false",
            "X-Shabari-Latency-Ms": f"{outcome.latency_ms:.3f}",
            "X-Shabari-Decision-Id": str(attempt.decision.decision_id),
            "X-Shabari-Slo-Ms": f"{attempt.slo_ms:.3f}",
            "X-Shabari-Policy": attempt.decision.policy,
        }
        if attempt.placement is not None:
            headers["X-Shabari-Placement"] = attempt.placement.kind.value
            ps = attempt.pod_size
            headers["X-Shabari-Pod-Size"] = f"{ps.cpu_millicores}m,{ps.memory_mib}Mi,{ps.gpu}"
        if retried:
            headers["X-Shabari-Retried"] = "oom"
        if attempt.error is not None:
            err = attempt.error
            return Reply(err.http_status, error_body(_error_title(err), err.detail or str(err)),
                         "application/json", headers)
        if outcome.status is OutcomeStatus.ERROR:
            detail = attempt.body.decode("utf-8", "replace")[:2000]
            return Reply(502, error_body("function raised an error", detail),
                         "application/json", headers)
        return Reply(200, attempt.body, attempt.content_type or "application/octet-stream",
                     headers)

    def functions_view(self) -> list[dict[str, Any]]:
        """The `GET /functions` document (the operator reads `stats`)."""
        out = []
        for name, spec in sorted(self.functions.items()):
            st = self.stats[name]
            m = spec_to_mapping(spec)
            learning = self.learning_state(name)
            out.append({
                "name": name,
                "slo": m["slo"],
                "featurizer": m["featurizer"],
                "sizes": m["sizes"],
                "gpuCapable": spec.gpu_capable,
                "defaultSize": m.get("defaultSize"),
                "learning": learning,
                "stats": {
                    "invocations": st.invocations,
                    "slo_violations": st.slo_violations,
                    "slo_attainment": st.slo_attainment,
                    "failures": st.failures,
                    "cold_starts": st.cold_starts,
                    "oom_retries": st.oom_retries,
                    "model_version": learning.get("model_version", 0),
                },
            })
        return out

    def stats_view(self) -> dict[str, Any]:
        """`GET /stats`: totals the demo and the benchmarks read (pool ledger, admission)."""
        t = self.ledger.totals(self.now())
        return {
            "uptime_s": self.now(),
            "pool": dataclasses.asdict(t),
            "admission": {"running": self.admission.running,
                          "waiting": self.admission.waiting,
                          "shed": dict(self.admission.shed)},
            "decision_log_records": self.decisions.records,
            "functions": {n: dataclasses.asdict(s) for n, s in self.stats.items()
                          if n in self.functions},
        }


def _error_title(err: ShabariError) -> str:
    return err.message


def error_body(error: str, detail: str = "") -> bytes:
    return json.dumps({"error": error, "detail": detail}).encode()


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)

