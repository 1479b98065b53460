"""Keep-alive policies: how long an idle pod of a function stays warm after an invocation.

The scheduler asks its policy for a window each time a pod goes idle and records the deadline
(`last_used + window`); `Scheduler.expire(now)` removes the pods whose deadline has passed.
A policy only sees arrivals and `now`, never a clock, so it runs under the gateway's wall
clock and the simulator's simulated clock alike. `FixedKeepAlive` is the platform default
(one window for everyone); a histogram policy in the manner of Shahrad et al. (ATC '20,
"Serverless in the Wild") plugs in through the same two methods.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from shabari.core.errors import ConfigError
from shabari.core.ids import FunctionName


@runtime_checkable
class KeepAlivePolicy(Protocol):
    def observe(self, function: FunctionName, now: float) -> None:
        """An invocation of `function` was placed at `now` (feeds adaptive policies)."""

    def keep_alive_s(self, function: FunctionName, now: float) -> float:
        """How long a pod of `function` that goes idle at `now` stays warm."""


class FixedKeepAlive:
    """The same window for every function (the usual 10 minutes of commercial platforms)."""

    __slots__ = ("window_s",)

    def __init__(self, window_s: float) -> None:
        if not window_s >= 0:
            raise ConfigError(f"keep-alive window must be >= 0 seconds, got {window_s!r}")
        self.window_s = float(window_s)

    def observe(self, function: FunctionName, now: float) -> None:
        return None

    def keep_alive_s(self, function: FunctionName, now: float) -> float:
        return self.window_s

    def __repr__(self) -> str:
        return f"FixedKeepAlive({self.window_s:g}s)"


class HistogramKeepAlive:
    """Per-function keep-alive from a histogram of inter-arrival gaps (Shahrad et al., ATC '20).

    Each function's gaps between consecutive invocations go into `bin_s`-wide bins up to
    `range_s`. Once a function has `min_samples` gaps, its window is the upper edge of the bin
    holding the `percentile` of in-range gaps, plus `margin`, clamped to `[min_s, range_s]`:
    a function invoked every 2 minutes keeps its pods ~3 minutes instead of 10, a function
    with hour-long gaps does not hold a pod for nothing. Functions with too few samples, or
    whose gaps mostly exceed the range (not predictable), get `default_s`. Only the keep-alive
    half of the paper's hybrid policy: the scheduler has no pre-warming.

    Windows are recomputed lazily (every `refresh` new gaps), so `keep_alive_s` is O(1)
    amortised; state is per instance and driven only by the `now` values passed in.
    """

    def __init__(
        self,
        default_s: float = 600.0,
        *,
        bin_s: float = 60.0,
        range_s: float = 4 * 3600.0,
        percentile: float = 0.99,
        margin: float = 0.10,
        min_s: float = 60.0,
        min_samples: int = 10,
        max_out_of_range: float = 0.5,
        refresh: int = 16,
    ) -> None:
        if not (default_s >= 0 and bin_s > 0 and range_s >= bin_s and 0 < percentile <= 1
                and margin >= 0 and 0 <= min_s <= range_s and min_samples >= 1
                and 0 <= max_out_of_range <= 1 and refresh >= 1):
            raise ConfigError(
                "histogram keep-alive needs default_s >= 0, bin_s > 0, range_s >= bin_s, "
                "0 < percentile <= 1, margin >= 0, 0 <= min_s <= range_s, min_samples >= 1, "
                "0 <= max_out_of_range <= 1, refresh >= 1")
        self.default_s = float(default_s)
        self.bin_s = float(bin_s)
        self.range_s = float(range_s)
        self.percentile = percentile
        self.margin = margin
        self.min_s = float(min_s)
        self.min_samples = min_samples
        self.max_out_of_range = max_out_of_range
        self.refresh = refresh
        self._bins = int(-(-range_s // bin_s))
        self._last: dict[FunctionName, float] = {}
        self._hist: dict[FunctionName, list[int]] = {}
        self._out: dict[FunctionName, int] = {}
        self._window: dict[FunctionName, float] = {}
        self._stale: dict[FunctionName, int] = {}

    def observe(self, function: FunctionName, now: float) -> None:
        last = self._last.get(function)
        self._last[function] = now
        if last is None or now < last:
            return
        hist = self._hist.get(function)
        if hist is None:
            hist = self._hist[function] = [0] * self._bins
            self._out[function] = 0
        b = int((now - last) // self.bin_s)
        if b < self._bins:
            hist[b] += 1
        else:
            self._out[function] += 1
        self._stale[function] = self._stale.get(function, 0) + 1

    def keep_alive_s(self, function: FunctionName, now: float) -> float:
        stale = self._stale.get(function, 0)
        window = self._window.get(function)
        if window is None or stale >= self.refresh:
            window = self._compute(function)
            self._window[function] = window
            self._stale[function] = 0
        return window

    def _compute(self, function: FunctionName) -> float:
        hist = self._hist.get(function)
        if hist is None:
            return self.default_s
        inside = sum(hist)
        total = inside + self._out[function]
        if total < self.min_samples or inside == 0 or \
                self._out[function] / total > self.max_out_of_range:
            return self.default_s
        target = self.percentile * inside
        acc = 0
        for b, count in enumerate(hist):
            acc += count
            if acc >= target:
                edge = (b + 1) * self.bin_s * (1.0 + self.margin)
                return min(self.range_s, max(self.min_s, edge))
        return self.range_s  # unreachable: acc reaches inside

    def __repr__(self) -> str:
        return (f"HistogramKeepAlive(default={self.default_s:g}s, p{self.percentile * 100:g}, "
                f"bins={self._bins}x{self.bin_s:g}s)")
