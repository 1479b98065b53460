"""The gateway's invocation path: featurize, decide, place, run, judge, retry once, learn.

One `InvocationPath.invoke` call runs one invocation end to end over the policy, the
scheduler (through `PodPool`) and the backend, and hands the result to `Accounting` and
`replies`. Everything runs on one event loop: `decide` and `learn` are synchronous and never
interleave with each other for the same function, which is what the VW workspaces need.

What does not change the answer (learning, metrics, the decision log) runs after the response
(`deferred.AfterResponse`); where the outcome goes to be learned is `learn`: the policy itself
when this process is the learner, the replica's outcome shipper otherwise (`replica`).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping
from typing import Protocol

from shabari.agent.policy import EscalatingPolicy, ExplainingPolicy, Policy
from shabari.backends.base import Backend
from shabari.core import (
    BackendError,
    CapacityError,
    Decision,
    DecisionContext,
    FunctionSpec,
    Outcome,
    OutcomeStatus,
    Placement,
    PlacementKind,
    PodId,
    PodLostError,
    ShabariError,
    Size,
)
from shabari.core.cost import cost as cost_of
from shabari.core.cost import violated as violated_fn
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

log = logging.getLogger(__name__)


class Featurize(Protocol):
    def __call__(
        self, body: bytes, content_type: str | None, kind: str, options: Mapping[str, object]
    ) -> dict[str, float]: ...


#: placements tried for one attempt when the pods it lands on turn out dead while idle
MAX_LOST_PODS = 3


def outcome_of(exc: BackendError, latency_ms: float) -> Outcome:
    """What a failed backend call measured, or its typed status when it measured nothing."""
    if exc.outcome is not None:
        return exc.outcome
    return Outcome(latency_ms=latency_ms, status=exc.outcome_status, detail=str(exc))


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
        self._escalate = policy if isinstance(policy, EscalatingPolicy) else None
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
        #: Recommend mode: what the policy would have run, per function (recommend.py)
        self.recommendations: dict[str, Recommendations] = {}
        self._explainer = policy if isinstance(policy, ExplainingPolicy) else None

    async def invoke(self, spec: FunctionSpec, body: bytes, content_type: str | None) -> Reply:
        """Run one invocation end to end (the caller holds an admission slot)."""
        function = spec.name
        t_start = self._clock()
        features = self.featurize(body, content_type, spec.featurizer, spec.featurizer_options)
        slo_before = self.slo.resolve_before(spec, features)
        now = self.now()
        ctx = DecisionContext(
            spec=spec, features=features, now=now,
            warm_idle=self.pool.scheduler.warm_idle(spec.name, now),
            supports_resize=self.backend.supports_resize, slo_ms=slo_before)
        if function in self.refit:
            self.after.drain()  # outcomes of the old spec are learned before the refit
            self.refit.discard(function)
            self.checkpoints.refit(function)
        decision = self.policy.decide(ctx)
        recommended: Decision | None = None
        if spec.recommend_only:  # decide and learn, but run the target's own size
            recommended = decision
            decision = run_decision(self.policy, ctx, decision)
        self.checkpoints.touched.add(function)
        attempt = await self._attempt(spec, ctx, decision, body, content_type, t_start, 1, None,
                                      recommended)
        first = attempt
        if (attempt.outcome.status is OutcomeStatus.OOM and self.config.retry_oom
                and self._escalate is not None):
            self.after.drain()  # the OOM is learned before the model escalates the memory
            bigger = self._escalate.escalate(ctx, attempt.decision)
            if bigger is not None:
                self.metrics.oom_retries.labels(function).inc()
                self.stats[function].oom_retries += 1
                attempt = await self._attempt(spec, ctx, bigger, body, content_type,
                                              self._clock(), 2, first.decision.decision_id)
        status_label = (attempt.outcome.status.value
                        if attempt.error is None or attempt.placement else "rejected")
        self.accounting.invocation(function, attempt.outcome, violated=attempt.violated,
                                   status_label=status_label)
        reply = reply_for(attempt, retried=attempt is not first)
        if recommended is not None:
            reply.headers["X-Shabari-Recommended"] = size_label(recommended.size)
        return reply

    async def _attempt(
        self, spec: FunctionSpec, ctx: DecisionContext, decision: Decision, body: bytes,
        content_type: str | None, t_start: float, attempt_no: int, retry_of: str | None,
        recommended: Decision | None = None,
    ) -> AttemptResult:
        """Place and run one decision; latency counts from here (capacity wait, cold start,
        resize and execution included: what the caller waits for after the decision)."""
        fn = spec.name
        placement: Placement | None = None
        pod_size = decision.size
        error: ShabariError | None = None
        resp_body, resp_ct = b"", "application/octet-stream"
        t_decided = self._clock()
        decision_s = t_decided - t_start
        held_s = 0.0
        try:
            lost = 0
            failure: BackendError | None = None
            while True:
                placement, pod_id, pod_size, cold_ms, t_commit = await self._place(
                    spec, decision)
                if placement.pod_id is None:
                    placement = dataclasses.replace(placement, pod_id=pod_id)
                try:
                    result = await self.backend.invoke(
                        pod_id, body, content_type, self.config.invoke_timeout_s)
                    break
                except PodLostError as exc:
                    # the pod had died while idle: nothing ran, the size is not to blame
                    await self.pool.discard(pod_id, self.now())
                    self.metrics.pods_lost.labels(fn).inc()
                    lost += 1
                    log.warning("%s; placing %s again (%d/%d)", exc, fn, lost, MAX_LOST_PODS)
                    if lost >= MAX_LOST_PODS:
                        raise
                except BackendError as exc:
                    failure = exc
                    break
            if failure is not None:
                t_end = self._clock()
                latency_ms = (t_end - t_decided) * 1000.0
                held_s = t_end - t_commit
                error = failure
                raw = outcome_of(failure, latency_ms)
                outcome = dataclasses.replace(
                    raw, latency_ms=latency_ms, cold_start=placement.cold_start,
                    cold_start_ms=cold_ms, detail=raw.detail or str(failure))
                await self.pool.discard(pod_id, self.now())
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
                self.pool.release(pod_id, self.now())
        except ShabariError as exc:
            # no pod could run it (capacity, backend down): nothing to learn about the size
            error = exc
            outcome = Outcome(latency_ms=(self._clock() - t_decided) * 1000.0,
                              status=OutcomeStatus.CRASH, detail=str(exc))
            slo_ms, violated = self._judge(spec, ctx, decision, placement, outcome, None,
                                           attempt_no, retry_of, 0.0, decision_s, learn=False)
            return AttemptResult(decision, placement, outcome, b"", "", error, pod_size, slo_ms,
                                 violated)
        slo_ms, violated = self._judge(spec, ctx, decision, placement, outcome, pod_size,
                                       attempt_no, retry_of, held_s, decision_s, learn=True,
                                       recommended=recommended)
        return AttemptResult(decision, placement, outcome, resp_body, resp_ct, error, pod_size,
                             slo_ms, violated)

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
                    self.pool.release(pod_id, now)

    async def _place_once(
        self, spec: FunctionSpec, decision: Decision, held: list[PodId]
    ) -> tuple[Placement, PodId, Size, float, float]:
        fn = spec.name
        sched = self.pool.scheduler
        deadline = self._clock() + self.config.capacity_wait_s
        est = self.stats[fn].cold_start_estimate_ms()
        while True:
            now = self.now()
            # not behind a busy pod once a resize was rejected: that could be the held pod
            placement = sched.place(
                fn, decision.size, now, cold_start_ms=est,
                busy_wait_ms=None if held else self.stats[fn].warm_hold_ms,
                queued=self.pool.queued_behind(fn))
            if placement.kind is PlacementKind.REJECT:
                raise CapacityError(f"cannot place {fn} at {decision.size}",
                                    detail=placement.reason)
            if placement.kind is PlacementKind.QUEUE and held:
                # the cluster is full: give the held pods back (usable at their real size)
                # and wait for capacity like any other invocation
                now = self.now()
                for pod_id in held:
                    self.pool.release(pod_id, now)
                held.clear()
            if placement.kind is PlacementKind.QUEUE:
                remaining = deadline - self._clock()
                if remaining <= 0:
                    raise CapacityError(f"no capacity for {fn} at {decision.size} "
                                        f"within {self.config.capacity_wait_s:g}s",
                                        detail=placement.reason)
                # behind a busy pod of its own: woken alone when one is released; for room
                # in a full cluster: woken by any capacity change
                await self.pool.wait_for_capacity(
                    min(remaining, 1.0), behind=fn if placement.pod_id is not None else None,
                    size=decision.size)
                continue
            pod = sched.commit(placement, fn, now, cold_start_ms=est or 0.0)
            t_commit = self._clock()
            await self.pool.evicted(placement.evict, now)
            if placement.kind is PlacementKind.COLD:
                try:
                    handle = await self.backend.start_pod(pod.pod_id, spec, pod.size,
                                                          pod.node_id)
                except BaseException:
                    self.pool.forget(pod.pod_id)
                    raise
                cold_ms = handle.cold_start_ms
                st = self.stats[fn]
                st.cold_starts += 1
                st.cold_start_ms_sum += cold_ms
                self.metrics.cold_starts.labels(fn).inc()
                self.pool.started(pod.pod_id, fn, pod.size, self.now())
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
                    sched.revert_resize(pod.pod_id, placement.resized_from)
                    held.append(pod.pod_id)
                    continue
                except BaseException:
                    await self.pool.discard(pod.pod_id, self.now())
                    raise
                self.metrics.resizes.labels(fn).inc()
            self.pool.busy(pod.pod_id, pod.size, self.now())
            return placement, pod.pod_id, pod.size, 0.0, t_commit

    def _judge(
        self, spec: FunctionSpec, ctx: DecisionContext, decision: Decision,
        placement: Placement | None, outcome: Outcome, pod_size: Size | None, attempt_no: int,
        retry_of: str | None, held_s: float, decision_s: float, *, learn: bool,
        recommended: Decision | None = None,
    ) -> tuple[float, bool]:
        # the input's own cost, without the cold start, is what a slowdown SLO is relative to
        slo_ms = self.slo.resolve_after(spec, ctx.features, ctx.slo_ms,
                                        outcome.latency_ms - outcome.cold_start_ms, outcome.ok)
        c = cost_of(decision.size, outcome, slo_ms, spec.largest)
        violated = violated_fn(outcome, slo_ms)

        def after_response() -> None:
            fn = spec.name
            self.metrics.decision_seconds.labels(fn).observe(decision_s)
            if learn:
                learn_ctx = (ctx if ctx.slo_ms is not None
                             else dataclasses.replace(ctx, slo_ms=slo_ms))
                self.learn(learn_ctx, decision, outcome)
                self.metrics.model_version.labels(fn).set(decision.model_version)
                if recommended is not None:
                    self._recommendation(learn_ctx, recommended, decision, violated)
            self.accounting.attempt(
                fn, ctx, decision, placement, outcome, pod_size, attempt_no=attempt_no,
                retry_of=retry_of, held_s=held_s, decision_s=decision_s, slo_ms=slo_ms, cost=c,
                violated=violated, recommended=recommended)

        self.after.add(after_response)
        return slo_ms, violated

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
