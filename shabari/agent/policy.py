"""The narrow interface every sizing policy implements (River-style decide/learn).

The simulator, the gateway and the tests drive every policy, learning or not, through exactly
this protocol: `decide(ctx)` before the invocation runs, then `learn(ctx, decision, outcome)`
with the *same* `ctx` object once its outcome is known. Learning policies additionally expose
their per-function state and a safe checkpoint format (`LearningPolicy`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

from shabari.core.context import DecisionContext
from shabari.core.ids import FunctionName
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
