"""`cypress`: input-size-aware sizing after Bhasi et al., "Cypress: Input Size-Sensitive Container
Provisioning and Request Scheduling for Serverless Platforms" (ACM SoCC 2022).

Why it is here: the Shabari paper compares against Cypress as the input-aware peer: a method
that also looks at the input before running it, but through one scalar (its size) and an
offline regression rather than an online model over all features. Cypress profiles each
function offline, fits execution time against input size, and uses the prediction to provision
and batch containers so that each request meets its SLO. Here (docs/baselines.md) the same
model sizes each invocation: per CPU option of the grid, a least-squares line of log latency
against log input size, from profiling runs it pays for (run by the simulator through
`next_probe`/`observe_probe`, charged to its allocation), plus a linear fit of peak memory;
each invocation then gets the cheapest CPU whose predicted latency, inflated by the fit's
residual spread, meets that invocation's SLO, and the smallest memory above the predicted peak
with a margin. Batching, request reordering and proactive container provisioning have no
counterpart in a one-invocation-per-pod simulator with a FIFO queue (docs/baselines.md).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from shabari.core import DecisionContext, FunctionName, FunctionSpec, Size
from shabari.core.types import Decision
from shabari.sim.baselines import ProbeResult, _OneSizePolicy, grid_size_at_least

__all__ = ["SIZE_FEATURES", "Cypress", "LatencyModel", "fit_latency_model", "input_size"]

#: the feature read as "the input's size", first present wins (the generic `bytes` of every
#: featurizer, then the vSwarm profile's size parameter); otherwise the first feature by name
SIZE_FEATURES = ("bytes", "param")


def input_size(features: Mapping[str, float]) -> float:
    """The scalar input size Cypress models (0 when the input has no numeric feature)."""
    for key in SIZE_FEATURES:
        if key in features:
            return max(float(features[key]), 0.0)
    for key in sorted(features):
        return max(float(features[key]), 0.0)
    return 0.0


@dataclass(frozen=True, slots=True)
class LatencyModel:
    """Per CPU option, log(latency) = a + b * x with x = log1p(input size); one residual
    spread `sigma` (log units) pooled over the options (a few probes per option are too few to
    estimate a spread each)."""

    lines: Mapping[int, tuple[float, float]]
    sigma: float

    def predict_ms(self, x: float, cpu_millicores: int, z: float = 0.0) -> float:
        a, b = self.lines[cpu_millicores]
        return math.exp(a + b * x + z * self.sigma)


def fit_latency_model(sizes: list[float], cpus: list[int], latencies_ms: list[float]
                      ) -> LatencyModel:
    """Least squares of log latency on log1p(size), one line per CPU option.

    A function does not get faster on bigger inputs: a negative slope (noise between few
    samples) falls back to a flat line, and so does an option probed on one input size only.
    """
    x_all = np.log1p(np.maximum(np.asarray(sizes, dtype=float), 0.0))
    c_all = np.asarray(cpus)
    ly_all = np.log(np.maximum(np.asarray(latencies_ms, dtype=float), 1e-3))
    lines: dict[int, tuple[float, float]] = {}
    sse, dof = 0.0, 0
    for cpu in sorted(set(cpus)):
        pick = c_all == cpu
        x, ly = x_all[pick], ly_all[pick]
        a, b = float(ly.mean()), 0.0
        if len(x) >= 2 and np.ptp(x) > 0:
            b_fit, a_fit = np.polyfit(x, ly, 1)
            if b_fit > 0:
                a, b = float(a_fit), float(b_fit)
        lines[cpu] = (a, b)
        sse += float(((ly - (a + b * x)) ** 2).sum())
        dof += len(x) - (2 if b > 0 else 1)
    return LatencyModel(lines, math.sqrt(sse / dof) if dof > 0 else 0.0)


@dataclass
class _CypressState:
    probes: dict[int, list[ProbeResult]] = field(default_factory=dict)
    model: LatencyModel | None = None
    #: peak MiB = m0 + m1 * size (size in raw units), or None without measurements
    memory: tuple[float, float] | None = None
    memory_sigma: float = 0.0


class Cypress(_OneSizePolicy):
    """Offline input-size profiles per CPU option, then a size per invocation from its input.

    Profiling: `samples` runs at every CPU option of the grid (at the largest memory, so the
    runs measure speed, not OOMs), each on an input the simulator draws. `z` is how many
    residual standard deviations of headroom a prediction gets; `memory_margin` multiplies the
    predicted peak memory.
    """

    name = "cypress"

    def __init__(self, samples: int = 4, z: float = 1.0, memory_margin: float = 1.2,
                 reuse_warm: bool = True) -> None:
        super().__init__()
        self.reuse_warm = reuse_warm
        if samples < 1:
            raise ValueError("samples must be >= 1")
        self.samples = samples
        self.z = z
        self.memory_margin = memory_margin
        self._state: dict[FunctionName, _CypressState] = {}

    # -- profiling (run by the simulator before the function's first invocation) -----------

    def next_probe(self, spec: FunctionSpec) -> Size | None:
        st = self._state.setdefault(spec.name, _CypressState())
        if st.model is not None:
            return None
        mem = max(spec.memory_options)
        gpu = min(spec.gpu_options)
        for cpu in spec.cpu_options:
            if len(st.probes.get(cpu, ())) < self.samples:
                return grid_size_at_least(spec, cpu, mem, gpu)
        self._fit(spec, st)
        return None

    def observe_probe(self, spec: FunctionSpec, result: ProbeResult) -> None:
        st = self._state.setdefault(spec.name, _CypressState())
        st.probes.setdefault(result.size.cpu_millicores, []).append(result)

    def _fit(self, spec: FunctionSpec, st: _CypressState) -> None:
        runs = [r for rs in st.probes.values() for r in rs]
        ok = [r for r in runs if r.ok]
        if ok:
            st.model = fit_latency_model([input_size(r.features) for r in ok],
                                         [r.size.cpu_millicores for r in ok],
                                         [r.latency_ms for r in ok])
        else:  # every run failed even at the largest memory: nothing to model, be generous
            st.model = LatencyModel({max(spec.cpu_options): (math.log(1e9), 0.0)}, 0.0)
        peaks = [(input_size(r.features), r.peak_memory_mib) for r in runs
                 if r.peak_memory_mib is not None]
        if peaks:
            xs = np.asarray([p[0] for p in peaks])
            ys = np.asarray([p[1] for p in peaks])
            m0, m1 = float(ys.mean()), 0.0
            if len(xs) >= 2 and np.ptp(xs) > 0:
                m1_fit, m0_fit = np.polyfit(xs, ys, 1)
                if m1_fit > 0:
                    m0, m1 = float(m0_fit), float(m1_fit)
            st.memory = (m0, m1)
            st.memory_sigma = float(np.std(ys - (m0 + m1 * xs)))

    # -- serving ---------------------------------------------------------------------------

    def decide(self, ctx: DecisionContext) -> Decision:
        spec = ctx.spec
        st = self._state.get(spec.name)
        if st is None or st.model is None:
            return self._decision(ctx, spec.safe_default, "cypress: not profiled")
        model = st.model
        size = input_size(ctx.features)
        x = math.log1p(size)
        slo = ctx.slo_ms if ctx.slo_ms is not None else math.inf
        # more CPU never makes a run slower: the prediction at a CPU is the best at or below it
        best, cpu, fastest = math.inf, None, max(model.lines)
        for c in sorted(model.lines):
            pred = model.predict_ms(x, c, self.z)
            if pred < best:
                best, fastest = pred, c
            if best <= slo:
                cpu = fastest if cpu is None else cpu
                break
        reason = "cypress: cheapest CPU predicted to meet the SLO"
        if cpu is None:
            cpu = fastest
            reason = "cypress: none predicted to meet the SLO, fastest"
        mem = max(spec.memory_options)
        if st.memory is not None:
            m0, m1 = st.memory
            need = (m0 + m1 * size + st.memory_sigma) * self.memory_margin
            mem = next((m for m in spec.memory_options if m >= need), mem)
        chosen = grid_size_at_least(spec, cpu, mem, min(spec.gpu_options))
        if self.reuse_warm:
            # request scheduling onto a container that already holds enough: the smallest idle
            # warm pod at least as large is taken as it is (no resize, no cold start)
            fits = [w for w in ctx.warm_idle if w.cpu_millicores >= chosen.cpu_millicores
                    and w.memory_mib >= chosen.memory_mib and w.gpu == chosen.gpu
                    and w in spec.sizes]
            if fits and chosen not in fits:
                chosen = min(fits, key=lambda w: (w.cpu_millicores, w.memory_mib))
                reason += ", on a warm pod as it is"
        return self._decision(ctx, chosen, reason)
