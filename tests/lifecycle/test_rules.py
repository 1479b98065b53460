"""The lifecycle's rules, one behaviour each, on a real scheduler (docs/architecture.md)."""

from __future__ import annotations

import pytest

from shabari.core import (
    SLO,
    Decision,
    DecisionContext,
    DecisionId,
    FunctionName,
    FunctionSpec,
    NodeCapacity,
    NodeId,
    Outcome,
    OutcomeStatus,
    PlacementKind,
    Size,
)
from shabari.core.cost import DEFAULT_COST, CostModel
from shabari.lifecycle import Invocation, Lifecycle, LifecycleConfig, PoolIntegrals, StepKind
from shabari.lifecycle.invocation import Completion
from shabari.scheduler import Scheduler, SchedulerConfig

F = FunctionName("f")
SIZES = (Size(500, 256), Size(500, 1024), Size(2000, 1024))
SPEC = FunctionSpec(name=F, slo=SLO(latency_ms=100.0), sizes=SIZES)


class Fixed:
    """Decides `size`; escalates to 1 GiB; remembers what it learned."""

    name = "fixed"

    def __init__(self, size: Size = SIZES[0], cost_model: CostModel = DEFAULT_COST) -> None:
        self.size = size
        self.learned: list[tuple[Decision, Outcome, float | None]] = []
        self.n = 0
        self._cost_model = cost_model

    @property
    def cost_model(self) -> CostModel:
        return self._cost_model

    def decide(self, ctx: DecisionContext) -> Decision:
        self.n += 1
        return Decision(DecisionId(f"d{self.n}"), F, self.size, SIZES.index(self.size), 1.0, 0,
                        "fixed")

    def learn(self, ctx: DecisionContext, decision: Decision, outcome: Outcome) -> None:
        self.learned.append((decision, outcome, ctx.slo_ms))

    def escalate(self, ctx: DecisionContext, decision: Decision) -> Decision | None:
        self.n += 1
        return Decision(DecisionId(f"e{self.n}"), F, decision.size.with_memory(1024), 1, 1.0,
                        0, "escalated")


def _lc(policy: Fixed, *, node_cpu: int = 4000, wait_s: float = 30.0,
        resize: bool = True) -> Lifecycle:
    sched = Scheduler((NodeCapacity(NodeId("n"), node_cpu, 8192),),
                      SchedulerConfig(keep_alive_s=10.0, supports_resize=resize))
    return Lifecycle(policy, sched, supports_resize=resize,
                     config=LifecycleConfig(capacity_wait_s=wait_s))


def _run(lc: Lifecycle, now: float, status: OutcomeStatus,
         end: float) -> tuple[Invocation, Completion]:
    inv = lc.begin(SPEC, {"x": 1.0}, 100.0, now)
    step = lc.place(inv, now)
    assert step.kind is StepKind.RUN
    return inv, lc.complete(inv, Outcome(0.0, status), end)


class TestRetry:
    def test_an_oom_is_retried_once_with_the_escalated_size(self) -> None:
        policy = Fixed()
        lc = _lc(policy)
        inv, done = _run(lc, 0.0, OutcomeStatus.OOM, 0.05)
        assert done.retry and inv.decision.size == Size(500, 1024) and inv.attempt == 2
        assert lc.place(inv, 0.05).kind is StepKind.RUN
        again = lc.complete(inv, Outcome(0.0, OutcomeStatus.OOM), 0.08)
        assert not again.retry and again.finished is not None and again.finished.failed

    @pytest.mark.parametrize("status", [OutcomeStatus.TIMEOUT, OutcomeStatus.CRASH,
                                        OutcomeStatus.ERROR])
    def test_nothing_else_is_retried(self, status: OutcomeStatus) -> None:
        _, done = _run(_lc(Fixed()), 0.0, status, 0.05)
        assert not done.retry and done.finished is not None

    def test_a_retried_invocation_is_judged_on_both_attempts_and_learns_each_alone(self) -> None:
        policy = Fixed()
        lc = _lc(policy)
        inv, _ = _run(lc, 0.0, OutcomeStatus.OOM, 0.06)
        assert lc.place(inv, 0.06).kind is StepKind.RUN  # the OOM-killed pod is gone: cold
        done = lc.complete(inv, Outcome(0.0, OutcomeStatus.OK), 0.13)
        fin = done.finished
        assert fin is not None
        assert fin.latency_ms == pytest.approx(130.0) and fin.violated  # 130 ms > 100 ms SLO
        assert [o.latency_ms for _, o, _ in policy.learned] == pytest.approx([60.0, 70.0])
        assert fin.attempts[1].verdict.violated is False  # the retry alone met the SLO


