"""The decision log: one JSON line per attempt, rotated, nothing lost on close."""

from __future__ import annotations

from pathlib import Path

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
