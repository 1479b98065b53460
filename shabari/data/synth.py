"""Synthetic invocation traces from published statistics (the project's bundled traces).

Shapes follow Shahrad et al., "Serverless in the Wild" (USENIX ATC'20), which characterised the
Azure Functions 2019 trace:

* popularity is heavy-tailed: per-function rates span orders of magnitude and a small fraction
  of functions carries most invocations (here: log-normal weights, sigma 2.0);
* about a third of functions are timer-triggered (periodic, here every 1, 5, 10 or 15 minutes);
  the rest arrive in bursts (here: per-minute Poisson counts whose rate is scaled by a
  gamma-distributed factor of shape 0.5 per minute, i.e. negative-binomial counts);
* execution times are log-normal per function (median ~ 1 s; Fig. 7 of the paper) and memory
  is log-normal around 150 MiB (90% of apps below ~400 MB);
* inside a minute, arrivals are uniform (a Poisson process given the count), as the loaders do
  for Azure 2019.

No real data is copied: only these summary shapes are used. The output is the project's
invocation CSV (`time_s,function,duration_ms,memory_mib`).
"""

from __future__ import annotations

import numpy as np

from shabari.core import ConfigError
from shabari.data.traces import Arrival, Trace

__all__ = ["synthesize"]


def synthesize(functions: int = 20, minutes: int = 10, rate: float | None = None,
               seed: int = 1) -> Trace:
    """A trace of `functions` functions over `minutes` minutes, `rate` invocations per minute
    in total on average (default 10 per function)."""
    if functions < 1 or minutes < 1:
        raise ConfigError("--functions and --minutes must be >= 1")
    total_rate = float(rate) if rate is not None else 10.0 * functions
    if not total_rate > 0:
        raise ConfigError(f"--rate must be > 0, got {rate}")
    rng = np.random.default_rng(seed)
    weights = rng.lognormal(0.0, 2.0, functions)
    rates = total_rate * weights / weights.sum()
    timer = rng.random(functions) < 0.3
    periods = rng.choice([1, 5, 10, 15], size=functions)
    med_duration_ms = np.exp(rng.normal(np.log(1000.0), 1.5, functions)).clip(5, 120_000)
    memory = np.exp(rng.normal(np.log(150.0), 0.5, functions)).clip(64, 4096)
    arrivals: list[Arrival] = []
    width = len(str(functions - 1))
    for f in range(functions):
        name = f"fn-{f:0{width}d}"
        if timer[f]:
            per = int(periods[f])
            counts = np.zeros(minutes, dtype=np.int64)
            counts[int(rng.integers(per)) % minutes::per] = max(1, round(rates[f] * per))
        else:
            burst = rng.gamma(0.5, 2.0, minutes)  # mean 1, heavy bursts
            counts = rng.poisson(rates[f] * burst)
        for m, c in enumerate(counts.tolist()):
            if c == 0:
                continue
            times = m * 60.0 + rng.random(c) * 60.0
            durs = med_duration_ms[f] * np.exp(rng.normal(0.0, 0.3, c))
            for t, d in zip(times.tolist(), durs.tolist(), strict=True):
                arrivals.append(Arrival(round(t, 3), name, round(d, 1), round(float(memory[f]))))
    arrivals.sort(key=lambda a: (a.time_s, a.function))
    return Trace(f"synth-{functions}x{minutes}-seed{seed}", tuple(arrivals))