class TestCapacityFailures:
    def test_a_size_no_node_can_hold_fails_untaught(self) -> None:
        policy = Fixed(Size(2000, 1024))
        lc = _lc(policy, node_cpu=1000)
        inv = lc.begin(SPEC, {}, 100.0, 0.0)
        step = lc.place(inv, 0.0)
        assert step.kind is StepKind.FAIL and step.placement is not None
        assert step.placement.kind is PlacementKind.REJECT
        assert step.finished is not None and step.finished.failed and step.finished.violated
        assert policy.learned == [] and not step.finished.final.learned

    def test_waiting_past_the_deadline_fails_untaught(self) -> None:
        policy = Fixed(Size(2000, 1024))
        lc = _lc(policy, node_cpu=2000, wait_s=5.0)
        first = lc.begin(SPEC, {}, 100.0, 0.0)
        assert lc.place(first, 0.0).kind is StepKind.RUN  # takes the whole node
        waiting = lc.begin(SPEC, {}, 100.0, 1.0)
        assert lc.place(waiting, 1.0).kind is StepKind.WAIT
        assert lc.place(waiting, 5.9).kind is StepKind.WAIT
        step = lc.place(waiting, 6.0)
        assert step.kind is StepKind.FAIL and step.finished is not None
        assert step.finished.latency_ms == pytest.approx(5000.0)
        assert policy.learned == []


class TestPods:
    def test_the_pod_of_a_failed_invocation_leaves_the_pool(self) -> None:
        lc = _lc(Fixed())
        inv, done = _run(lc, 0.0, OutcomeStatus.TIMEOUT, 1.0)
        placement = inv.attempts[0].placement
        assert placement is not None and done.stop == (placement.pod_id,)
        assert lc.scheduler.pods(F) == []

    def test_a_function_error_keeps_the_pod_warm(self) -> None:
        lc = _lc(Fixed())
        _, done = _run(lc, 0.0, OutcomeStatus.ERROR, 1.0)
        assert done.stop == () and [p.busy for p in lc.scheduler.pods(F)] == [False]

    def test_idle_ends_at_the_keep_alive_deadline_however_late_expiry_is_seen(self) -> None:
        lc = _lc(Fixed())
        pool = PoolIntegrals()
        lc.scheduler.subscribe(pool)
        _run(lc, 0.0, OutcomeStatus.OK, 1.0)  # idle from 1 s, keep-alive 10 s
        assert lc.expire(500.0)
        assert pool.idle_vcpu_s == pytest.approx(0.5 * 10.0)
        assert pool.busy_vcpu_s == pytest.approx(0.5 * 1.0)


class TestWarmFit:
    def test_policies_see_the_schedulers_answer_with_node_headroom(self) -> None:
        lc = _lc(Fixed(), node_cpu=1000)
        _run(lc, 0.0, OutcomeStatus.OK, 0.1)  # an idle 500m pod; 500m free on the node
        ctx = lc.context(SPEC, {}, 100.0, 0.2)
        assert ctx.placement_kind(Size(500, 256)) is PlacementKind.WARM
        # a resize to 2000m needs +1500m on a node with 500m free: a cold start instead
        assert ctx.placement_kind(Size(2000, 256)) is PlacementKind.COLD
        assert ctx.would_cold_start(Size(2000, 256))
        # the context's own rule, without the scheduler, cannot see the node
        bare = DecisionContext(SPEC, {}, 0.2, ctx.warm_idle, True, 100.0)
        assert bare.placement_kind(Size(2000, 256)) is PlacementKind.RESIZE


class TestVerdict:
    def test_the_logged_cost_is_the_cost_model_the_policy_learns_with(self) -> None:
        cheap = CostModel(failure=7.0)
        _, done = _run(_lc(Fixed(cost_model=cheap)), 0.0, OutcomeStatus.TIMEOUT, 0.05)
        assert done.record.verdict.cost == 7.0
