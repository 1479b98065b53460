"""Scheduler policy knobs, validated once so a bad config fails at start-up, not mid-trace.

The same `SchedulerConfig` is built by the gateway (from its YAML), by the simulator (from CLI
flags) and by tests; every knob has a safe default and is documented in docs/scheduler.md.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

from shabari.core.errors import ConfigError


class NodeChoice(enum.Enum):
    """How a cold start picks its node among those with room.

    BEST_FIT (default) packs pods onto the fullest node that still fits, which keeps large
    holes free for large sizes and keeps GPU nodes free for GPU pods. SPREAD picks the emptiest
    node, which leaves CPU headroom for in-place resizes up at the price of fragmentation.
    """

    BEST_FIT = "best-fit"
    SPREAD = "spread"


@dataclass(frozen=True, slots=True)
class SchedulerConfig:
    #: idle pods are evicted after this (the default `FixedKeepAlive` window)
    keep_alive_s: float = 600.0
    #: the backend can change a pod's CPU in place
    supports_resize: bool = True
    #: informational, reported in the Placement reason of RESIZE placements
    resize_latency_ms: float = 0.0
    #: at most this many pods (busy, starting or idle) per function; None = unbounded
    max_pods_per_function: int | None = None
    #: node selection for cold starts
    node_choice: NodeChoice = NodeChoice.BEST_FIT
    #: QUEUE instead of a cold start when waiting for a busy pod is expected to be shorter than
    #: `queue_factor` x the cold start (1.0: whichever is expected to finish first; < 1.0 makes
    #: the scheduler more eager to cold start, 0 disables queueing behind busy pods)
    queue_factor: float = 1.0
    #: evict idle pods (least recently used first, any function) to make room for a cold start
    evict_for_room: bool = True

    def __post_init__(self) -> None:
        if not (math.isfinite(self.keep_alive_s) and self.keep_alive_s >= 0):
            raise ConfigError(f"scheduler.keep_alive_s must be a finite number >= 0, "
                              f"got {self.keep_alive_s!r}")
        if not (math.isfinite(self.resize_latency_ms) and self.resize_latency_ms >= 0):
            raise ConfigError(f"scheduler.resize_latency_ms must be >= 0, "
                              f"got {self.resize_latency_ms!r}")
        if self.max_pods_per_function is not None and (
            isinstance(self.max_pods_per_function, bool) or self.max_pods_per_function < 1
        ):
            raise ConfigError(f"scheduler.max_pods_per_function must be >= 1 or unset, "
                              f"got {self.max_pods_per_function!r}")
        if not (math.isfinite(self.queue_factor) and self.queue_factor >= 0):
            raise ConfigError(f"scheduler.queue_factor must be >= 0, got {self.queue_factor!r}")
        if not isinstance(self.node_choice, NodeChoice):
            raise ConfigError(f"scheduler.node_choice must be one of "
                              f"{[c.value for c in NodeChoice]}, got {self.node_choice!r}")
