"""Peak-memory prediction: online high-quantile regression, because too little memory is a crash.

CPU is a speed trade-off the bandit can explore; memory is not: below the peak the function is
killed. So memory is not explored at all. Instead we regress log(peak MiB) on the log-scaled
input features with the pinball (quantile) loss at a high quantile (0.97 by default), AdaGrad
steps (1/sqrt(updates) per coordinate) on centred features, and then add a margin. The agent takes the smallest memory option
of the grid at or above that prediction. Until `min_samples` peaks have been seen the answer is
"unknown" and the agent uses the largest memory. An OOM is a hard lower bound: `learn_oom`
raises the intercept so the prediction for that input clears the limit that failed, with
headroom; the asymmetric pinball loss then brings it down only slowly.

Pure Python on small dicts (a handful of features): a prediction costs a few microseconds.
The state is plain numbers, so a checkpoint is JSON.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from shabari.agent.encoding import FeatureVector
from shabari.core.errors import ConfigError


@dataclass(frozen=True, slots=True)
class MemoryConfig:
    quantile: float = 0.97
    #: multiplicative headroom over the predicted quantile
    margin: float = 0.10
    #: peaks to see before trusting the model (until then: the largest memory)
    min_samples: int = 20
    learning_rate: float = 0.3
    #: after an OOM at limit L the prediction for that input is raised to L * oom_factor
    oom_factor: float = 1.5
    #: step sizes shrink as 1/sqrt(updates) up to this many updates, then stay constant, so
    #: the model keeps tracking (and an OOM's push up decays instead of staying forever)
    step_floor_after: float = 100.0

    def __post_init__(self) -> None:
        if not 0.5 <= self.quantile < 1.0:
            raise ConfigError(f"memory quantile must be in [0.5, 1), got {self.quantile}")
        if self.margin < 0:
            raise ConfigError(f"memory margin must be >= 0, got {self.margin}")


class QuantileMemoryModel:
    """Online quantile regression of log peak memory on (already log-scaled) features."""

    def __init__(self, config: MemoryConfig | None = None) -> None:
        self.config = config or MemoryConfig()
        self.samples = 0
        self.ooms = 0
        self._started = False
        self.bias = 0.0
        self._bias_n = 0.0
        self.weights: dict[str, float] = {}
        self._counts: dict[str, float] = {}
        self._mean: dict[str, float] = {}

    def _centred(self, fv: FeatureVector) -> dict[str, float]:
        """Numbers centred on their running mean, plus the input's one-hot tiles.

        The tiles let the linear model bend: peak memory is often affine in the input size
        (a fixed runtime plus a per-byte part), which is not a straight line in log-log.
        """
        mean = self._mean
        out = {k: v - mean.get(k, v) for k, v in fv.scaled.items()}
        for key in fv.tiles:
            out[key] = 1.0
        return out

    def _raw(self, xc: Mapping[str, float]) -> float:
        w = self.weights
        return self.bias + sum(w.get(k, 0.0) * v for k, v in xc.items())

    def predict_mib(self, x: FeatureVector | Mapping[str, float]) -> float | None:
        """Predicted high-quantile peak (MiB) with margin, or None while still unsure."""
        if self.samples < self.config.min_samples:
            return None
        fv = x if isinstance(x, FeatureVector) else FeatureVector.of(x)
        return math.exp(self._raw(self._centred(fv))) * (1.0 + self.config.margin)

    def learn(self, x: FeatureVector | Mapping[str, float], peak_mib: float) -> None:
        """One observed peak (ignored when not a positive finite number)."""
        if not (peak_mib > 0 and math.isfinite(peak_mib)):
            return
        fv = x if isinstance(x, FeatureVector) else FeatureVector.of(x)
        y = math.log(peak_mib)
        if not self._started:
            self.bias = y
            self._started = True
        self.samples += 1
        n = self.samples
        mean = self._mean
        weights = self.weights
        # one pass: update the running means (for centring), centre, predict, and |x|^2
        xc: list[tuple[str, float]] = []
        pred = self.bias
        norm = 1.0
        for k, v in fv.scaled.items():
            m = mean.get(k)
            m = v if m is None else m + (v - m) / n
            mean[k] = m
            c = v - m
            if c != 0.0:
                xc.append((k, c))
                pred += weights.get(k, 0.0) * c
                norm += c * c
        for k in fv.tiles:
            xc.append((k, 1.0))
            pred += weights.get(k, 0.0)
            norm += 1.0
        tau = self.config.quantile
        # d pinball / d pred: -tau when under-predicting, (1 - tau) when over-predicting
        g = -tau if y > pred else (1.0 - tau)
        # per-coordinate 1/sqrt(updates) steps: unlike AdaGrad (whose first step is lr times
        # the sign of the gradient), this keeps the pinball loss's asymmetry from the start,
        # so one low sample cannot undo what an under-prediction (or an OOM) taught;
        # and divide by 1 + |x|^2 so one step moves the prediction by at most lr (in log MiB)
        # however many features and tiles are active
        step = self.config.learning_rate * g / norm
        cap = self.config.step_floor_after
        self._bias_n += 1.0
        self.bias -= step / math.sqrt(min(self._bias_n, cap))
        counts = self._counts
        sqrt = math.sqrt
        for k, c in xc:
            count = counts.get(k, 0.0) + 1.0
            counts[k] = count
            weights[k] = weights.get(k, 0.0) - step * c / sqrt(count if count < cap else cap)

    def learn_oom(self, x: FeatureVector | Mapping[str, float], limit_mib: float) -> None:
        """The function was killed at `limit_mib`: its peak is above it. Push hard."""
        fv = x if isinstance(x, FeatureVector) else FeatureVector.of(x)
        self.ooms += 1
        if not (limit_mib > 0 and math.isfinite(limit_mib)):
            return
        target = math.log(limit_mib * self.config.oom_factor)
        if not self._started:
            self.bias = target
            self._started = True
        else:
            # one ordinary step (the peak exceeded the limit), then project: lift the prediction
            # at x exactly to the target, spread over the active coordinates (normalized LMS),
            # so inputs that share no tiles with this one are barely affected
            self.learn(fv, limit_mib * self.config.oom_factor)
            self.samples -= 1  # the synthetic target is not an observed peak
            xc = self._centred(fv)
            shortfall = target - self._raw(xc)
            if shortfall > 0:
                step = shortfall / (1.0 + sum(v * v for v in xc.values()))
                self.bias += step
                for k, v in xc.items():
                    if v != 0.0:
                        self.weights[k] = self.weights.get(k, 0.0) + step * v

    def to_json(self) -> dict[str, Any]:
        return {
            "samples": self.samples, "ooms": self.ooms, "started": self._started,
            "bias": self.bias,
            "bias_n": self._bias_n, "weights": self.weights, "counts": self._counts,
            "mean": self._mean,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any], config: MemoryConfig | None = None,
                  ) -> QuantileMemoryModel:
        m = cls(config)
        try:
            m.samples = int(data["samples"])
            m.ooms = int(data["ooms"])
            m._started = bool(data["started"])
            m.bias = float(data["bias"])
            m._bias_n = float(data["bias_n"])
            m.weights = {str(k): float(v) for k, v in dict(data["weights"]).items()}
            m._counts = {str(k): float(v) for k, v in dict(data["counts"]).items()}
            m._mean = {str(k): float(v) for k, v in dict(data["mean"]).items()}
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError("invalid memory-model checkpoint", detail=str(exc)) from exc
        return m
