"""Honest re-implementations of the per-function sizing baselines, plus the oracle (DESIGN 4.5).

Each baseline is a `Policy` (decide/learn) at the granularity its source works at: one size per
function. They differ in how they find it:

* `PowerTuning`: AWS Lambda Power Tuning (Casalboni, 2018-): an offline sweep that runs the
  function `samples` times at every size of its grid on sampled inputs and keeps the cheapest
  size (allocation x mean duration) whose mean latency meets the mean SLO of the samples.
* `Parrotfish`: Moghimi et al., "Parrotfish: Parametric Regression for Optimizing Serverless
  Functions" (SoCC'23): fits latency(x) = a0 + a1 * exp(-x / a2) over the allocation, sampling
  adaptively (start with the extremes and the middle, then sample where the fit is closest to
  the SLO), then one size per function: the cheapest predicted to meet the SLO.
* `VPA`: the Kubernetes Vertical Pod Autoscaler recommender: a decaying histogram of observed
  usage (half-life 24 h), target = P90 plus a 15% margin, memory bumped x1.2 after an OOM;
  per function and updated over time (every `interval_s` of simulated time).
* `Oracle`: knows the performance table and the latency sample each invocation will draw, and
  picks, per invocation, the smallest size that meets the SLO (counting the cold start or
  in-place resize it would need): the physical limit.

Profiling: the two offline methods expose `next_probe`/`observe_probe`; the simulator runs their
probes before the function's first invocation is served, on sampled inputs, and charges their
allocation (counted as `profiling_invocations` of that policy; docs/baselines.md).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

from shabari.core import (
    DecisionContext,
    DecisionId,
    FunctionName,
    FunctionSpec,
    Outcome,
    OutcomeStatus,
    Size,
)
from shabari.core.cost import DEFAULT_COST
from shabari.core.types import Decision, PlacementKind

__all__ = [
    "VPA",
    "Oracle",
    "Parrotfish",
    "PowerTuning",
    "ProbeResult",
    "Profiling",
    "fit_exponential",
    "grid_size_at_least",
]


def _alloc(size: Size) -> float:
    """Allocation units of a size (the cost model's, with memory as a tie-breaker)."""
    return DEFAULT_COST.allocation_units(size) + size.memory_mib / (1024.0 * 1024.0)


def grid_size_at_least(spec: FunctionSpec, cpu: int, mem: int, gpu: int) -> Size:
    """The grid size at (cpu, mem, gpu), or the cheapest one at least as large."""
    want = Size(cpu, mem, gpu)
    if want in spec.sizes:
        return want
    bigger = [s for s in spec.sizes if s.cpu_millicores >= cpu and s.memory_mib >= mem]
    return min(bigger, key=_alloc) if bigger else spec.largest


def _cheapest_first(sizes: tuple[Size, ...]) -> list[Size]:
    return sorted(sizes, key=lambda s: (_alloc(s), s))


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """One profiling run as the profiler sees it: size, latency, success, SLO of its input."""

    size: Size
    latency_ms: float
    ok: bool
    slo_ms: float
    peak_memory_mib: float | None = None
    #: the featurizer output of the probe's input (input-size-aware profilers fit against it)
    features: Mapping[str, float] = field(default_factory=dict)


@runtime_checkable
class Profiling(Protocol):
    """A policy that profiles a function offline before serving it (run by the simulator)."""

    def next_probe(self, spec: FunctionSpec) -> Size | None:
        """The size to run the next profiling sample at, or None when profiling is done."""

    def observe_probe(self, spec: FunctionSpec, result: ProbeResult) -> None: ...


class _OneSizePolicy:
    """Shared plumbing: one chosen size per function, decisions with unique ids."""

    name = "one-size"

    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self._chosen: dict[FunctionName, Size] = {}

    def _decision(self, ctx: DecisionContext, size: Size, reason: str) -> Decision:
        return Decision(
            decision_id=DecisionId(f"{self.name}-{next(self._ids)}"),
            function=ctx.spec.name,
            size=size,
            action_index=ctx.spec.sizes.index(size),
            probability=1.0,
            model_version=0,
            reason=reason,
            policy=self.name,
        )

    def chosen(self, function: FunctionName) -> Size | None:
        return self._chosen.get(function)

    def decide(self, ctx: DecisionContext) -> Decision:
        size = self._chosen.get(ctx.spec.name)
        if size is None:
            return self._decision(ctx, ctx.spec.safe_default, "not profiled: safe default")
        return self._decision(ctx, size, "profiled size")

    def learn(self, ctx: DecisionContext, decision: Decision, outcome: Outcome) -> None:
        return None


# --------------------------------------------------------------------------------------------
# AWS Lambda Power Tuning


class PowerTuning(_OneSizePolicy):
    """Offline sweep of the whole grid, `samples` runs per size, then one size per function."""

    name = "power-tuning"

    def __init__(self, samples: int = 5) -> None:
        super().__init__()
        if samples < 1:
            raise ValueError("samples must be >= 1")
        self.samples = samples
        self._results: dict[FunctionName, dict[Size, list[ProbeResult]]] = {}

    def next_probe(self, spec: FunctionSpec) -> Size | None:
        if spec.name in self._chosen:
            return None
        done = self._results.setdefault(spec.name, {})
        for size in spec.sizes:
            if len(done.get(size, ())) < self.samples:
                return size
        self._chosen[spec.name] = self._choose(spec, done)
        return None

    def observe_probe(self, spec: FunctionSpec, result: ProbeResult) -> None:
        self._results.setdefault(spec.name, {}).setdefault(result.size, []).append(result)

    @staticmethod
    def _choose(spec: FunctionSpec, done: Mapping[Size, list[ProbeResult]]) -> Size:
        best: tuple[float, Size] | None = None
        fastest: tuple[float, Size] | None = None
        for size in spec.sizes:
            rs = done[size]
            mean_lat = sum(r.latency_ms for r in rs) / len(rs)
            if all(r.ok for r in rs):
                fastest = min(fastest, (mean_lat, size)) if fastest else (mean_lat, size)
                mean_slo = sum(r.slo_ms for r in rs) / len(rs)
                if mean_lat <= mean_slo:
                    price = _alloc(size) * mean_lat
                    best = min(best, (price, size)) if best else (price, size)
        if best is not None:
            return best[1]
        return fastest[1] if fastest is not None else spec.largest


# --------------------------------------------------------------------------------------------
# Parrotfish


def fit_exponential(xs: list[float], ys: list[float]) -> tuple[float, float, float]:
    """Least-squares fit of y = a0 + a1 * exp(-x / a2): a log grid over a2, linear in a0, a1.

    With a single point the fit is flat (a1 = 0).
    """
    x = np.asarray(xs, dtype=float)
    y = np.asarray(ys, dtype=float)
    if len(x) == 1 or np.ptp(x) == 0:
        return float(y.mean()), 0.0, 1.0
    best: tuple[float, float, float, float] | None = None
    for a2 in np.geomspace(x.min() / 8.0, x.max() * 8.0, 48):
        basis = np.column_stack([np.ones_like(x), np.exp(-x / a2)])
        coef, *_ = np.linalg.lstsq(basis, y, rcond=None)
        a0, a1 = float(coef[0]), float(coef[1])
        if a1 < 0:  # latency must not grow with the allocation: fall back to flat
            a0, a1 = float(y.mean()), 0.0
        sse = float(((a0 + a1 * np.exp(-x / a2) - y) ** 2).sum())
        if best is None or sse < best[0] - 1e-12:
            best = (sse, a0, a1, float(a2))
    assert best is not None
    return best[1], best[2], best[3]


@dataclass
class _FishState:
    memory_mib: int | None = None
    samples: dict[int, list[ProbeResult]] = field(default_factory=dict)
    slos: list[float] = field(default_factory=list)
    probes: int = 0


class Parrotfish(_OneSizePolicy):
    """Parametric regression over the CPU axis with adaptive sampling, then one size.

    Memory is found first (one run at the largest size gives the peak; the smallest memory
    option above it is kept, bumped on an OOM during sampling); the CPU options are then
    sampled adaptively, `samples` runs each, at most `budget` options.
    """

    name = "parrotfish"

    def __init__(self, samples: int = 2, budget: int = 5) -> None:
        super().__init__()
        self.samples = samples
        self.budget = budget
        self._state: dict[FunctionName, _FishState] = {}

    def next_probe(self, spec: FunctionSpec) -> Size | None:
        if spec.name in self._chosen:
            return None
        st = self._state.setdefault(spec.name, _FishState())
        gpu = min(spec.gpu_options)
        if st.memory_mib is None:
            return self._nearest(spec, spec.largest.cpu_millicores, max(spec.memory_options), gpu)
        cpus = spec.cpu_options
        for c, rs in st.samples.items():  # finish the samples of an option in progress
            if len(rs) < self.samples:
                return self._nearest(spec, c, st.memory_mib, gpu)
        sampled = sorted(st.samples)
        if len(sampled) < min(self.budget, len(cpus)):
            seeds = [cpus[0], cpus[-1], cpus[len(cpus) // 2]]
            for c in seeds:
                if c not in st.samples:
                    return self._nearest(spec, c, st.memory_mib, gpu)
            a0, a1, a2 = self._fit(st)
            target = self._target(st)
            rest = [c for c in cpus if c not in st.samples]
            if rest:
                c = min(rest, key=lambda c: abs(a0 + a1 * math.exp(-c / a2) - target))
                return self._nearest(spec, c, st.memory_mib, gpu)
        self._chosen[spec.name] = self._choose(spec, st, gpu)
        return None

    def observe_probe(self, spec: FunctionSpec, result: ProbeResult) -> None:
        st = self._state.setdefault(spec.name, _FishState())
        st.probes += 1
        st.slos.append(result.slo_ms)
        if st.memory_mib is None:
            peak = result.peak_memory_mib
            mems = spec.memory_options
            if peak is None:
                st.memory_mib = mems[-1]
            else:
                st.memory_mib = next((m for m in mems if m >= peak), mems[-1])
            return
        if not result.ok:
            bigger = [m for m in spec.memory_options if m > result.size.memory_mib]
            if bigger:  # an OOM: restart the CPU sampling at the next memory option
                st.memory_mib = bigger[0]
                st.samples.clear()
                return
        st.samples.setdefault(result.size.cpu_millicores, []).append(result)

    @staticmethod
    def _target(st: _FishState) -> float:
        return sum(st.slos) / len(st.slos)

    @staticmethod
    def _fit(st: _FishState) -> tuple[float, float, float]:
        xs = [float(c) for c in sorted(st.samples)]
        ys = [sum(r.latency_ms for r in st.samples[c]) / len(st.samples[c])
              for c in sorted(st.samples)]
        return fit_exponential(xs, ys)

    def _choose(self, spec: FunctionSpec, st: _FishState, gpu: int) -> Size:
        assert st.memory_mib is not None
        if not st.samples:
            return spec.largest
        a0, a1, a2 = self._fit(st)
        target = self._target(st)
        for c in spec.cpu_options:
            if a0 + a1 * math.exp(-c / a2) <= target:
                return self._nearest(spec, c, st.memory_mib, gpu)
        return self._nearest(spec, spec.cpu_options[-1], st.memory_mib, gpu)

    @staticmethod
    def _nearest(spec: FunctionSpec, cpu: int, mem: int, gpu: int) -> Size:
        return grid_size_at_least(spec, cpu, mem, gpu)


# --------------------------------------------------------------------------------------------
# Kubernetes VPA


class _DecayingHistogram:
    """VPA's histogram: exponential buckets (5% growth), sample weights doubling per half-life."""

    __slots__ = ("_first", "_growth", "_half_life", "_ref", "_total", "_weights")

    def __init__(self, first_bucket: float, half_life_s: float, growth: float = 1.05) -> None:
        self._first = first_bucket
        self._growth = growth
        self._half_life = half_life_s
        self._weights: dict[int, float] = {}
        self._total = 0.0
        self._ref: float | None = None

    def add(self, value: float, now: float, weight: float = 1.0) -> None:
        if self._ref is None:
            self._ref = now
        w = weight * 2.0 ** ((now - self._ref) / self._half_life)
        i = 0 if value <= self._first else int(math.log(value / self._first, self._growth)) + 1
        self._weights[i] = self._weights.get(i, 0.0) + w
        self._total += w

    def percentile(self, q: float) -> float | None:
        if self._total <= 0:
            return None
        acc = 0.0
        for i in sorted(self._weights):
            acc += self._weights[i]
            if acc >= q * self._total:
                return self._first * self._growth ** i  # bucket's upper bound
        return self._first * self._growth ** max(self._weights)


@dataclass
class _VPAState:
    cpu: _DecayingHistogram
    memory: _DecayingHistogram
    oom_floor_mib: float = 0.0
    recommended: Size | None = None
    computed_at: float = -math.inf
    dirty: bool = False


class VPA(_OneSizePolicy):
    """Vertical Pod Autoscaler recommender, applied to every new invocation of the function."""

    name = "vpa"

    def __init__(self, *, percentile: float = 0.9, margin: float = 0.15,
                 oom_bump: float = 1.2, half_life_s: float = 24 * 3600.0,
                 interval_s: float = 60.0) -> None:
        super().__init__()
        self.percentile = percentile
        self.margin = margin
        self.oom_bump = oom_bump
        self.half_life_s = half_life_s
        self.interval_s = interval_s
        self._vpa: dict[FunctionName, _VPAState] = {}

    def _st(self, fn: FunctionName) -> _VPAState:
        st = self._vpa.get(fn)
        if st is None:
            st = self._vpa[fn] = _VPAState(_DecayingHistogram(10.0, self.half_life_s),
                                           _DecayingHistogram(16.0, self.half_life_s))
        return st

    def recommendation(self, spec: FunctionSpec) -> tuple[float, float] | None:
        """(cpu millicores, memory MiB) the recommender targets now, or None before data."""
        st = self._st(spec.name)
        cpu = st.cpu.percentile(self.percentile)
        mem = st.memory.percentile(self.percentile)
        if cpu is None or mem is None:
            return None
        return cpu * (1 + self.margin), max(mem * (1 + self.margin), st.oom_floor_mib)

    def decide(self, ctx: DecisionContext) -> Decision:
        spec = ctx.spec
        st = self._st(spec.name)
        if st.dirty and ctx.now - st.computed_at >= self.interval_s:
            rec = self.recommendation(spec)
            if rec is not None:
                cpu, mem = rec
                fits = [s for s in spec.sizes if s.cpu_millicores >= cpu and s.memory_mib >= mem
                        and s.gpu == spec.safe_default.gpu]
                st.recommended = min(fits, key=_alloc) if fits else spec.largest
            st.computed_at = ctx.now
            st.dirty = False
        if st.recommended is None:
            return self._decision(ctx, spec.safe_default, "vpa: no recommendation yet")
        return self._decision(ctx, st.recommended, "vpa recommendation")

    def learn(self, ctx: DecisionContext, decision: Decision, outcome: Outcome) -> None:
        st = self._st(ctx.spec.name)
        size = decision.size
        if outcome.status is OutcomeStatus.OOM:
            st.oom_floor_mib = max(st.oom_floor_mib, size.memory_mib * self.oom_bump)
            st.computed_at = -math.inf  # VPA reacts to OOMs at once
            st.dirty = True
            return
        busy_s = max(outcome.latency_ms - outcome.cold_start_ms, 1e-3) / 1000.0
        used = (outcome.cpu_seconds / busy_s * 1000.0 if outcome.cpu_seconds > 0
                else float(size.cpu_millicores))
        st.cpu.add(min(used, float(size.cpu_millicores)), ctx.now)
        peak = outcome.peak_memory_mib if outcome.peak_memory_mib > 0 else size.memory_mib
        st.memory.add(peak, ctx.now)
        st.dirty = True


# --------------------------------------------------------------------------------------------
# Oracle


class Oracle(_OneSizePolicy):
    """Per invocation, the smallest size that meets the SLO, from the table itself.

    `latency(ctx, size)` is what this invocation would take at `size` (the simulator binds it
    to the very sample the invocation will draw, +inf when it would fail: the oracle is
    clairvoyant); `cold_start_ms(ctx)` its function's cold start; `resize_ms` the in-place
    resize delay, counted when no idle warm pod has exactly the CPU it wants.
    """

    name = "oracle"

    def __init__(self, latency: Callable[[DecisionContext, Size], float],
                 cold_start_ms: Callable[[DecisionContext], float],
                 resize_ms: float = 0.0) -> None:
        super().__init__()
        self._latency = latency
        self._cold = cold_start_ms
        self._resize = resize_ms
        self._order: dict[FunctionName, list[Size]] = {}

    def decide(self, ctx: DecisionContext) -> Decision:
        order = self._order.get(ctx.spec.name)
        if order is None:
            order = self._order[ctx.spec.name] = _cheapest_first(ctx.spec.sizes)
        slo = ctx.slo_ms if ctx.slo_ms is not None else math.inf
        cold = self._cold(ctx)
        best: tuple[float, Size] | None = None
        for size in order:
            lat = self._latency(ctx, size)
            kind = ctx.placement_kind(size)  # the scheduler's own warm-fit rule
            if kind is PlacementKind.COLD:
                lat += cold
            elif kind is PlacementKind.RESIZE:
                lat += self._resize
            if lat <= slo:
                return self._decision(ctx, size, "oracle: smallest meeting the SLO")
            if best is None or lat < best[0]:
                best = (lat, size)
        assert best is not None
        return self._decision(ctx, best[1], "oracle: infeasible, fastest size")
