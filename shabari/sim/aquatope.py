"""`aquatope`: noise-aware Bayesian optimisation of each function's size, after Zhou et al.,
"Aquatope: QoS-and-Uncertainty-Aware Resource Management for Multi-stage Serverless Workflows"
(ASPLOS 2023).

Why it is here: the Shabari paper's strongest per-function peer. Aquatope searches each
function's resource configuration with Bayesian optimisation that models the noise of serverless
runs explicitly, minimising cost under a QoS (latency) constraint, and keeps one configuration
per function. Here (docs/baselines.md): the search space is the function's size grid (log CPU,
log memory, scaled to [0, 1]); each exploration run is a profiling probe the simulator runs on
a drawn input and charges to the policy; a BoTorch `SingleTaskGP` with a learned Gaussian noise
level models two outcomes of a run, log resource cost (allocation x latency) and log(latency /
SLO); the next size is the grid point maximising the log constrained expected improvement
(cost improvement x probability that latency <= SLO). After `budget` runs the function gets the
cheapest-in-cost size whose posterior probability of a run meeting its SLO, observation noise
included, is at least `confidence`. GP hyperparameters are fitted at most twice per function
(after the initial design and for the final choice); in between, new runs condition the model
with the hyperparameters kept, so a whole-day simulation stays in minutes.

BoTorch and PyTorch are imported on first use, so `shabari simulate` without `aquatope` does not
pay their import.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from shabari.core import FunctionName, FunctionSpec, Size
from shabari.sim.baselines import ProbeResult, _alloc, _OneSizePolicy

__all__ = ["MEMORY_PRICE", "Aquatope", "price"]

#: a failed run (OOM, timeout) counts as this many times its SLO
FAILURE_SLOWDOWN = 4.0
#: Aquatope minimises a priced resource cost; one GiB-second costs this many vCPU-seconds (the
#: list-price ratio of Google Cloud Run and similar: $0.0000025 per GiB-s, $0.000024 per vCPU-s)
MEMORY_PRICE = 0.1


def price(size: Size) -> float:
    """Resource price of holding `size` for one second, in vCPU-seconds."""
    return _alloc(size) + MEMORY_PRICE * size.memory_gib


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """Torch and BLAS on one thread: the GPs here are tiny, so threads only add overhead and
    contend with whatever else the machine runs (scipy's L-BFGS-B, which fits the GP, runs 4x
    faster with single-threaded BLAS on a busy machine)."""
    import torch
    from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(limits=1):
            yield
    finally:
        torch.set_num_threads(threads)


@dataclass
class _BOState:
    xs: list[tuple[float, ...]] = field(default_factory=list)
    cost: list[float] = field(default_factory=list)  # log(allocation units x latency ms)
    slack: list[float] = field(default_factory=list)  # log(latency / SLO): feasible <= 0
    pending: list[Size] = field(default_factory=list)
    #: hyperparameters of the last fit (a state dict), reused until the next fit
    hyper: dict[str, Any] | None = None


class Aquatope(_OneSizePolicy):
    """Constrained, noise-aware BO over the size grid; one size per function.

    `initial` space-filling runs (the largest size first: it cannot OOM if anything can run),
    then BO runs up to `budget` in all; hyperparameters are fitted after the initial design and,
    with `fits=2`, once more for the final recommendation.
    """

    name = "aquatope"

    def __init__(self, budget: int = 10, initial: int = 5, confidence: float = 0.9,
                 fits: int = 2, seed: int = 0) -> None:
        super().__init__()
        if not 1 <= initial <= budget:
            raise ValueError("need 1 <= initial <= budget")
        if not 0.5 <= confidence < 1.0:
            raise ValueError("confidence must be in [0.5, 1)")
        self.budget = budget
        self.initial = initial
        self.confidence = confidence
        self.fits = max(1, fits)
        self.seed = seed
        self._bo: dict[FunctionName, _BOState] = {}

    # -- the search space ------------------------------------------------------------------

    @staticmethod
    def encode(spec: FunctionSpec, size: Size) -> tuple[float, ...]:
        """A size as a point of [0, 1]^d: log CPU, log memory (and GPUs when the grid has
        several), each scaled over the grid's range."""

        def scale(v: float, lo: float, hi: float) -> float:
            return 0.0 if hi <= lo else (math.log(v) - math.log(lo)) / (math.log(hi) - math.log(lo))

        cpus, mems, gpus = spec.cpu_options, spec.memory_options, spec.gpu_options
        point = [scale(size.cpu_millicores, cpus[0], cpus[-1]),
                 scale(size.memory_mib, mems[0], mems[-1])]
        if len(gpus) > 1:
            point.append((size.gpu - gpus[0]) / (gpus[-1] - gpus[0]))
        return tuple(point)

    def _initial_design(self, spec: FunctionSpec) -> list[Size]:
        """Greedy maximin over the grid from the largest size: spread-out first runs."""
        chosen = [spec.largest]
        pts = {s: np.asarray(self.encode(spec, s)) for s in spec.sizes}
        while len(chosen) < min(self.initial, len(spec.sizes)):
            far = max((s for s in spec.sizes if s not in chosen),
                      key=lambda s: (min(float(np.linalg.norm(pts[s] - pts[c])) for c in chosen),
                                     -_alloc(s)))
            chosen.append(far)
        return chosen

    # -- profiling (exploration runs, charged by the simulator) ----------------------------

    def next_probe(self, spec: FunctionSpec) -> Size | None:
        if spec.name in self._chosen:
            return None
        st = self._bo.get(spec.name)
        if st is None:
            st = self._bo[spec.name] = _BOState()
            st.pending = self._initial_design(spec)
        if st.pending:
            return st.pending[0]
        with _one_thread():
            if len(st.xs) >= self.budget:
                self._chosen[spec.name] = self._recommend(spec, st)
                return None
            return self._acquire(spec, st)

    def observe_probe(self, spec: FunctionSpec, result: ProbeResult) -> None:
        st = self._bo.setdefault(spec.name, _BOState())
        if st.pending and st.pending[0] == result.size:
            st.pending.pop(0)
        slo = max(result.slo_ms, 1e-6)
        latency = result.latency_ms if result.ok else max(result.latency_ms,
                                                          FAILURE_SLOWDOWN * slo)
        latency = max(latency, 1e-3)
        st.xs.append(self.encode(spec, result.size))
        st.cost.append(math.log(price(result.size) * latency))
        st.slack.append(math.log(latency / slo))

    # -- the model -------------------------------------------------------------------------

    def _model(self, st: _BOState, *, refit: bool = False) -> Any:
        """The GP of (cost, slack) on the runs so far: its hyperparameters fitted on the first
        call and when `refit` (the final recommendation), else the last fit's conditioned on
        all runs (a fit costs ~100x a conditioning)."""
        import torch
        from botorch.fit import fit_gpytorch_mll
        from botorch.models import SingleTaskGP
        from botorch.models.transforms import Standardize
        from gpytorch.mlls import ExactMarginalLogLikelihood

        x = torch.tensor(st.xs, dtype=torch.double)
        y = torch.tensor(list(zip(st.cost, st.slack, strict=True)), dtype=torch.double)
        model = SingleTaskGP(x, y, outcome_transform=Standardize(m=2))
        if st.hyper is not None and not refit:
            hyper = {k: v for k, v in st.hyper.items() if "outcome_transform" not in k}
            model.load_state_dict(hyper, strict=False)
        else:
            with torch.random.fork_rng(), warnings.catch_warnings():
                torch.manual_seed(self.seed + len(st.xs))
                warnings.simplefilter("ignore")
                fit_gpytorch_mll(ExactMarginalLogLikelihood(model.likelihood, model),
                                 optimizer_kwargs={"options": {"maxiter": 100}})
            st.hyper = {k: v.detach().clone() for k, v in model.state_dict().items()}
        model.eval()
        return model

    def _feasibility(self, spec: FunctionSpec, model: Any) -> tuple[list[Size], Any, Any]:
        """Per grid size: posterior mean cost and the probability that a run (observation
        noise included) meets its SLO."""
        import torch

        sizes = list(spec.sizes)
        x = torch.tensor([self.encode(spec, s) for s in sizes], dtype=torch.double)
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            post = model.posterior(x, observation_noise=True)
            mean = post.mean
            std = post.variance.clamp_min(1e-12).sqrt()
        p_ok = torch.special.ndtr(-mean[:, 1] / std[:, 1])  # P(log(latency / SLO) <= 0)
        return sizes, mean[:, 0], p_ok

    def _acquire(self, spec: FunctionSpec, st: _BOState) -> Size:
        import torch
        from botorch.acquisition.analytic import LogConstrainedExpectedImprovement

        model = self._model(st)
        sizes = list(spec.sizes)
        # the incumbent: the cheapest run that met its SLO (else the costliest run, so that
        # the improvement term is broad and feasibility drives the search)
        met = [c for c, sl in zip(st.cost, st.slack, strict=True) if sl <= 0.0]
        best = min(met) if met else max(st.cost)
        acq = LogConstrainedExpectedImprovement(model, best_f=best, objective_index=0,
                                                constraints={1: (None, 0.0)}, maximize=False)
        x = torch.tensor([self.encode(spec, s) for s in sizes], dtype=torch.double)
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            value = acq(x.unsqueeze(1))
        return sizes[int(torch.argmax(value))]

    def _recommend(self, spec: FunctionSpec, st: _BOState) -> Size:
        if not st.xs:
            return spec.largest
        model = self._model(st, refit=self.fits > 1)
        sizes, cost, p_ok = self._feasibility(spec, model)
        ok = [i for i in range(len(sizes)) if float(p_ok[i]) >= self.confidence]
        if ok:
            return sizes[min(ok, key=lambda i: (float(cost[i]), price(sizes[i])))]
        return sizes[max(range(len(sizes)), key=lambda i: float(p_ok[i]))]
