"""Non-learning baselines that share the Policy interface: static sizes and uniform random.

They exist so every driver (simulator, gateway, demo) compares the learning agent against the
same objects, called the same way. `learn` is a no-op for all of them.
"""

from __future__ import annotations

import random

from shabari.agent.policy import Explanation, SizeExplanation, fixed_explanation
from shabari.core.context import DecisionContext
from shabari.core.ids import DecisionId
from shabari.core.spec import Size
from shabari.core.types import Decision, Outcome


class _Counter:
    """Decision ids unique per policy instance: `<prefix>-<n>`."""

    __slots__ = ("_n", "_prefix")

    def __init__(self, prefix: str) -> None:
        self._prefix = prefix
        self._n = 0

    def next(self) -> DecisionId:
        self._n += 1
        return DecisionId(f"{self._prefix}-{self._n}")


class _Static:
    name = "static"

    def __init__(self, id_prefix: str | None = None) -> None:
        self._ids = _Counter(id_prefix or self.name)

    def _size(self, ctx: DecisionContext) -> Size:
        raise NotImplementedError

    def decide(self, ctx: DecisionContext) -> Decision:
        size = self._size(ctx)
        return Decision(
            decision_id=self._ids.next(),
            function=ctx.spec.name,
            size=size,
            action_index=ctx.spec.sizes.index(size),
            probability=1.0,
            model_version=0,
            reason=self.name,
            policy=self.name,
        )

    def learn(self, ctx: DecisionContext, decision: Decision, outcome: Outcome) -> None:
        return None

    def explain(self, ctx: DecisionContext) -> Explanation:
        return fixed_explanation(ctx, self._size(ctx), self.name, self.name)


class StaticMax(_Static):
    """Always the grid's largest size (what a cautious operator deploys)."""

    name = "static-max"

    def _size(self, ctx: DecisionContext) -> Size:
        return ctx.spec.largest


class StaticDefault(_Static):
    """Always the function's declared default size (the largest when none is declared)."""

    name = "static-default"

    def _size(self, ctx: DecisionContext) -> Size:
        return ctx.spec.safe_default


class RandomPolicy(_Static):
    """A uniformly random size of the grid, from a seeded RNG (a lower bound for learning)."""

    name = "random"

    def __init__(self, seed: int = 0, id_prefix: str | None = None) -> None:
        super().__init__(id_prefix)
        self._rng = random.Random(seed)

    def _size(self, ctx: DecisionContext) -> Size:
        return ctx.spec.sizes[self._rng.randrange(len(ctx.spec.sizes))]

    def explain(self, ctx: DecisionContext) -> Explanation:
        sizes = ctx.spec.sizes
        return Explanation(
            function=ctx.spec.name, policy=self.name, phase="static",
            features=dict(ctx.features), slo_ms=ctx.slo_ms, chosen=sizes[0], reason="random",
            why="random picks every size with the same probability, whatever the input",
            sizes=tuple(SizeExplanation(s, 1.0 / len(sizes)) for s in sizes))

    def decide(self, ctx: DecisionContext) -> Decision:
        d = super().decide(ctx)
        n = len(ctx.spec.sizes)
        return Decision(
            decision_id=d.decision_id, function=d.function, size=d.size,
            action_index=d.action_index, probability=1.0 / n, model_version=0,
            reason="random", explored=True, policy=self.name,
        )
