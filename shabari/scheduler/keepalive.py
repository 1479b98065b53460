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
