"""QUEUE behind a busy pod when it frees up sooner than a cold start would complete."""

from __future__ import annotations

from sched_helpers import Clock, F, G, sched

from shabari.core import PlacementKind, Size
from shabari.scheduler import queue_wait_ms


class TestQueueVersusColdStart:
    def test_short_wait_beats_cold_start(self) -> None:
        s, t = sched(), Clock()
        busy = s.commit(s.place(F, Size(1000, 512), t()), F, t())
        t.advance(5)
        p = s.place(F, Size(1000, 512), t(), cold_start_ms=800, busy_wait_ms=100)
        assert p.kind is PlacementKind.QUEUE
        assert p.pod_id == busy.pod_id and "800 ms cold start" in p.reason

    def test_long_wait_cold_starts(self) -> None:
        s, t = sched(), Clock()
        s.commit(s.place(F, Size(1000, 512), t()), F, t())
        p = s.place(F, Size(1000, 512), t.advance(5), cold_start_ms=800, busy_wait_ms=2000)
        assert p.kind is PlacementKind.COLD

    def test_without_estimates_never_queues(self) -> None:
        s, t = sched(), Clock()
        s.commit(s.place(F, Size(1000, 512), t()), F, t())
        assert s.place(F, Size(1000, 512), t(), busy_wait_ms=1).kind is PlacementKind.COLD
        assert s.place(F, Size(1000, 512), t(), cold_start_ms=1e6).kind is PlacementKind.COLD

    def test_busy_pod_must_fit(self) -> None:
        s, t = sched(), Clock()
        s.commit(s.place(F, Size(1000, 256), t()), F, t())  # too little memory
        s.commit(s.place(G, Size(1000, 512), t()), G, t())  # another function
        p = s.place(F, Size(1000, 512), t(), cold_start_ms=800, busy_wait_ms=10)
        assert p.kind is PlacementKind.COLD

    def test_without_resize_busy_pod_cpu_must_fit(self) -> None:
        s, t = sched(supports_resize=False), Clock()
        s.commit(s.place(F, Size(500, 512), t()), F, t())
        p = s.place(F, Size(1000, 512), t(), cold_start_ms=800, busy_wait_ms=10)
        assert p.kind is PlacementKind.COLD

    def test_starting_pod_wait_includes_rest_of_its_cold_start(self) -> None:
        s, t = sched(), Clock()
        s.commit(s.place(F, Size(1000, 512), t()), F, t(), cold_start_ms=1000)
        # 100 ms in: 900 ms of start left + 100 ms of its own invocation = 1000 ms > 800 ms
        p = s.place(F, Size(1000, 512), t.advance(0.1), cold_start_ms=800, busy_wait_ms=100)
        assert p.kind is PlacementKind.COLD
        # 900 ms in: 100 + 100 = 200 ms < 800 ms
        p = s.place(F, Size(1000, 512), t.advance(0.8), cold_start_ms=800, busy_wait_ms=100)
        assert p.kind is PlacementKind.QUEUE

    def test_picks_the_soonest_free_pod(self) -> None:
        s, t = sched(), Clock()
        starting = s.commit(s.place(F, Size(1000, 512), t()), F, t(), cold_start_ms=500)
        running = s.commit(s.place(F, Size(1000, 512), t()), F, t())
        p = s.place(F, Size(1000, 512), t(), cold_start_ms=800, busy_wait_ms=100)
        assert p.kind is PlacementKind.QUEUE and p.pod_id == running.pod_id != starting.pod_id

    def test_queue_factor_zero_disables(self) -> None:
        s, t = sched(queue_factor=0.0), Clock()
        s.commit(s.place(F, Size(1000, 512), t()), F, t())
        p = s.place(F, Size(1000, 512), t(), cold_start_ms=800, busy_wait_ms=1)
        assert p.kind is PlacementKind.COLD

    def test_idle_warm_pod_wins_over_queueing(self) -> None:
        s, t = sched(), Clock()
        s.commit(s.place(F, Size(1000, 512), t()), F, t())
        idle = s.commit(s.place(F, Size(1000, 512), t()), F, t())
        s.release(idle.pod_id, t.advance(1))
        p = s.place(F, Size(1000, 512), t(), cold_start_ms=800, busy_wait_ms=1)
        assert p.kind is PlacementKind.WARM and p.pod_id == idle.pod_id


class TestScaleOutWhenTheQueueOutgrowsAColdStart:
    """Invocations already waiting count: one busy pod is not a queue for everyone."""

    def test_queue_ahead_turns_a_short_wait_into_a_cold_start(self) -> None:
        s, t = sched(), Clock()
        s.commit(s.place(F, Size(1000, 512), t()), F, t())
        # 100 ms per invocation: 7 ahead -> 800 ms, no better than the 800 ms cold start
        assert s.place(F, Size(1000, 512), t(), cold_start_ms=800, busy_wait_ms=100,
                       queued=6).kind is PlacementKind.QUEUE
        p = s.place(F, Size(1000, 512), t(), cold_start_ms=800, busy_wait_ms=100, queued=7)
        assert p.kind is PlacementKind.COLD

    def test_more_busy_pods_serve_the_queue_in_parallel(self) -> None:
        s, t = sched(), Clock()
        for _ in range(4):
            s.commit(s.place(F, Size(1000, 512), t()), F, t())
        # 12 ahead over 4 pods: 3 rounds of 100 ms + the first free pod's 100 ms
        p = s.place(F, Size(1000, 512), t(), cold_start_ms=800, busy_wait_ms=100, queued=12)
        assert p.kind is PlacementKind.QUEUE and "12 queued ahead" in p.reason
        assert s.place(F, Size(1000, 512), t(), cold_start_ms=800, busy_wait_ms=100,
                       queued=28).kind is PlacementKind.COLD

    def test_the_wait_formula(self) -> None:
        assert queue_wait_ms(50.0, 100.0, 0, 1) == 50.0
        assert queue_wait_ms(50.0, 100.0, 3, 1) == 350.0
        assert queue_wait_ms(50.0, 100.0, 3, 4) == 50.0
        assert queue_wait_ms(50.0, 100.0, 8, 4) == 250.0
        assert queue_wait_ms(50.0, 100.0, 1, 0) == float("inf")
