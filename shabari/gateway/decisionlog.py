"""The decision log: one JSON line per invocation attempt, rotated by size.

Each record holds what off-policy evaluation and replay need: the input's features, the action
(size and action index), its probability, the model version, the placement, the measured
outcome and its cost (from `shabari.core.cost`, the one cost function). The event loop only
serializes and buffers a record; files are written in batches in a worker thread, so there is
no file I/O on the loop and rotation never stalls an invocation.

A write that fails (disk full, read-only volume) is never fatal: the batch is truncated away
(no half line is left in the file), its records wait in a bounded buffer for the next flush,
and what overflows the buffer is counted in `dropped`. `healthy` is False from a failed write
until the next one succeeds (the gateway's `/readyz` reports it).

Function error text can hold the caller's input, so a record keeps only its size and a hash
(`redact`); the caller gets the text in the HTTP answer, the log never does.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import math
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from shabari.core import Decision, Outcome, OutcomeStatus, Placement

log = logging.getLogger(__name__)

#: records kept in memory while the log cannot be written; older ones are dropped (counted)
MAX_PENDING = 20_000


def redact(text: str) -> str:
    """What a log may say about text a function produced: its size and a hash, not content."""
    data = text.encode("utf-8", "replace")
    return f"<{len(data)} bytes, sha256:{hashlib.sha256(data).hexdigest()[:16]}>"


def outcome_detail(outcome: Outcome) -> str:
    """`outcome.detail` fit for the log: a function's own text (its exception, the tail of
    its stderr) is redacted; what the gateway or backend wrote about it is kept."""
    detail = outcome.detail
    if outcome.status is OutcomeStatus.ERROR and detail:
        return "function error " + redact(detail)
    head, sep, tail = detail.partition("; stderr: ")
    if sep:
        return f"{head}; stderr {redact(tail)}"
    head, sep, tail = detail.partition(": MemoryError. ")
    if sep:
        return f"{head}: MemoryError; stderr {redact(tail)}"
    return detail


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
        "action": {"index": decision.action_index, **size.to_dict()},
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
            "detail": outcome_detail(outcome),
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
        #: records lost to write failures (the buffer overflowed while the disk was full)
        self.dropped = 0
        #: failed batch writes
        self.errors = 0
        #: False from a failed write until a write succeeds again
        self.healthy = True
        self.last_error: str | None = None
        self._pending: list[str] = []
        self._lock = threading.Lock()  # orders batches from concurrent flushes
        #: batch writes running in worker threads: `aclose` waits for them, so a flush whose
        #: caller was cancelled (the sweeper stopping) or never awaited (a background flush)
        #: still lands before the log is closed
        self._inflight: set[asyncio.Future[OSError | None]] = set()
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

    async def flush(self) -> bool:
        """Write what is pending (in a worker thread); False when the write failed (the
        records are kept for the next flush, up to `MAX_PENDING`)."""
        lines = self.take()
        if not lines:
            return True
        write = asyncio.get_running_loop().run_in_executor(None, self._try_write, lines)
        self._inflight.add(write)
        write.add_done_callback(lambda done: self._written(done, lines))
        # shielded: cancelling the caller must not cancel a write that took the lines;
        # `_written` settles the batch (it runs before the shield hands the result over)
        return await asyncio.shield(write) is None

    def _written(self, write: asyncio.Future[OSError | None], lines: list[str]) -> None:
        """A batch write ended (on the loop): settle it, whoever was waiting for it."""
        self._inflight.discard(write)
        if write.cancelled():  # never started (the loop's executor shut down): keep the lines
            self._pending = lines + self._pending
            return
        failure = write.exception()
        if failure is not None:  # not an OSError: a bug, but the records stay for close()
            log.error("decision log %s: batch write failed: %r", self.path, failure)
            self._pending = lines + self._pending
            return
        self._settle(lines, write.result())

    async def aclose(self) -> bool:
        """Wait for batch writes still running, then write the rest (`close`)."""
        while self._inflight:
            await asyncio.gather(*self._inflight, return_exceptions=True)
            await asyncio.sleep(0)  # let their done callbacks settle them
        return self.close()

    def _settle(self, lines: list[str], error: OSError | None) -> bool:
        if error is None:
            if not self.healthy:
                log.info("decision log %s writable again", self.path)
            self.healthy = True
            self.last_error = None
            return True
        self.errors += 1
        if self.healthy:
            log.error("decision log %s cannot be written (%s); keeping up to %d records in "
                      "memory until it can", self.path, error, MAX_PENDING)
        self.healthy = False
        self.last_error = f"{type(error).__name__}: {error}"
        kept = lines + self._pending
        if len(kept) > MAX_PENDING:
            self.dropped += len(kept) - MAX_PENDING
            kept = kept[len(kept) - MAX_PENDING:]
        self._pending = kept
        return False

    def _try_write(self, lines: list[str]) -> OSError | None:
        try:
            self._write_lines(lines)
        except OSError as exc:
            return exc
        return None

    def _write_lines(self, lines: list[str]) -> None:
        assert self.path is not None
        with self._lock:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                start = os.lseek(fd, 0, os.SEEK_END)
                data = ("\n".join(lines) + "\n").encode("utf-8")
                try:
                    view = memoryview(data)
                    while view:
                        view = view[os.write(fd, view):]
                except OSError:
                    # no half batch stays behind: a reader would meet a broken line
                    with contextlib.suppress(OSError):
                        os.ftruncate(fd, start)
                    raise
                size = start + len(data)
            finally:
                os.close(fd)
            if size > self.max_bytes and self.backups > 0:
                self._rotate()

    def _rotate(self) -> None:
        assert self.path is not None
        for i in range(self.backups - 1, 0, -1):
            src = self.path.with_name(f"{self.path.name}.{i}")
            if src.exists():
                os.replace(src, self.path.with_name(f"{self.path.name}.{i + 1}"))
        os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))

    def close(self) -> bool:
        """Write every pending record (synchronously: called once, at shutdown); never raises
        for a write failure (what could not be written is counted in `dropped`)."""
        lines = self.take()
        if not lines or self.path is None:
            return True
        ok = self._settle(lines, self._try_write(lines))
        if not ok:
            self.dropped += len(self._pending)
            log.error("decision log %s: %d records lost at shutdown (%s)", self.path,
                      len(self._pending), self.last_error)
            self._pending = []
        return ok


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
