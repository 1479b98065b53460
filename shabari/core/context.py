"""What a policy sees when it decides: the function, the input's features, the warm pool, now.

Time is passed in (`now`, seconds on whatever clock the driver uses: wall time in the gateway,
simulated time in the simulator), never read, so decisions are reproducible.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from shabari.core.spec import FunctionSpec, Size


@dataclass(frozen=True, slots=True)
class DecisionContext:
    spec: FunctionSpec
    features: Mapping[str, float]
    now: float
    #: sizes of this function's idle warm pods (one entry per pod)
    warm_idle: tuple[Size, ...] = ()
    #: whether the backend can change a warm pod's CPU in place
    supports_resize: bool = True
    #: the SLO bound for this invocation, when the driver knows it (resolved slowdown SLOs)
    slo_ms: float | None = None

    def would_cold_start(self, size: Size) -> bool:
        """Would running at `size` need a new pod? Mirrors the scheduler's warm rule: an idle
        pod fits when its memory is at least `size`'s, its GPU count is equal, and (without
        in-place resize) its CPU is at least `size`'s."""
        for w in self.warm_idle:
            if w.memory_mib >= size.memory_mib and w.gpu == size.gpu and (
                self.supports_resize or w.cpu_millicores >= size.cpu_millicores
            ):
                return False
        return True
