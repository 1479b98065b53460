"""Off-policy estimators over logged decisions: IPS and doubly robust, with confidence intervals.

Pure: no I/O, no clock; everything is computed from the records passed in.

A logged record says: for input x (features) the logging policy chose size a with probability
p = mu(a|x), and the invocation cost c. For a target policy pi (a distribution over the grid
for each x):

- IPS: V = mean(w_i c_i) with w_i = pi(a_i|x_i) / p_i. Unbiased when the logging policy gave
  every size pi may choose a positive probability.
- DR: V = mean(sum_a pi(a|x_i) c^(x_i, a) + w_i (c_i - c^(x_i, a_i))), with a direct cost model
  c^ fitted on the *other* half of the log (2-fold cross-fitting, so a record never corrects
  a model it trained). Unbiased if either the propensities or c^ are right; lower variance.

Both intervals are normal approximations: mean +- z * sd / sqrt(n) (z = 1.96 for 95 %).
`support` is the share of records where pi puts mass on the logged size: with a deterministic
logging policy (the agent's safe start) and a deterministic different target it is small, and
the estimate rests on few records (`ess`, Kish's effective sample size of the weights).

The direct model is deliberately simple and assumption-light: the mean logged cost of size a
for inputs of the same class (each feature binned at one bin per unit of ln(1 + value)),
falling back to the mean of size a, then of its CPU (and GPU) with any memory; a CPU that
never ran has no estimate (the DR value is
then NaN, shown as n/a: the log cannot say what that size would cost).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from shabari.core.spec import Size

#: z of a two-sided 95 % normal interval
Z95 = 1.959963984540054


@dataclass(frozen=True, slots=True)
class LoggedDecision:
    """One logged first attempt: what ran, with which probability, and what it cost."""

    function: str
    features: Mapping[str, float]
    size: Size
    probability: float
    cost: float
    violated: bool = False
    #: the size the logging policy would have run without Recommend (None: the size that ran)
    recommended: Size | None = None
    #: the SLO bound the invocation was judged against (ms)
    slo_ms: float | None = None
    #: did the logging policy draw the memory too (`random`)? Then `probability` is that of
    #: the whole size; otherwise (the agent) memory follows from the input and `probability`
    #: is that of the CPU (and GPU) arm
    memory_drawn: bool = False


#: a target policy: (record, the function's grid) -> probability of each size (summing to 1)
TargetPolicy = Callable[[LoggedDecision, Sequence[Size]], Mapping[Size, float]]


@dataclass(frozen=True, slots=True)
class Estimate:
    value: float
    ci_low: float
    ci_high: float

    @property
    def half_width(self) -> float:
        return (self.ci_high - self.ci_low) / 2.0

    def contains(self, x: float) -> bool:
        return self.ci_low <= x <= self.ci_high

    def to_dict(self) -> dict[str, float]:
        return {"value": self.value, "ci_low": self.ci_low, "ci_high": self.ci_high}


@dataclass(frozen=True, slots=True)
class Evaluation:
    """What a target policy would have done on the logged traffic."""

    policy: str
    n: int
    #: the logging policy's own mean cost and violation rate (what really happened)
    logged_cost: float
    logged_violation_rate: float
    cost_ips: Estimate
    cost_dr: Estimate
    violation_ips: Estimate
    violation_dr: Estimate
    #: expected vCPUs allocated per invocation under the target (exact: depends only on pi)
    vcpu_per_invocation: float
    logged_vcpu_per_invocation: float
    support: float
    ess: float

    def to_dict(self) -> dict[str, object]:
        return {
            "policy": self.policy, "n": self.n, "logged_cost": self.logged_cost,
            "logged_violation_rate": self.logged_violation_rate,
            "cost_ips": self.cost_ips.to_dict(), "cost_dr": self.cost_dr.to_dict(),
            "violation_ips": self.violation_ips.to_dict(),
            "violation_dr": self.violation_dr.to_dict(),
            "vcpu_per_invocation": self.vcpu_per_invocation,
            "logged_vcpu_per_invocation": self.logged_vcpu_per_invocation,
            "support": self.support, "ess": self.ess,
        }


def mean_ci(values: Sequence[float], z: float = Z95) -> Estimate:
    n = len(values)
    if n == 0 or any(math.isnan(v) for v in values):
        return Estimate(math.nan, math.nan, math.nan)
    mean = math.fsum(values) / n
    if n == 1:
        return Estimate(mean, -math.inf, math.inf)
    var = math.fsum((v - mean) ** 2 for v in values) / (n - 1)
    half = z * math.sqrt(var / n)
    return Estimate(mean, mean - half, mean + half)


def input_class(features: Mapping[str, float]) -> tuple[tuple[str, int], ...]:
    """Coarse class of an input: each feature at one bin per unit of ln(1 + |value|)."""
    out = []
    for name in sorted(features):
        v = features[name]
        if v is None or not math.isfinite(v):
            continue
        out.append((name, math.floor(math.log1p(abs(v)))))
    return tuple(out)


class DirectModel:
    """Mean logged cost per (function, input class, size) with coarser fallbacks."""

    def __init__(self, records: Sequence[LoggedDecision],
                 value: Callable[[LoggedDecision], float]) -> None:
        by_class: dict[tuple[object, ...], list[float]] = defaultdict(list)
        by_size: dict[tuple[object, ...], list[float]] = defaultdict(list)
        by_arm: dict[tuple[object, ...], list[float]] = defaultdict(list)
        for r in records:
            v = value(r)
            by_class[(r.function, input_class(r.features), r.size)].append(v)
            by_size[(r.function, r.size)].append(v)
            by_arm[(r.function, r.size.cpu_millicores, r.size.gpu)].append(v)
        self._class = {k: math.fsum(v) / len(v) for k, v in by_class.items()}
        self._size = {k: math.fsum(v) / len(v) for k, v in by_size.items()}
        self._arm = {k: math.fsum(v) / len(v) for k, v in by_arm.items()}

    def predict(self, r: LoggedDecision, size: Size) -> float:
        """The mean logged value of `size` for inputs like `r`'s; NaN when `size` never ran
        (nothing in the log says what it would cost: the estimate is then unavailable)."""
        key = (r.function, input_class(r.features), size)
        if key in self._class:
            return self._class[key]
        if (r.function, size) in self._size:
            return self._size[(r.function, size)]
        arm = (r.function, size.cpu_millicores, size.gpu)
        if arm in self._arm:  # the same CPU (and GPU) with another memory
            return self._arm[arm]
        return math.nan


def _weights(records: Sequence[LoggedDecision], grids: Mapping[str, Sequence[Size]],
             target: TargetPolicy) -> tuple[list[Mapping[Size, float]], list[float]]:
    """pi(a|x) / mu(a|x) per record. An arm-level target (`fixed_cpu`: a CPU, memory as the
    logging policy chose it) is weighed against the logging policy's probability of the CPU
    arm: the logged probability, times the arm's memory options when memory was drawn."""
    arm_level = bool(getattr(target, "arm_level", False))
    dists: list[Mapping[Size, float]] = []
    weights: list[float] = []
    for r in records:
        grid = grids[r.function]
        dist = target(r, grid)
        dists.append(dist)
        p = r.probability
        if arm_level and r.memory_drawn:
            p *= max(1, sum(1 for s in grid if s.cpu_millicores == r.size.cpu_millicores
                            and s.gpu == r.size.gpu))
        weights.append(dist.get(r.size, 0.0) / p if p > 0 else 0.0)
    return dists, weights


