"""The gateway's driver of the invocation lifecycle (`shabari.lifecycle`), on the wall clock.

`InvocationPath.invoke` featurizes the body, then runs the shared lifecycle: decide, place,
start/resize/reuse the pod on the backend, run, judge, retry once or finish, learn; the rules
are the lifecycle's, the same the simulator applies. What is the gateway's own: the backend
calls, waiting (asynchronously) for room, and handing each attempt to `Accounting` and the
final one to `replies`. Everything runs on one event loop: `decide` and `learn` are
synchronous and never interleave for the same function, which is what the VW workspaces need.

What does not change the answer (learning, metrics, the decision log) runs after the response
(`deferred.AfterResponse`); where the outcome goes to be learned is `learn`: the policy itself
when this process is the learner, the replica's outcome shipper otherwise (`replica`). An OOM
is learned before the model escalates the memory.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping
from typing import Protocol

from shabari.agent.policy import ExplainingPolicy, Policy
from shabari.backends.base import Backend
from shabari.core import (
    BackendError,
    CapacityError,
    Decision,
    DecisionContext,
    FunctionSpec,
    Outcome,
    OutcomeStatus,
    PlacementKind,
    PodLostError,
    ShabariError,
)
from shabari.core.errors import ResizeRejectedError
from shabari.gateway.accounting import Accounting, FunctionStats
from shabari.gateway.checkpoints import Checkpoints
from shabari.gateway.config import GatewayConfig
from shabari.gateway.deferred import AfterResponse
from shabari.gateway.metrics import GatewayMetrics
from shabari.gateway.pool import PodPool
from shabari.gateway.recommend import Recommendations, run_decision, size_label
from shabari.gateway.replies import AttemptResult, Reply, reply_for
from shabari.gateway.slo import SloResolver
from shabari.lifecycle import (
    AttemptRecord,
    Finished,
    Invocation,
    Lifecycle,
    LifecycleConfig,
    StepKind,
)
from shabari.lifecycle.invocation import Completion

log = logging.getLogger(__name__)


class Featurize(Protocol):
    def __call__(
        self, body: bytes, content_type: str | None, kind: str, options: Mapping[str, object]
    ) -> dict[str, float]: ...


#: placements tried for one attempt when the pods it lands on turn out dead while idle
MAX_LOST_PODS = 3


def outcome_of(exc: BackendError) -> Outcome:
    """What a failed backend call measured, or its typed status when it measured nothing."""
    if exc.outcome is not None:
        return exc.outcome
    return Outcome(latency_ms=0.0, status=exc.outcome_status, detail=str(exc))


class _Ran:
    """One attempt's result as the gateway holds it until the reply."""

    __slots__ = ("body", "content_type", "done", "error")

    def __init__(self, done: Completion | Finished, body: bytes = b"",
                 content_type: str = "application/octet-stream",
                 error: ShabariError | None = None) -> None:
        self.done = done
        self.body = body
        self.content_type = content_type
        self.error = error


