"""The narrow interface every sizing policy implements (River-style decide/learn).

The simulator, the gateway and the tests drive every policy, learning or not, through exactly
this protocol: `decide(ctx)` before the invocation runs, then `learn(ctx, decision, outcome)`
with the *same* `ctx` object once its outcome is known. Learning policies additionally expose
their per-function state and a safe checkpoint format (`LearningPolicy`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

from shabari.core.context import DecisionContext
from shabari.core.cost import CostModel
from shabari.core.ids import FunctionName
from shabari.core.spec import Size
from shabari.core.types import Decision, Outcome

Phase = Literal["safe-start", "exploring", "learned"]
PHASES: tuple[Phase, ...] = ("safe-start", "exploring", "learned")


@runtime_checkable
class Policy(Protocol):
    """Picks a size per invocation; may learn from outcomes."""

    name: str

    def decide(self, ctx: DecisionContext) -> Decision: ...

    def learn(self, ctx: DecisionContext, decision: Decision, outcome: Outcome) -> None: ...


@runtime_checkable
class EscalatingPolicy(Policy, Protocol):
    """A policy that can retry a failed (OOM-killed) invocation once with a bigger size."""

    def escalate(self, ctx: DecisionContext, decision: Decision) -> Decision | None: ...


@runtime_checkable
class CostAwarePolicy(Policy, Protocol):
    """A policy that learns from a cost: the drivers log and report that same cost model."""

    @property
    def cost_model(self) -> CostModel: ...


@dataclass(frozen=True, slots=True)
class LearningState:
    """Where one function's model stands (reported by the gateway's /functions and the CRD)."""

    outcomes: int
    model_version: int
    phase: Phase

    def to_dict(self) -> dict[str, object]:
        return {"outcomes": self.outcomes, "modelVersion": self.model_version,
                "phase": self.phase}


@runtime_checkable
class LearningPolicy(Policy, Protocol):
    """A policy with per-function models that can be inspected, saved and restored."""

    def state(self, function: FunctionName) -> LearningState: ...

    def checkpoint(self, function: FunctionName) -> bytes: ...

    def restore(self, function: FunctionName, data: bytes) -> None: ...


# --------------------------------------------------------------------------- explanations

Verdict = Literal["sure", "possible", "misses", "unknown"]


@dataclass(frozen=True, slots=True)
class SizeExplanation:
    """What the policy knows about one size of the grid for one input."""

    size: Size
    #: probability that `decide` picks this size for this input right now
    probability: float
    #: predicted run time range (ms) at this size; None where nothing is known
    latency_low_ms: float | None = None
    latency_high_ms: float | None = None
    #: what this invocation would add at this size (cold start, in-place resize), ms
    overhead_ms: float = 0.0
    #: expected cost (`shabari.core.cost`) at the predicted run time; None if unknown
    cost: float | None = None
    #: does it meet the SLO: sure (upper estimate does), possible (lower does), misses, unknown
    verdict: Verdict = "unknown"
    #: runs seen at this size for inputs of this class
    runs: int = 0


@dataclass(frozen=True, slots=True)
class Explanation:
    """Why `decide(ctx)` picks what it picks; computed without changing the policy's state."""

    function: str
    policy: str
    phase: str
    features: Mapping[str, float]
    slo_ms: float | None
    chosen: Size
    reason: str
    #: one sentence: why the chosen size won over the cheaper ones
    why: str
    sizes: tuple[SizeExplanation, ...]
    input_class: str = ""
    model_version: int = 0
    notes: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, object]:
        def num(x: float | None) -> float | None:
            return None if x is None or x != x or x in (float("inf"), float("-inf")) \
                else round(x, 4)

        return {
            "function": self.function, "policy": self.policy, "phase": self.phase,
            "features": {k: num(v) for k, v in self.features.items()},
            "inputClass": self.input_class, "sloMs": num(self.slo_ms),
            "chosen": self.chosen.to_dict(),
            "reason": self.reason, "why": self.why, "modelVersion": self.model_version,
            "notes": list(self.notes),
            "sizes": [{**e.size.to_dict(), "probability": round(e.probability, 4),
                       "latencyLowMs": num(e.latency_low_ms),
                       "latencyHighMs": num(e.latency_high_ms),
                       "overheadMs": num(e.overhead_ms), "cost": num(e.cost),
                       "verdict": e.verdict, "runs": e.runs} for e in self.sizes],
        }


@runtime_checkable
class ExplainingPolicy(Policy, Protocol):
    """A policy that can say why it would pick a size (`shabari explain`, the gateway's
    `GET /functions/{name}/explain`). `explain` must not change the policy's state: no
    random draws, no pending decisions."""

    def explain(self, ctx: DecisionContext) -> Explanation: ...


@runtime_checkable
class RecommendingPolicy(Policy, Protocol):
    """A policy that can learn from a run at another size than it decided (Recommend mode:
    the gateway decides, then runs the target's own size)."""

    def ran_at(self, ctx: DecisionContext, decision: Decision, size: Size) -> Decision:
        """The decision to `learn` from when `decision` ran at `size` instead (probability 1:
        nothing was drawn); it keeps the decision id, so what `decide` remembered applies."""
        ...


def fixed_explanation(ctx: DecisionContext, size: Size, policy: str, reason: str
                      ) -> Explanation:
    """The explanation of a policy that always runs one size (no model)."""
    return Explanation(
        function=ctx.spec.name, policy=policy, phase="static", features=dict(ctx.features),
        slo_ms=ctx.slo_ms, chosen=size, reason=reason,
        why=f"{policy} always runs {size} ({reason}); it has no model of the input",
        sizes=tuple(SizeExplanation(s, 1.0 if s == size else 0.0) for s in ctx.spec.sizes),
    )