def _dr_terms(records: Sequence[LoggedDecision], dists: Sequence[Mapping[Size, float]],
              weights: Sequence[float], value: Callable[[LoggedDecision], float]
              ) -> list[float]:
    """Per-record DR terms with 2-fold cross-fitted direct models."""
    folds = [[r for i, r in enumerate(records) if i % 2 == k] for k in (0, 1)]
    models = [DirectModel(folds[1], value), DirectModel(folds[0], value)]
    terms = []
    for i, r in enumerate(records):
        model = models[i % 2]
        direct = math.fsum(p * model.predict(r, s) for s, p in dists[i].items() if p > 0)
        terms.append(direct + weights[i] * (value(r) - model.predict(r, r.size)))
    return terms


def evaluate(records: Sequence[LoggedDecision], grids: Mapping[str, Sequence[Size]],
             target: TargetPolicy, name: str, z: float = Z95) -> Evaluation:
    """IPS and DR estimates of `target`'s mean cost and violation rate on `records`."""
    if not records:
        raise ValueError("no logged decisions to evaluate")
    dists, weights = _weights(records, grids, target)

    def cost(r: LoggedDecision) -> float:
        return r.cost

    def violated(r: LoggedDecision) -> float:
        return 1.0 if r.violated else 0.0

    n = len(records)
    sw = math.fsum(weights)
    sw2 = math.fsum(w * w for w in weights)
    return Evaluation(
        policy=name, n=n,
        logged_cost=math.fsum(r.cost for r in records) / n,
        logged_violation_rate=math.fsum(violated(r) for r in records) / n,
        cost_ips=mean_ci([w * r.cost for w, r in zip(weights, records, strict=True)], z),
        cost_dr=mean_ci(_dr_terms(records, dists, weights, cost), z),
        violation_ips=mean_ci([w * violated(r) for w, r in zip(weights, records, strict=True)],
                              z),
        violation_dr=mean_ci(_dr_terms(records, dists, weights, violated), z),
        vcpu_per_invocation=math.fsum(
            math.fsum(p * s.vcpu for s, p in d.items()) for d in dists) / n,
        logged_vcpu_per_invocation=math.fsum(r.size.vcpu for r in records) / n,
        support=sum(1 for d, r in zip(dists, records, strict=True) if d.get(r.size, 0.0) > 0)
        / n,
        ess=(sw * sw / sw2) if sw2 > 0 else 0.0,
    )


