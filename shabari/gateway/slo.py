"""Resolve a function's SLO into a latency bound for one invocation.

An absolute SLO (`latencyMs`) is used as is. A slowdown SLO needs the input's best latency over
the size grid (DESIGN 4.5). The gateway estimates it, in this order:

1. the function's performance table (`functions/<name>/perf.csv`, measured by `shabari
   profile`): the best median latency of the nearest profiled input in log-feature space
   (`PerfTable.estimate_best_latency_ms`);
2. otherwise, the best latency observed so far by this gateway for inputs of the same size
   bucket (log2 of the body size), whatever size it ran at;
3. otherwise (first input of its bucket) the invocation's own latency, resolved after it ran:
   it cannot be judged a violation, which is the honest answer when nothing is known.

`resolve_before` gives the bound the policy sees at decision time (None in case 3);
`resolve_after` the bound used for learning and reporting (always a number).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Protocol

from shabari.core import FunctionSpec


class BestLatencyTable(Protocol):
    def estimate_best_latency_ms(
        self, function: str, features: Mapping[str, float]
    ) -> float | None: ...


def _bucket(features: Mapping[str, float]) -> int:
    b = features.get("bytes", 0.0)
    if not math.isfinite(b) or b <= 1:
        return 0
    return int(math.log2(b))


class SloResolver:
    def __init__(self, tables: Mapping[str, BestLatencyTable] | None = None) -> None:
        self._tables = dict(tables or {})
        self._best: dict[tuple[str, int], float] = {}

    def set_tables(self, tables: Mapping[str, BestLatencyTable]) -> None:
        """New performance tables (a registry reload); best latencies seen so far are kept."""
        self._tables = dict(tables)

    def table_function(self, spec: FunctionSpec) -> BestLatencyTable | None:
        return self._tables.get(spec.name)

    def estimate_best_ms(self, spec: FunctionSpec, features: Mapping[str, float]) -> float | None:
        table = self._tables.get(spec.name)
        if table is not None:
            try:
                est = table.estimate_best_latency_ms(spec.name, features)
            except (KeyError, ValueError):
                est = None
            if est is not None and est > 0 and math.isfinite(est):
                return est
        return self._best.get((spec.name, _bucket(features)))

    def resolve_before(self, spec: FunctionSpec, features: Mapping[str, float]) -> float | None:
        if spec.slo.latency_ms is not None:
            return spec.slo.latency_ms
        best = self.estimate_best_ms(spec, features)
        return None if best is None else spec.slo.bound_ms(best)

    def resolve_after(
        self, spec: FunctionSpec, features: Mapping[str, float], before: float | None,
        latency_ms: float, ok: bool,
    ) -> float:
        """The bound to learn and report with; also records `latency_ms` as an observation."""
        if ok and latency_ms > 0 and spec.name not in self._tables:
            key = (spec.name, _bucket(features))
            self._best[key] = min(self._best.get(key, math.inf), latency_ms)
        if before is not None:
            return before
        if spec.slo.latency_ms is not None:
            return spec.slo.latency_ms
        best = self._best.get((spec.name, _bucket(features)), latency_ms if latency_ms > 0 else 1.0)
        return spec.slo.bound_ms(max(best, 1e-3))
