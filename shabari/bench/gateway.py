"""`shabari bench gateway --json OUT` (DESIGN 4.6): what the gateway adds to an invocation.

The bundled `noop` function (echoes its input) runs two ways under the same closed-loop load
(`CONCURRENCY` clients, each sending its next request when the previous answer arrived):

- direct: the worker runtime serving the function over HTTP (`shabari.runtime.worker --http`),
  the way a function image runs without Shabari;
- gateway: `shabari gateway` (child process, shabari policy, local backend, decision log and
  metrics on), whose pod is the same worker runtime with the same handler.

It prints and writes `{"rps_gateway", "rps_direct", "added_ms_p50", "added_ms_p99", "errors"}`
plus the raw percentiles. It asserts nothing: timing claims live in docs/gateway.md with the
command that measured them. Note the direct worker speaks HTTP/1.0 (a new TCP connection per
request) while the client keeps its connection to the gateway alive.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from shabari.core import BackendUnavailableError, ConfigError, spec_to_mapping
from shabari.gateway.process import GatewayProcess, free_port
from shabari.runtime.catalog import bundled_functions

CONCURRENCY = 1
WARMUP = 200
DEFAULT_N = 3000


def _pct(xs: list[float], q: float) -> float:
    if not xs:
        return 0.0
    s = sorted(xs)
    k = (len(s) - 1) * q / 100.0
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


async def closed_loop(url: str, bodies: list[bytes], concurrency: int
                      ) -> tuple[list[float], int, float]:
    """Send every body (`concurrency` in flight); returns (latencies ms, errors, wall s)."""
    latencies: list[float] = []
    errors = 0
    it = iter(bodies)
    async with aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=concurrency),
            timeout=aiohttp.ClientTimeout(total=30)) as session:

        async def client() -> None:
            nonlocal errors
            for body in it:
                t0 = time.perf_counter()
                try:
                    async with session.post(url, data=body,
                                            headers={"Content-Type": "application/json"}) as r:
                        await r.read()
                        ok = r.status == 200
                except aiohttp.ClientError:
                    ok = False
                latencies.append((time.perf_counter() - t0) * 1000.0)
                errors += 0 if ok else 1

        t0 = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        wall = time.perf_counter() - t0
    return latencies, errors, wall


def _wait_http(url: str, proc: subprocess.Popen[bytes], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BackendUnavailableError(f"worker exited with code {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except (urllib.error.URLError, OSError):
            time.sleep(0.1)
    raise BackendUnavailableError("worker did not become ready in time")


def measure(n: int, seed: int, concurrency: int = CONCURRENCY) -> dict[str, Any]:
    catalog = bundled_functions()
    if "noop" not in catalog:
        raise ConfigError("the bundled function 'noop' is missing (functions/noop)")
    noop = catalog["noop"]
    bodies = [x.body for x in noop.generate_inputs(seed, 64)]
    warm = [bodies[i % len(bodies)] for i in range(WARMUP)]
    load = [bodies[i % len(bodies)] for i in range(n)]

    with tempfile.TemporaryDirectory(prefix="shabari-bench-gw-") as tmp:
        # direct: the worker runtime's HTTP mode, same handler
        port = free_port()
        worker = subprocess.Popen(
            [sys.executable, "-m", "shabari.runtime.worker", "--function-dir",
             str(noop.directory), "--http", str(port), "--host", "127.0.0.1",
             "--cpu-millicores", str(noop.spec.safe_default.cpu_millicores),
             "--memory-mib", str(noop.spec.safe_default.memory_mib)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=dict(os.environ))
        try:
            _wait_http(f"http://127.0.0.1:{port}/healthz", worker)
            url = f"http://127.0.0.1:{port}/"
            asyncio.run(closed_loop(url, warm, concurrency))
            d_lat, d_err, d_wall = asyncio.run(closed_loop(url, load, concurrency))
        finally:
            worker.terminate()
            worker.wait(10)

        # gateway: the real CLI, local backend, shabari policy, decision log + metrics on
        cfg = Path(tmp) / "functions.yaml"
        cfg.write_text(yaml.safe_dump({"functions": {"noop": {
            **spec_to_mapping(noop.spec), "directory": str(noop.directory)}}}))
        with GatewayProcess(["--config", str(cfg), "--policy", "shabari", "--seed", str(seed),
                             "--state-dir", str(Path(tmp) / "state"),
                             "--max-concurrent", str(max(concurrency, 1))],
                            log_path=Path(tmp) / "gateway.log") as gw:
            url = f"{gw.base}/invoke/noop"
            asyncio.run(closed_loop(url, warm, concurrency))
            g_lat, g_err, g_wall = asyncio.run(closed_loop(url, load, concurrency))

    return {
        "rps_gateway": n / g_wall,
        "rps_direct": n / d_wall,
        "added_ms_p50": _pct(g_lat, 50) - _pct(d_lat, 50),
        "added_ms_p99": _pct(g_lat, 99) - _pct(d_lat, 99),
        "errors": d_err + g_err,
        "n": n,
        "concurrency": concurrency,
        "gateway_ms": {"p50": _pct(g_lat, 50), "p99": _pct(g_lat, 99)},
        "direct_ms": {"p50": _pct(d_lat, 50), "p99": _pct(d_lat, 99)},
        "cpus": os.cpu_count(),
        "load_average_1m": os.getloadavg()[0],
    }


def run(args: argparse.Namespace) -> int:
    n = int(getattr(args, "n", None) or DEFAULT_N)
    result = measure(n, int(getattr(args, "seed", 1) or 1))
    text = json.dumps(result, indent=2)
    print(text)
    out = getattr(args, "json_out", None)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text + "\n")
    return 0
