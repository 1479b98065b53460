"""The gateway's accounting of invocations: per-function counters, metrics, the decision log.

One place records what an attempt cost (allocated and used resources, the decision log
record with its cost and verdict) and what an invocation's final answer was (invocations,
SLO violations, failures). The pool's busy/idle integrals live in `metrics.PoolLedger`.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from shabari.core import Decision, DecisionContext, Outcome
from shabari.gateway.decisionlog import DecisionLog, decision_record
from shabari.gateway.metrics import GatewayMetrics
from shabari.lifecycle import AttemptRecord


@dataclass(slots=True)
class FunctionStats:
    """Per-function counters of the `/functions` and `/stats` views (the estimates the
    scheduler's queueing rule uses are the lifecycle's: `shabari.lifecycle.Estimates`)."""

    invocations: int = 0
    slo_violations: int = 0
    failures: int = 0
    cold_starts: int = 0
    oom_retries: int = 0

    @property
    def slo_attainment(self) -> float | None:
        if not self.invocations:
            return None
        return 1.0 - self.slo_violations / self.invocations


class Accounting:
    """Writes each attempt to the metrics and the decision log; counts each invocation."""

    def __init__(self, metrics: GatewayMetrics, decisions: DecisionLog,
                 stats: dict[str, FunctionStats]) -> None:
        self.metrics = metrics
        self.decisions = decisions
        self.stats = stats
        self._flushing = False
        self._background: set[asyncio.Task[None]] = set()

    def attempt(self, function: str, ctx: DecisionContext, record: AttemptRecord, *,
                decision_s: float, recommended: Decision | None = None) -> None:
        """One attempt ran (or could not be placed): resources, and its decision log record
        with the lifecycle's verdict (the cost the policy learned)."""
        m = self.metrics
        pod_size = record.pod_size
        outcome = record.outcome
        held_s = record.held_s
        if pod_size is not None:
            m.allocated_vcpu_seconds.labels(function).inc(record.allocated_vcpu_s)
            m.allocated_memory_gib_seconds.labels(function).inc(record.allocated_memory_gib_s)
        m.used_vcpu_seconds.labels(function).inc(max(outcome.cpu_seconds, 0.0))
        m.used_memory_gib_seconds.labels(function).inc(
            max(outcome.peak_memory_mib, 0.0) / 1024.0 * held_s)
        verdict = record.verdict
        rec = decision_record(
            ts=time.time(), decision=record.decision, features=ctx.features,
            slo_ms=verdict.slo_ms, placement=record.placement if pod_size else None,
            outcome=outcome, cost=verdict.cost, violated=verdict.violated,
            attempt=record.number, retry_of=record.retry_of)
        rec["held_ms"] = held_s * 1000.0
        rec["decision_us"] = decision_s * 1e6
        if recommended is not None:  # Recommend mode: what the policy would have run
            r = recommended.size
            rec["recommended"] = {**r.to_dict(), "probability": recommended.probability,
                                  "reason": recommended.reason}
        if pod_size is not None:
            rec["pod_size"] = pod_size.to_dict()
        self.decisions.write(rec)
        if self.decisions.pending >= self.decisions.batch and not self._flushing:
            self._flushing = True
            task = asyncio.create_task(self._flush_decisions())
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    def invocation(self, function: str, outcome: Outcome, *, violated: bool,
                   status_label: str) -> None:
        """An invocation got its final answer (after any retry)."""
        st = self.stats[function]
        st.invocations += 1
        if violated:
            st.slo_violations += 1
            self.metrics.slo_violations.labels(function).inc()
        if not outcome.ok:
            st.failures += 1
        self.metrics.invocations.labels(function, status_label).inc()
        self.metrics.latency_seconds.labels(function).observe(outcome.latency_ms / 1000.0)

    async def _flush_decisions(self) -> None:
        try:
            await self.decisions.flush()
        finally:
            self._flushing = False