class InvocationPath:
    """Runs invocations; the gateway owns the collaborators and hands them in."""

    def __init__(
        self, *, policy: Policy, pool: PodPool, backend: Backend, featurize: Featurize,
        slo: SloResolver, config: GatewayConfig, stats: dict[str, FunctionStats],
        metrics: GatewayMetrics, accounting: Accounting, checkpoints: Checkpoints,
        clock: Callable[[], float], now: Callable[[], float],
        after: AfterResponse | None = None,
    ) -> None:
        self.policy = policy
        #: where outcomes go to be learned (replaced by a replica that is not the learner)
        self.learn: Callable[[DecisionContext, Decision, Outcome], None] = policy.learn
        self.after = after or AfterResponse()
        self.pool = pool
        self.backend = backend
        self.featurize = featurize
        self.slo = slo
        self.config = config
        self.stats = stats
        self.metrics = metrics
        self.accounting = accounting
        self.checkpoints = checkpoints
        self._clock = clock
        self.now = now
        #: functions whose spec changed since their last decision (see Gateway.update_functions)
        self.refit: set[str] = set()
        self._lifecycle: Lifecycle | None = None
        #: called with each invocation's final record (tests, tools)
        self.on_finished: Callable[[Finished], None] | None = None
        #: Recommend mode: what the policy would have run, per function (recommend.py)
        self.recommendations: dict[str, Recommendations] = {}
        self._explainer = policy if isinstance(policy, ExplainingPolicy) else None

    @property
    def lifecycle(self) -> Lifecycle:
        """The shared lifecycle over the policy and the scheduler (built once it exists)."""
        lc = self._lifecycle
        if lc is None:
            lc = self._lifecycle = Lifecycle(
                self.policy, self.pool.scheduler, supports_resize=self.backend.supports_resize,
                slo=self.slo, config=LifecycleConfig(retry_oom=self.config.retry_oom,
                                                     capacity_wait_s=self.config.capacity_wait_s),
                on_finished=self._finished, learn=self._learn_after)
        return lc

    def _learn_after(self, ctx: DecisionContext, decision: Decision, outcome: Outcome) -> None:
        """Learn after the response; an OOM now (the lifecycle escalates right after it)."""
        if outcome.status is OutcomeStatus.OOM:
            self.after.drain()
            self.learn(ctx, decision, outcome)
            return
        learn = self.learn
        self.after.add(lambda: learn(ctx, decision, outcome))

    def _finished(self, done: Finished) -> None:
        if self.on_finished is not None:
            self.on_finished(done)

    async def invoke(self, spec: FunctionSpec, body: bytes, content_type: str | None, *,
                     key: object = None) -> Reply:
        """Run one invocation end to end (the caller holds an admission slot)."""
        function = spec.name
        lc = self.lifecycle
        t_start = self._clock()
        features = self.featurize(body, content_type, spec.featurizer, spec.featurizer_options)
        slo_before = self.slo.resolve_before(spec, features)
        now = self.now()
        self.pool.stop_later(lc.expire(now))
        if function in self.refit:
            self.after.drain()  # outcomes of the old spec are learned before the refit
            self.refit.discard(function)
            self.checkpoints.refit(function)
        inv = lc.begin(spec, features, slo_before, now, key)
        recommended: Decision | None = None
        if spec.recommend_only:  # decide and learn, but run the target's own size
            recommended = inv.decision
            inv.decision = run_decision(self.policy, inv.ctx, inv.decision)
        self.checkpoints.touched.add(function)
        decision_s = self._clock() - t_start
        while True:
            ran = await self._attempt(inv, body, content_type)
            done = ran.done
            record = done.attempts[-1] if isinstance(done, Finished) else done.record
            self.after.add(self._account(function, inv, record, decision_s,
                                         recommended if record.number == 1 else None))
            decision_s = 0.0
            if isinstance(done, Completion) and done.retry:
                self.metrics.oom_retries.labels(function).inc()
                self.stats[function].oom_retries += 1
                continue
            finished = done if isinstance(done, Finished) else done.finished
            assert finished is not None
            break
        final = finished.final
        placed = final.pod_size is not None
        status_label = final.outcome.status.value if placed or ran.error is None else "rejected"
        outcome = final.outcome
        shown = dataclasses.replace(outcome, latency_ms=finished.latency_ms)  # all attempts
        self.accounting.invocation(function, shown, violated=finished.violated,
                                   status_label=status_label)
        result = AttemptResult(final.decision, final.placement if placed else None, shown,
                               ran.body, ran.content_type, ran.error,
                               final.pod_size or final.decision.size, finished.slo_ms,
                               finished.violated)
        reply = reply_for(result, retried=len(finished.attempts) > 1)
        if recommended is not None:
            reply.headers["X-Shabari-Recommended"] = size_label(recommended.size)
        return reply

    def _account(self, function: str, inv: Invocation, record: AttemptRecord,
                 decision_s: float, recommended: Decision | None) -> Callable[[], None]:
        def after_response() -> None:
            self.metrics.decision_seconds.labels(function).observe(decision_s)
            if record.learned:
                self.metrics.model_version.labels(function).set(record.decision.model_version)
                if recommended is not None:
                    ctx = inv.ctx
                    if ctx.slo_ms is None:
                        ctx = dataclasses.replace(ctx, slo_ms=record.verdict.slo_ms)
                    self._recommendation(ctx, recommended, record.decision,
                                         record.verdict.violated)
            self.accounting.attempt(function, inv.ctx, record, decision_s=decision_s,
                                    recommended=recommended)
        return after_response

    def _recommendation(self, ctx: DecisionContext, recommended: Decision, ran: Decision,
                        violated: bool) -> None:
        """Tally a Recommend-mode invocation; the model, having learned the run, judges the
        recommended size for this input (sure / possible / misses its SLO)."""
        fn = ctx.spec.name
        verdict = None
        if self._explainer is not None:
            want = recommended.size
            for e in self._explainer.explain(ctx).sizes:
                if e.size.cpu_millicores == want.cpu_millicores and e.size.gpu == want.gpu:
                    verdict = e.verdict
                    break
        rec = self.recommendations.setdefault(fn, Recommendations())
        rec.record(recommended.size, ran.size, verdict, violated)
        self.metrics.recommendations.labels(fn, size_label(recommended.size)).inc()
        if rec.savings is not None:
            self.metrics.recommended_savings.labels(fn).set(rec.savings)
        est = rec.estimated_slo_attainment
        if est is not None:
            self.metrics.recommended_slo_attainment.labels(fn).set(est)

    async def _attempt(self, inv: Invocation, body: bytes, content_type: str | None) -> _Ran:
        """Place and run the invocation's current decision; returns once it has an outcome.

        A QUEUE waits (until `capacity_wait_s`) for capacity to change. A resize the platform
        rejects (`ResizeRejectedError`) leaves the pod usable at its old size: it is held
        aside while the invocation is placed again, then released at its real size.
        """
        lc = self.lifecycle
        fn = inv.spec.name
        lost = 0
        while True:
            step = lc.place(inv, self.now(), self.pool.queued_behind(fn))
            if step.kind is StepKind.WAIT:
                self.pool.stop_later(step.stop)
                # behind a busy pod of its own: woken alone when one is released; for room
                # in a full cluster: woken by any capacity change
                assert step.placement is not None
                await self.pool.wait_for_capacity(
                    inv, inv.deadline - self.now(),
                    behind=fn if step.placement.pod_id is not None else None,
                    size=inv.decision.size)
                continue
            self.pool.done_waiting(inv)
            if step.kind is StepKind.FAIL:
                self.pool.stop_later(step.stop)
                assert step.finished is not None
                if step.placement is not None and step.placement.kind is PlacementKind.REJECT:
                    err = CapacityError(f"cannot place {fn} at {inv.decision.size}",
                                        detail=step.reason)
                else:
                    err = CapacityError(f"no capacity for {fn} at {inv.decision.size} within "
                                        f"{self.config.capacity_wait_s:g}s", detail=step.reason)
                return _Ran(step.finished, error=err)
            # RUN: what left the model goes first (an eviction frees room for a cold start)
            await self.pool.stop_all(step.stop)
            placement = step.placement
            assert placement is not None and inv.pod_id is not None and inv.pod_size is not None
            pod_id, size = inv.pod_id, inv.pod_size
            node_id = placement.node_id
            if placement.kind is PlacementKind.COLD:
                try:
                    assert node_id is not None
                    handle = await self.backend.start_pod(pod_id, inv.spec, size, node_id)
                except ShabariError as exc:
                    return _Ran(lc.start_failed(inv, self.now(), str(exc)), error=exc)
                except BaseException:
                    lc.start_failed(inv, self.now(), "cancelled")
                    raise
                lc.started(inv, self.now(), handle.cold_start_ms)
                self.stats[fn].cold_starts += 1
                self.metrics.cold_starts.labels(fn).inc()
            elif placement.kind is PlacementKind.RESIZE:
                try:
                    await self.backend.resize(pod_id, size.cpu_millicores)
                except ResizeRejectedError as exc:
                    log.info("resize of %s to %s rejected (%s); placing again, the pod stays "
                             "warm at %s", pod_id, size, exc.reason or exc,
                             placement.resized_from)
                    self.metrics.resizes_rejected.labels(fn, exc.reason or "unknown").inc()
                    lc.resize_rejected(inv, self.now())
                    continue
                except ShabariError as exc:
                    done = lc.resize_failed(inv, self.now(), str(exc))
                    await self.pool.stop(pod_id)
                    return _Ran(done, error=exc)
                except BaseException:
                    lc.resize_failed(inv, self.now(), "cancelled")
                    await self.pool.stop(pod_id)
                    raise
                self.metrics.resizes.labels(fn).inc()
            try:
                result = await self.backend.invoke(pod_id, body, content_type,
                                                   self.config.invoke_timeout_s)
            except PodLostError as exc:
                # the pod had died while idle: nothing ran, the size is not to blame
                lc.pod_lost(inv, self.now())
                await self.pool.stop(pod_id)
                self.metrics.pods_lost.labels(fn).inc()
                lost += 1
                log.warning("%s; placing %s again (%d/%d)", exc, fn, lost, MAX_LOST_PODS)
                if lost >= MAX_LOST_PODS:
                    return _Ran(lc.fail(inv, self.now(), str(exc)), error=exc)
                continue
            except BackendError as exc:
                completion = lc.complete(inv, outcome_of(exc), self.now())
                await self.pool.stop_all(completion.stop)
                return _Ran(completion, error=exc)
            completion = lc.complete(inv, result.outcome, self.now())
            await self.pool.stop_all(completion.stop)
            return _Ran(completion, result.body, result.content_type)
