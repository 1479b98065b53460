"""Keep-alive policies: the fixed default and the per-function histogram policy."""

from __future__ import annotations

import pytest
from sched_helpers import Clock, F, G, nodes, warm_pod

from shabari.core import ConfigError, Size
from shabari.scheduler import (
    FixedKeepAlive,
    HistogramKeepAlive,
    KeepAlivePolicy,
    Scheduler,
    SchedulerConfig,
)


class TestFixed:
    def test_same_window_for_everyone(self) -> None:
        k = FixedKeepAlive(120)
        assert isinstance(k, KeepAlivePolicy)
        assert k.keep_alive_s(F, 0.0) == k.keep_alive_s(G, 1e6) == 120

    def test_negative_window_rejected(self) -> None:
        with pytest.raises(ConfigError):
            FixedKeepAlive(-1)


class TestHistogram:
    def test_default_until_enough_samples(self) -> None:
        k = HistogramKeepAlive(600, min_samples=10)
        for i in range(5):
            k.observe(F, i * 120.0)
        assert k.keep_alive_s(F, 600.0) == 600
        assert k.keep_alive_s(G, 600.0) == 600  # never seen

    def test_regular_function_gets_a_short_window(self) -> None:
        k = HistogramKeepAlive(600, bin_s=60, margin=0.1, refresh=1)
        for i in range(50):
            k.observe(F, i * 130.0)  # every 2m10s: bin [120, 180)
        assert k.keep_alive_s(F, 0.0) == pytest.approx(180 * 1.1)

    def test_percentile_covers_the_tail(self) -> None:
        k = HistogramKeepAlive(600, bin_s=60, margin=0.0, percentile=0.9, refresh=1)
        t = 0.0
        for i in range(100):
            t += 30.0 if i % 10 else 1000.0  # 90% short gaps, 10% ~17 minute gaps
            k.observe(F, t)
        assert k.keep_alive_s(F, t) == 60.0  # p90 is in the first bin
        k99 = HistogramKeepAlive(600, bin_s=60, margin=0.0, percentile=0.99, refresh=1)
        t = 0.0
        for i in range(100):
            t += 30.0 if i % 10 else 1000.0
            k99.observe(F, t)
        assert k99.keep_alive_s(F, t) == 1020.0  # bin [960, 1020)

    def test_unpredictable_function_falls_back(self) -> None:
        k = HistogramKeepAlive(600, range_s=3600, refresh=1)
        for i in range(20):
            k.observe(F, i * 7200.0)  # gaps beyond the histogram range
        assert k.keep_alive_s(F, 0.0) == 600

    def test_window_refreshed_lazily(self) -> None:
        k = HistogramKeepAlive(600, min_samples=1, refresh=4, margin=0.0, min_s=0)
        k.observe(F, 0.0)
        k.observe(F, 30.0)
        first = k.keep_alive_s(F, 30.0)
        assert first == 60.0
        for i in range(2, 4):
            k.observe(F, i * 500.0)  # only 2 new gaps: below `refresh`, window unchanged
        assert k.keep_alive_s(F, 2000.0) == first
        for i in range(4, 8):
            k.observe(F, i * 500.0)
        # gaps now 30, 970, 500 x5: the p99 bin is the 970 s one, [960, 1020)
        assert k.keep_alive_s(F, 4000.0) == 1020.0

    def test_bad_parameters_rejected(self) -> None:
        with pytest.raises(ConfigError):
            HistogramKeepAlive(600, percentile=1.5)
        with pytest.raises(ConfigError):
            HistogramKeepAlive(600, bin_s=0)

    def test_drives_scheduler_expiry_per_function(self) -> None:
        k = HistogramKeepAlive(600, bin_s=60, margin=0.0, min_samples=5, refresh=1)
        s, t = Scheduler(nodes(), SchedulerConfig(), keep_alive=k), Clock(0.0)
        for _ in range(10):  # F arrives every 30 s -> window 60 s; G has no history -> 600 s
            warm_pod(s, F, Size(500, 256), t.advance(30))
            s.remove(s.pods(F)[0].pod_id)
        f = warm_pod(s, F, Size(500, 256), t.advance(30))
        g = warm_pod(s, G, Size(500, 256), t())
        assert [p.pod_id for p in s.expire(t.advance(61))] == [f.pod_id]
        assert s.pod(g.pod_id) is not None
        assert [p.pod_id for p in s.expire(t.advance(600))] == [g.pod_id]
