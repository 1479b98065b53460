"""The decision log: one JSON line per invocation attempt, rotated by size.

Each record holds what off-policy evaluation and replay need: the input's features, the action
(size and action index), its probability, the model version, the placement, the measured
outcome and its cost (from `shabari.core.cost`, the one cost function). Writing happens on a
background thread (`logging.handlers.QueueListener` + `RotatingFileHandler`), so the event loop
only enqueues a dict: no file I/O on the loop, and rotation never stalls an invocation.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import math
import queue
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from shabari.core import Decision, Outcome, Placement

_counter = 0


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def decision_record(
    *,
    ts: float,
    decision: Decision,
    features: Mapping[str, float],
    slo_ms: float | None,
    placement: Placement | None,
    outcome: Outcome | None,
    cost: float | None,
    violated: bool | None,
    attempt: int = 1,
    retry_of: str | None = None,
) -> dict[str, Any]:
    """The JSON-ready record of one attempt (the schema is documented in docs/gateway.md)."""
    size = decision.size
    rec: dict[str, Any] = {
        "ts": ts,
        "decision_id": decision.decision_id,
        "function": decision.function,
        "policy": decision.policy,
        "features": {k: _finite(float(v)) for k, v in features.items()},
        "slo_ms": slo_ms,
        "action": {"index": decision.action_index, "cpu_millicores": size.cpu_millicores,
                   "memory_mib": size.memory_mib, "gpu": size.gpu},
        "probability": decision.probability,
        "model_version": decision.model_version,
        "explored": decision.explored,
        "reason": decision.reason,
        "attempt": attempt,
        "retry_of": retry_of,
        "placement": None,
        "outcome": None,
        "cost": cost,
        "violated": violated,
    }
    if placement is not None:
        rec["placement"] = {
            "kind": placement.kind.value,
            "pod_id": placement.pod_id,
            "node_id": placement.node_id,
            "resized_from": None if placement.resized_from is None else str(placement.resized_from),
            "reason": placement.reason,
        }
    if outcome is not None:
        rec["outcome"] = {
            "status": outcome.status.value,
            "latency_ms": outcome.latency_ms,
            "cold_start": outcome.cold_start,
            "cold_start_ms": outcome.cold_start_ms,
            "cpu_seconds": outcome.cpu_seconds,
            "peak_memory_mib": outcome.peak_memory_mib,
            "detail": outcome.detail,
        }
    return rec


class DecisionLog:
    """Rotated JSON-lines writer fed through a queue; `close()` flushes every record."""

    def __init__(self, path: Path | None, max_bytes: int, backups: int) -> None:
        global _counter
        self.path = path
        self.records = 0
        self._listener: logging.handlers.QueueListener | None = None
        self._logger: logging.Logger | None = None
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.handlers.RotatingFileHandler(
            path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8", delay=True)
        handler.setFormatter(logging.Formatter("%(message)s"))
        q: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
        _counter += 1
        logger = logging.getLogger(f"shabari.gateway.decisions.{_counter}")
        logger.propagate = False
        logger.setLevel(logging.INFO)
        logger.addHandler(logging.handlers.QueueHandler(q))
        self._logger = logger
        self._listener = logging.handlers.QueueListener(q, handler)
        self._listener.start()

    def write(self, record: Mapping[str, Any]) -> None:
        self.records += 1
        if self._logger is not None:
            self._logger.info(json.dumps(record, separators=(",", ":"), allow_nan=False))

    def close(self) -> None:
        if self._listener is not None:
            self._listener.stop()  # drains the queue, then closes the file
            for h in self._listener.handlers:
                h.close()
            self._listener = None
        if self._logger is not None:
            for h in list(self._logger.handlers):
                self._logger.removeHandler(h)
            self._logger = None


def read_decision_log(path: Path) -> list[dict[str, Any]]:
    """All records of a log, oldest first, including rotated files (`path.N`, N descending)."""
    files = sorted(path.parent.glob(path.name + ".*"),
                   key=lambda p: -int(p.suffix[1:]) if p.suffix[1:].isdigit() else 0)
    out: list[dict[str, Any]] = []
    for f in [*files, path]:
        if not f.exists():
            continue
        with f.open(encoding="utf-8") as fh:
            for line in fh:
                line = line.strip()
                if line:
                    out.append(json.loads(line))
    return out
