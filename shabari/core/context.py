"""What a policy sees when it decides: the function, the input's features, the warm pool, now.

Time is passed in (`now`, seconds on whatever clock the driver uses: wall time in the gateway,
simulated time in the simulator), never read, so decisions are reproducible.

Whether a size would run on a warm pod is the scheduler's question, not the policy's: a
driver that has a scheduler hands its `preview` in as `warm_fit`, so a policy sees exactly
the rule placement will apply (memory, GPU, CPU headroom on the pod's node for a resize).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from shabari.core.spec import FunctionSpec, Size
from shabari.core.types import PlacementKind


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
    #: the scheduler's preview for this function (`Scheduler.preview`): WARM, RESIZE or COLD
    warm_fit: Callable[[Size], PlacementKind] | None = field(default=None, compare=False,
                                                             repr=False)

    def placement_kind(self, size: Size) -> PlacementKind:
        """How `size` would be placed now: WARM (an idle pod as it is), RESIZE (an idle pod
        resized in place) or COLD. The scheduler's own rule when the driver gave `warm_fit`;
        otherwise the same rule over `warm_idle` without node headroom (tests, tools)."""
        if self.warm_fit is not None:
            return self.warm_fit(size)
        best: Size | None = None
        for w in self.warm_idle:
            if w.memory_mib >= size.memory_mib and w.gpu == size.gpu and (
                self.supports_resize or w.cpu_millicores >= size.cpu_millicores
            ):
                if w.cpu_millicores == size.cpu_millicores and w.memory_mib == size.memory_mib:
                    return PlacementKind.WARM
                if best is None or (w.memory_mib, w.cpu_millicores) < (best.memory_mib,
                                                                       best.cpu_millicores):
                    best = w
        if best is None:
            return PlacementKind.COLD
        if not self.supports_resize or best.cpu_millicores == size.cpu_millicores:
            return PlacementKind.WARM
        return PlacementKind.RESIZE

    def would_cold_start(self, size: Size) -> bool:
        """Would running at `size` need a new pod? (`placement_kind(size)` is COLD)"""
        return self.placement_kind(size) is PlacementKind.COLD