# --------------------------------------------------------------------------- target policies


def fixed(size: Size) -> TargetPolicy:
    """Always `size` (it need not be in the grid: then nothing logged supports it)."""
    def target(_: LoggedDecision, __: Sequence[Size]) -> Mapping[Size, float]:
        return {size: 1.0}
    return target


def fixed_cpu(cpu_millicores: int, gpu: int | None = None) -> TargetPolicy:
    """This CPU (and GPU), with the memory the logging policy chose for the input.

    For the Shabari agent's logs memory is a function of the input (predicted, never explored)
    and the logged probability is the CPU arm's; for a logging policy that drew the memory too
    (`random`), the arm's probability sums over its memory options (`_weights`).
    """
    def target(r: LoggedDecision, _: Sequence[Size]) -> Mapping[Size, float]:
        return {Size(cpu_millicores, r.size.memory_mib, r.size.gpu if gpu is None else gpu): 1.0}
    return arm_level(target)


def arm_level(target: TargetPolicy) -> TargetPolicy:
    """Mark `target` as choosing CPU (and GPU) arms, memory as the logged decision chose it:
    its sizes carry the logged memory and are weighed against the arm's probability."""
    target.arm_level = True  # type: ignore[attr-defined]
    return target


def largest(r: LoggedDecision, grid: Sequence[Size]) -> Mapping[Size, float]:
    """static-max: the grid's largest size."""
    return {max(grid, key=lambda s: (s.cpu_millicores, s.memory_mib, s.gpu)): 1.0}


def uniform(r: LoggedDecision, grid: Sequence[Size]) -> Mapping[Size, float]:
    """random: every size of the grid equally likely."""
    return {s: 1.0 / len(grid) for s in grid}


def recommended(r: LoggedDecision, grid: Sequence[Size]) -> Mapping[Size, float]:
    """What the logging policy recommended (Recommend mode logs it next to what ran)."""
    return {r.recommended or r.size: 1.0}
