"""The one place where the cost of an invocation is defined.

The agent learns from it, the simulator and the gateway report it, tests assert on it. The
cost says what we want: meet the SLO, and among sizes that meet it, allocate as little as
possible. A failure (OOM, crash) is worst; a violation is graded by how far it missed, so the
learner can tell "just missed" from "hopeless"; a met SLO costs the allocated fraction of the
grid's largest size (CPU, plus GPU weighted as `gpu_weight` cores).
"""

from __future__ import annotations

from dataclasses import dataclass

from shabari.core.spec import Size
from shabari.core.types import Outcome, OutcomeStatus


@dataclass(frozen=True, slots=True)
class CostModel:
    failure: float = 2.0
    violation: float = 1.0
    #: extra violation cost per unit of (latency/slo - 1), capped at `violation_slope_cap`
    violation_slope: float = 0.5
    violation_slope_cap: float = 1.0
    #: weight of the allocation term when the SLO is met (max contribution when fully allocated)
    allocation: float = 0.5
    #: a GPU counts as this many vCPUs of allocation
    gpu_weight: float = 8.0

    def allocation_units(self, size: Size) -> float:
        return size.vcpu + self.gpu_weight * size.gpu


DEFAULT_COST = CostModel()


def cost(
    size: Size,
    outcome: Outcome,
    slo_ms: float,
    largest: Size,
    model: CostModel = DEFAULT_COST,
) -> float:
    """Cost of running one invocation at `size` with `outcome` under an SLO of `slo_ms`.

    Errors of the function itself (status ERROR: the input's fault) cost like a met SLO:
    no size would have helped, so they must not push the agent to larger sizes.
    """
    if outcome.status in (OutcomeStatus.OOM, OutcomeStatus.CRASH, OutcomeStatus.TIMEOUT):
        return model.failure
    alloc = model.allocation * model.allocation_units(size) / max(
        model.allocation_units(largest), 1e-9
    )
    if outcome.status is OutcomeStatus.OK and outcome.latency_ms > slo_ms:
        miss = min(outcome.latency_ms / slo_ms - 1.0, model.violation_slope_cap)
        return model.violation + model.violation_slope * miss + alloc
    return alloc


def violated(outcome: Outcome, slo_ms: float) -> bool:
    """SLO violation as every report counts it: failed, or slower than the bound."""
    return outcome.status is not OutcomeStatus.OK or outcome.latency_ms > slo_ms
