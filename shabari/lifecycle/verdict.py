"""The one verdict of an attempt: its SLO violation and its cost, under the policy's cost model.

What the decision log writes, what the reports count and what the policy learns are the same
numbers: the cost model is the policy's own (`CostAwarePolicy.cost_model`, else
`DEFAULT_COST`), so the logged cost is the learned cost.
"""

from __future__ import annotations

from dataclasses import dataclass

from shabari.agent.policy import CostAwarePolicy, Policy
from shabari.core.cost import DEFAULT_COST, CostModel, cost, violated
from shabari.core.spec import Size
from shabari.core.types import Outcome


@dataclass(frozen=True, slots=True)
class Verdict:
    slo_ms: float
    cost: float
    violated: bool


def cost_model_of(policy: Policy) -> CostModel:
    """The cost model `policy` learns with (the default for policies that learn no cost)."""
    return policy.cost_model if isinstance(policy, CostAwarePolicy) else DEFAULT_COST


def judge(size: Size, outcome: Outcome, slo_ms: float, largest: Size,
          model: CostModel = DEFAULT_COST) -> Verdict:
    """Cost and SLO verdict of running at `size` with `outcome` under a bound of `slo_ms`."""
    return Verdict(slo_ms, cost(size, outcome, slo_ms, largest, model),
                   violated(outcome, slo_ms))
