"""Recommend mode (DESIGN 4.8): decide and learn, but run every invocation at the target's size.

Platform teams see what Shabari would do before it acts (like VPA's `updateMode: Off`). For a
function whose spec says `mode: Recommend` the invocation path asks the policy as usual, keeps
that decision as the *recommendation*, and runs the function's own size instead
(`FunctionSpec.safe_default`: the operator sets it to the target container's own size). The
policy learns from what ran (`RecommendingPolicy.ran_at`; the agent's evidence from one size
informs every other), and this module keeps, per function:

- how often each size was recommended;
- estimated savings: the share of the vCPUs (and memory) the running size reserves that the
  recommendations would not have reserved, over the invocations so far;
- estimated SLO effect: for each recommendation, what the model (after learning the run at
  the own size) says about that size meeting this input's SLO: sure (its upper run-time
  estimate does), possible (only its lower estimate does) or misses; the estimated
  attainment counts sure as met and possible as half, over the judged recommendations,
  next to the attainment observed at the own size.

These go to `GET /functions` (`recommendation`), the operator copies them into the policy's
status (`kubectl get fsp`: Recommended, Savings columns), and to Prometheus.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from shabari.agent.policy import Policy, RecommendingPolicy
from shabari.core import Decision, DecisionContext, Size
from shabari.core.units import format_cpu, format_memory


def size_label(size: Size) -> str:
    gpu = f",gpu={size.gpu}" if size.gpu else ""
    return f"cpu={format_cpu(size.cpu_millicores)},mem={format_memory(size.memory_mib)}{gpu}"


def run_decision(policy: Policy, ctx: DecisionContext, recommended: Decision) -> Decision:
    """What a Recommend-mode invocation runs: the spec's own size, probability 1."""
    own = ctx.spec.safe_default
    if isinstance(policy, RecommendingPolicy):
        return policy.ran_at(ctx, recommended, own)
    index = ctx.spec.sizes.index(own) if own in ctx.spec.sizes else -1
    return Decision(recommended.decision_id, recommended.function, own, index, 1.0,
                    recommended.model_version, f"recommend-only ({recommended.reason})",
                    explored=False, policy=recommended.policy)


@dataclass(slots=True)
class Recommendations:
    """Per-function tallies of Recommend mode (see the module docstring)."""

    invocations: int = 0
    by_size: Counter[Size] = field(default_factory=Counter)
    run_vcpu: float = 0.0
    recommended_vcpu: float = 0.0
    run_memory_mib: float = 0.0
    recommended_memory_mib: float = 0.0
    sure: int = 0
    possible: int = 0
    misses: int = 0
    run_violations: int = 0
    run_size: Size | None = None

    def record(self, recommended: Size, ran: Size, verdict: str | None,
               violated_at_run: bool) -> None:
        self.invocations += 1
        self.by_size[recommended] += 1
        self.run_size = ran
        self.run_vcpu += ran.vcpu
        self.recommended_vcpu += recommended.vcpu
        self.run_memory_mib += ran.memory_mib
        self.recommended_memory_mib += recommended.memory_mib
        self.run_violations += violated_at_run
        if verdict == "sure":
            self.sure += 1
        elif verdict == "possible":
            self.possible += 1
        elif verdict == "misses":
            self.misses += 1

    @property
    def savings(self) -> float | None:
        """Share of the run size's vCPUs the recommendations would not reserve."""
        return None if self.run_vcpu <= 0 else 1.0 - self.recommended_vcpu / self.run_vcpu

    @property
    def memory_savings(self) -> float | None:
        return (None if self.run_memory_mib <= 0
                else 1.0 - self.recommended_memory_mib / self.run_memory_mib)

    @property
    def estimated_slo_attainment(self) -> float | None:
        judged = self.sure + self.possible + self.misses
        return None if not judged else (self.sure + 0.5 * self.possible) / judged

    def view(self) -> dict[str, Any]:
        """The `recommendation` of `GET /functions` (the CRD status field, camelCase)."""
        out: dict[str, Any] = {"invocations": self.invocations}
        if not self.invocations:
            return out
        top = self.by_size.most_common()
        out["size"] = size_label(top[0][0])
        out["sizes"] = [{"size": size_label(s), "share": round(n / self.invocations, 4)}
                        for s, n in top[:8]]
        if self.run_size is not None:
            out["runSize"] = size_label(self.run_size)
        savings, memory = self.savings, self.memory_savings
        if savings is not None:
            out["estimatedSavingsFraction"] = round(savings, 4)
            text = f"cpu {savings:.0%}"
            if memory is not None:
                text += f", mem {memory:.0%}"
                out["estimatedMemorySavingsFraction"] = round(memory, 4)
            out["estimatedSavings"] = text
        est = self.estimated_slo_attainment
        if est is not None:
            out["estimatedSloAttainment"] = round(est, 4)
        out["observedSloAttainment"] = round(1.0 - self.run_violations / self.invocations, 4)
        out["judged"] = {"sure": self.sure, "possible": self.possible, "misses": self.misses}
        return out
