"""The cost function orders outcomes the way the SLO-with-least-allocation goal demands."""

from __future__ import annotations

from shabari.core import Outcome, OutcomeStatus, Size, cost

BIG = Size(4000, 1024)


def test_met_slo_cheaper_when_smaller() -> None:
    ok = Outcome(latency_ms=50)
    assert cost(Size(500, 256), ok, 100, BIG) < cost(Size(2000, 256), ok, 100, BIG)


def test_violation_worse_than_any_met() -> None:
    assert cost(Size(250, 256), Outcome(latency_ms=101), 100, BIG) > cost(
        BIG, Outcome(latency_ms=99), 100, BIG)


def test_violation_graded_and_failure_worst() -> None:
    near = cost(Size(250, 256), Outcome(latency_ms=110), 100, BIG)
    far = cost(Size(250, 256), Outcome(latency_ms=500), 100, BIG)
    oom = cost(Size(250, 256), Outcome(latency_ms=5, status=OutcomeStatus.OOM), 100, BIG)
    assert near < far < oom


def test_function_error_is_not_a_size_problem() -> None:
    err = Outcome(latency_ms=5000, status=OutcomeStatus.ERROR)
    assert cost(Size(250, 256), err, 100, BIG) < 1.0
