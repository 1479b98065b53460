"""The decision log: one JSON line per invocation attempt, rotated by size.

Each record holds what off-policy evaluation and replay need: the input's features, the action
(size and action index), its probability, the model version, the placement, the measured
outcome and its cost (from `shabari.core.cost`, the one cost function). The event loop only
serializes and buffers a record; files are written in batches in a worker thread, so there is
no file I/O on the loop and rotation never stalls an invocation.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from shabari.core import Decision, Outcome, Placement


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
    """Rotated JSON-lines writer: records are buffered on the loop and written in batches.

    `write` only serializes and appends to a list (no I/O, no thread hop per record: a
    per-record hand-off to a writer thread costs a GIL switch, milliseconds on a busy 2-core
    box). `flush` writes the batch in a worker thread; the gateway calls it every sweep and
    whenever `batch` records are pending, and `close` writes the rest, so nothing is lost on
    a graceful shutdown. A file over `max_bytes` rotates to `.1` ... `.backups` after a batch.
    """

    def __init__(self, path: Path | None, max_bytes: int, backups: int,
                 batch: int = 512) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        self.batch = batch
        self.records = 0
        self._pending: list[str] = []
        self._lock = threading.Lock()  # orders batches from concurrent flushes
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)

    @property
    def pending(self) -> int:
        return len(self._pending)

    def write(self, record: Mapping[str, Any]) -> None:
        self.records += 1
        if self.path is not None:
            self._pending.append(json.dumps(record, separators=(",", ":"), allow_nan=False))

    def take(self) -> list[str]:
        lines, self._pending = self._pending, []
        return lines

    async def flush(self) -> None:
        lines = self.take()
        if lines:
            await asyncio.to_thread(self._write_lines, lines)

    def _write_lines(self, lines: list[str]) -> None:
        assert self.path is not None
        with self._lock:
            with self.path.open("a", encoding="utf-8") as fh:
                fh.write("\n".join(lines) + "\n")
                size = fh.tell()
            if size > self.max_bytes and self.backups > 0:
                self._rotate()

    def _rotate(self) -> None:
        assert self.path is not None
        for i in range(self.backups - 1, 0, -1):
            src = self.path.with_name(f"{self.path.name}.{i}")
            if src.exists():
                os.replace(src, self.path.with_name(f"{self.path.name}.{i + 1}"))
        os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))

    def close(self) -> None:
        """Write every pending record (synchronously: called once, at shutdown)."""
        lines = self.take()
        if lines and self.path is not None:
            self._write_lines(lines)


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
