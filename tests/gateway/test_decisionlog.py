"""The decision log: one JSON line per attempt, rotated, nothing lost on close."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from pathlib import Path

import pytest

from shabari.core import (
    Decision,
    DecisionId,
    FunctionName,
    Outcome,
    OutcomeStatus,
    Placement,
    PlacementKind,
    PodId,
    Size,
)
from shabari.gateway import decisionlog
from shabari.gateway.decisionlog import DecisionLog, decision_record, read_decision_log


def _record(i: int) -> dict[str, object]:
    d = Decision(DecisionId(f"d-{i}"), FunctionName("f"), Size(500, 256), 3, 0.25, 7, "bandit")
    return decision_record(
        ts=float(i), decision=d, features={"bytes": 10.0, "bad": float("nan")}, slo_ms=100.0,
        placement=Placement(PlacementKind.COLD, Size(500, 256), pod_id=PodId("p")),
        outcome=Outcome(42.0, OutcomeStatus.OK, cold_start=True), cost=0.1, violated=False)


class TestDecisionLog:
    def test_record_fields(self) -> None:
        r = _record(1)
        assert r["action"] == {"index": 3, "cpu_millicores": 500, "memory_mib": 256, "gpu": 0}
        assert r["probability"] == 0.25 and r["model_version"] == 7
        assert r["features"] == {"bytes": 10.0, "bad": None}  # NaN is not JSON
        assert r["outcome"]["status"] == "ok" and r["placement"]["kind"] == "cold"

    def test_rotation_keeps_every_record(self, tmp_path: Path) -> None:
        path = tmp_path / "d.jsonl"
        log = DecisionLog(path, max_bytes=2000, backups=100, batch=8)
        for i in range(200):
            log.write(_record(i))
            if log.pending >= log.batch:
                log._write_lines(log.take())
        log.close()
        assert len(list(tmp_path.glob("d.jsonl.*"))) > 1  # it rotated
        records = read_decision_log(path)
        assert [r["decision_id"] for r in records] == [f"d-{i}" for i in range(200)]

    def test_disabled_log_counts_only(self) -> None:
        log = DecisionLog(None, 1000, 1)
        log.write(_record(0))
        log.close()
        assert log.records == 1


class TestWriteFailures:
    """A log that cannot be written (here /dev/full: every write is ENOSPC) never raises."""

    @staticmethod
    def full_log(tmp_path: Path) -> tuple[Path, DecisionLog]:
        """A log whose file is /dev/full, with records d-0 .. d-4 waiting to be written."""
        path = tmp_path / "decisions.jsonl"
        log = DecisionLog(path, 1 << 20, 2)
        path.symlink_to("/dev/full")
        for i in range(5):
            log.write(_record(i))
        return path, log

    async def test_failed_batches_are_kept_and_written_once_the_disk_has_room(
            self, tmp_path: Path) -> None:
        path, log = self.full_log(tmp_path)
        assert await log.flush() is False
        assert not log.healthy and "No space" in (log.last_error or "")
        assert log.pending == 5 and log.dropped == 0
        path.unlink()  # room again: the same records, once each, whole lines
        log.write(_record(5))
        assert await log.flush() is True
        assert log.healthy
        assert [r["decision_id"] for r in read_decision_log(path)] == [
            f"d-{i}" for i in range(6)]

    async def test_the_buffer_is_bounded_and_overflow_counted(
            self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(decisionlog, "MAX_PENDING", 3)
        _, log = self.full_log(tmp_path)
        assert await log.flush() is False
        assert log.pending == 3 and log.dropped == 2
        assert log.close() is False  # at shutdown: counted, not raised
        assert log.dropped == 5

    def test_function_error_text_is_redacted(self) -> None:
        d = Decision(DecisionId("d"), FunctionName("f"), Size(500, 256), 0, 1.0, 0, "x")
        secret = "token=abc123"
        for outcome in (Outcome(1.0, OutcomeStatus.ERROR, detail=f"ValueError: {secret}"),
                        Outcome(1.0, OutcomeStatus.CRASH,
                                detail=f"worker exited with status 1; stderr: {secret}")):
            rec = decision_record(ts=0.0, decision=d, features={}, slo_ms=None,
                                  placement=None, outcome=outcome, cost=None, violated=None)
            assert secret not in rec["outcome"]["detail"]
            assert "sha256:" in rec["outcome"]["detail"]
        kept = Outcome(1.0, OutcomeStatus.TIMEOUT, detail="no answer within 60s; worker killed")
        rec = decision_record(ts=0.0, decision=d, features={}, slo_ms=None, placement=None,
                              outcome=kept, cost=None, violated=None)
        assert rec["outcome"]["detail"] == kept.detail


class TestFlushesInFlightAtClose:
    """A batch write that took its lines is waited for at close, whoever stopped waiting."""

    @staticmethod
    def _slow_writes(log: DecisionLog, gate: threading.Event) -> None:
        write = log._write_lines

        def slow(lines: list[str]) -> None:
            gate.wait(10)
            write(lines)

        log._write_lines = slow  # type: ignore[method-assign]

    async def test_a_cancelled_flush_still_lands_before_close(self, tmp_path: Path) -> None:
        path = tmp_path / "d.jsonl"
        log = DecisionLog(path, max_bytes=1 << 20, backups=1)
        gate = threading.Event()
        self._slow_writes(log, gate)
        for i in range(3):
            log.write(_record(i))
        flushing = asyncio.create_task(log.flush())
        await asyncio.sleep(0.05)  # the batch is in the worker thread, blocked
        flushing.cancel()  # as the sweeper's stop() cancels its loop
        with contextlib.suppress(asyncio.CancelledError):
            await flushing
        log.write(_record(3))
        closing = asyncio.create_task(log.aclose())
        await asyncio.sleep(0.05)
        assert not closing.done()  # it waits for the batch in flight
        gate.set()
        assert await closing
        assert [r["decision_id"] for r in read_decision_log(path)] == \
            [f"d-{i}" for i in range(4)]

    async def test_a_background_flush_never_awaited_lands_before_close(
            self, tmp_path: Path) -> None:
        path = tmp_path / "d.jsonl"
        log = DecisionLog(path, max_bytes=1 << 20, backups=1)
        gate = threading.Event()
        self._slow_writes(log, gate)
        log.write(_record(0))
        background = asyncio.create_task(log.flush())
        await asyncio.sleep(0.05)
        log.write(_record(1))
        threading.Timer(0.2, gate.set).start()
        assert await log.aclose()
        assert [r["decision_id"] for r in read_decision_log(path)] == ["d-0", "d-1"]
        assert await background
