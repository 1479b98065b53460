"""`shabari bench gateway`: wrk's output is read right, and a short real run has the 4.6 keys."""

from __future__ import annotations

import shutil

import pytest

from shabari.bench.gateway import measure, non_2xx, parse_wrk
from shabari.core import ConfigError

WRK_LINE = ('Running 1s test @ http://x\n  1 threads and 8 connections\n'
            'SHABARI_WRK {"requests": 5000, "duration_us": 2000000, "connect_errors": 1, '
            '"read_errors": 2, "write_errors": 0, "status_errors": 3, "timeouts": 4, '
            '"p50_us": 1500.0, "p90_us": 2500.0, "p99_us": 9000.0, "mean_us": 1600.0}\n')


class TestWrkOutput:
    def test_rates_percentiles_and_errors(self) -> None:
        r = parse_wrk(WRK_LINE)
        assert r.requests == 5000
        assert r.rps == pytest.approx(2500.0)
        assert (r.p50_ms, r.p90_ms, r.p99_ms) == (1.5, 2.5, 9.0)
        assert r.errors == 10

    def test_missing_result_line_is_an_error_with_the_output(self) -> None:
        with pytest.raises(ConfigError) as info:
            parse_wrk("unable to connect to 127.0.0.1:1 Connection refused\n")
        assert "Connection refused" in info.value.detail


class TestNon2xxFromMetrics:
    def test_counts_only_the_invoke_route_and_non_2xx_codes(self) -> None:
        text = "\n".join([
            '# HELP shabari_http_requests_total HTTP responses',
            'shabari_http_requests_total{code="200",route="/invoke/{function}"} 900.0',
            'shabari_http_requests_total{code="429",route="/invoke/{function}"} 7.0',
            'shabari_http_requests_total{code="502",route="/invoke/{function}"} 2.0',
            'shabari_http_requests_total{code="503",route="/readyz"} 5.0',
        ])
        assert non_2xx(text) == 9


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk not installed (make system-deps)")
def test_short_real_run_reports_the_design_keys_per_concurrency() -> None:
    result = measure(duration_s=1.0, connections=(1, 2))
    for key in ("rps_gateway", "rps_direct", "added_ms_p50", "added_ms_p99", "errors"):
        assert key in result
        for c in ("1", "2"):
            assert key in result["by_concurrency"][c]
    assert result["by_concurrency"]["1"]["requests"]["gateway"] > 0
    assert result["by_concurrency"]["2"]["requests"]["direct"] > 0
    assert result["errors"] == 0 and result["gateway_non_2xx"] == 0
    assert result["outcomes_learned_before_measuring"] > 0
