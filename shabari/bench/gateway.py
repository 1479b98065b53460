"""`shabari bench gateway --json OUT` (DESIGN 4.6): what the gateway adds to an invocation.

The bundled `noop` function (echoes its input) runs two ways under the same closed-loop load:

- direct: the worker runtime serving the function over HTTP (`shabari.runtime.worker --http`),
  the way a function image runs without Shabari;
- gateway: `shabari gateway` (child process, shabari policy past its safe start, local backend,
  decision log and metrics on), whose pods are the same worker runtime with the same handler.

The load comes from wrk (C, event-driven; Debian package `wrk`, installed by `make
system-deps`), not from a Python client: a Python client tops out below what the direct worker
serves, so it would measure itself on both sides. wrk runs at 1, 8 and 64 connections (one
thread: this benchmark shares the machine with what it measures), POSTing the noop's generated
JSON bodies through a Lua script, the two targets side by side for each connection count so a
change in the machine's load hits both. Its Lua `done` hook prints requests, errors and the
latency percentiles as one JSON line.

The result has the DESIGN 4.6 keys at one connection, plus `by_concurrency` {"1","8","64"} with
the same keys per connection count, the raw figures (p50/p99 of both sides, requests), the
gateway's own count of non-2xx answers (from its `shabari_http_requests` counter), the load
average before and after and the CPU count. It asserts nothing: timing claims live in
docs/gateway.md with the command that measured them.

The direct worker serves HTTP/1.0 (one request per TCP connection, wrk reconnects) while wrk
keeps its connections to the gateway alive; the gateway's own pods are reached over a local
socketpair. That is each side as deployed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from shabari.core import BackendUnavailableError, ConfigError, spec_to_mapping
from shabari.gateway.process import GatewayProcess, free_port
from shabari.runtime.catalog import BundledFunction, bundled_functions

CONNECTIONS: tuple[int, ...] = (1, 8, 64)
DEFAULT_DURATION_S = 8.0
WARMUP_S = 2.0

#: wrk's Lua hooks: POST one of the bodies (round robin per thread), report as JSON at the end
_LUA = r"""
local bodies = {}
local i = 0
local f = io.open(os.getenv("SHABARI_BENCH_BODIES"), "rb")
for line in f:lines() do
  if #line > 0 then bodies[#bodies + 1] = line end
end
f:close()
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

request = function()
  i = i % #bodies + 1
  return wrk.format(nil, nil, nil, bodies[i])
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'SHABARI_WRK {"requests": %d, "duration_us": %d, "connect_errors": %d, ' ..
    '"read_errors": %d, "write_errors": %d, "status_errors": %d, "timeouts": %d, ' ..
    '"p50_us": %.1f, "p90_us": %.1f, "p99_us": %.1f, "mean_us": %.1f}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.mean))
end
"""

_MARK = re.compile(r"^SHABARI_WRK (\{.*\})\s*$", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class WrkResult:
    """One wrk run: requests per second, latency percentiles (ms) and error counts."""

    requests: int
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    #: socket errors (connect, read, write, timeout) plus HTTP status >= 400
    errors: int


def parse_wrk(stdout: str) -> WrkResult:
    """The `SHABARI_WRK {...}` line our Lua `done` hook prints (ConfigError when missing)."""
    m = _MARK.search(stdout)
    if m is None:
        raise ConfigError("wrk printed no result line", detail=stdout[-2000:])
    d = json.loads(m.group(1))
    seconds = max(float(d["duration_us"]) / 1e6, 1e-9)
    errors = sum(int(d[k]) for k in ("connect_errors", "read_errors", "write_errors",
                                     "status_errors", "timeouts"))
    return WrkResult(int(d["requests"]), int(d["requests"]) / seconds,
                     float(d["p50_us"]) / 1000.0, float(d["p90_us"]) / 1000.0,
                     float(d["p99_us"]) / 1000.0, errors)


def wrk_binary() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise ConfigError("wrk is not installed",
                          detail="run `make system-deps` (Debian package wrk) or "
                                 "`apt-get install -y wrk`")
    return path


def run_wrk(url: str, connections: int, duration_s: float, script: Path, bodies: Path,
            *, timeout_s: float = 10.0) -> WrkResult:
    """wrk, one thread, `connections` connections, closed loop for `duration_s` seconds."""
    cmd = [wrk_binary(), "-t1", f"-c{connections}", f"-d{max(1, round(duration_s))}s",
           f"--timeout={timeout_s:g}s", "-s", str(script), url]
    env = {**os.environ, "SHABARI_BENCH_BODIES": str(bodies)}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env,
                          timeout=duration_s + timeout_s + 30)
    if proc.returncode != 0:
        raise ConfigError(f"wrk failed with code {proc.returncode}",
                          detail=(proc.stderr or proc.stdout)[-2000:])
    return parse_wrk(proc.stdout)


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


def non_2xx(metrics_text: str, route: str = "/invoke/{function}") -> int:
    """Answers on `route` whose code is not 2xx, from the gateway's Prometheus text."""
    n = 0.0
    pat = re.compile(r'^shabari_http_requests_total\{(.*)\}\s+([0-9.eE+]+)$', re.MULTILINE)
    for labels, value in pat.findall(metrics_text):
        lab = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', labels))
        if lab.get("route") == route and not lab.get("code", "").startswith("2"):
            n += float(value)
    return int(n)


def _side_by_side(d: WrkResult, g: WrkResult) -> dict[str, Any]:
    return {
        "rps_gateway": g.rps,
        "rps_direct": d.rps,
        "added_ms_p50": g.p50_ms - d.p50_ms,
        "added_ms_p99": g.p99_ms - d.p99_ms,
        "errors": d.errors + g.errors,
        "ratio": g.rps / d.rps if d.rps else 0.0,
        "gateway_ms": {"p50": g.p50_ms, "p90": g.p90_ms, "p99": g.p99_ms},
        "direct_ms": {"p50": d.p50_ms, "p90": d.p90_ms, "p99": d.p99_ms},
        "requests": {"gateway": g.requests, "direct": d.requests},
        "errors_by_side": {"gateway": g.errors, "direct": d.errors},
    }


def _gateway_config(noop: BundledFunction, path: Path) -> None:
    path.write_text(yaml.safe_dump({"functions": {"noop": {
        **spec_to_mapping(noop.spec), "directory": str(noop.directory)}}}))


def measure(duration_s: float = DEFAULT_DURATION_S, seed: int = 1,
            connections: Sequence[int] = CONNECTIONS,
            gateway_args: Sequence[str] = ()) -> dict[str, Any]:
    """Direct worker and gateway, each under wrk at every connection count (side by side)."""
    catalog = bundled_functions()
    if "noop" not in catalog:
        raise ConfigError("the bundled function 'noop' is missing (functions/noop)")
    noop = catalog["noop"]
    wrk_binary()
    load0 = os.getloadavg()
    top = max(connections)
    with tempfile.TemporaryDirectory(prefix="shabari-bench-gw-") as tmp_s:
        tmp = Path(tmp_s)
        script = tmp / "post.lua"
        script.write_text(_LUA)
        bodies = tmp / "bodies.jsonl"
        bodies.write_bytes(b"\n".join(x.body.replace(b"\n", b" ")
                                      for x in noop.generate_inputs(seed, 64)) + b"\n")
        cfg = tmp / "functions.yaml"
        _gateway_config(noop, cfg)
        port = free_port()
        worker = subprocess.Popen(
            [sys.executable, "-m", "shabari.runtime.worker", "--function-dir",
             str(noop.directory), "--http", str(port), "--host", "127.0.0.1",
             "--cpu-millicores", str(noop.spec.safe_default.cpu_millicores),
             "--memory-mib", str(noop.spec.safe_default.memory_mib)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=dict(os.environ))
        gw = GatewayProcess(["--config", str(cfg), "--policy", "shabari", "--seed", str(seed),
                             "--state-dir", str(tmp / "state"),
                             "--max-concurrent", str(top), "--max-queue", str(4 * top),
                             *gateway_args],
                            log_path=tmp / "gateway.log")
        try:
            _wait_http(f"http://127.0.0.1:{port}/healthz", worker)
            gw.start()
            direct_url = f"http://127.0.0.1:{port}/"
            gw_url = f"{gw.base}/invoke/noop"
            # warm-up: both sides at every connection count (the gateway starts its pods and
            # leaves the shabari policy's safe start behind)
            for c in connections:
                run_wrk(direct_url, c, WARMUP_S, script, bodies)
                run_wrk(gw_url, c, WARMUP_S, script, bodies)
            learned, phase = _learning(gw)
            before = non_2xx(_text(f"{gw.base}/metrics"))
            by: dict[str, dict[str, Any]] = {}
            assert gw.proc is not None
            for c in connections:
                w0 = cpu_seconds(worker.pid)
                d = run_wrk(direct_url, c, duration_s, script, bodies)
                g0 = cpu_seconds(gw.proc.pid)
                g = run_wrk(gw_url, c, duration_s, script, bodies)
                g1 = cpu_seconds(gw.proc.pid)
                w1 = cpu_seconds(worker.pid) - w0
                by[str(c)] = {**_side_by_side(d, g), "connections": c,
                              # CPU time per request of the gateway process itself and of
                              # the direct worker: a load-independent view of the cost
                              "gateway_cpu_ms_per_request": 1000 * (g1 - g0) / max(g.requests, 1),
                              "direct_cpu_ms_per_request": 1000 * w1 / max(d.requests, 1)}
            gateway_non_2xx = non_2xx(_text(f"{gw.base}/metrics")) - before
            stats = gw.get_json("/stats")
        finally:
            gw.stop()
            worker.terminate()
            worker.wait(10)
    first = by[str(min(connections))]
    out: dict[str, Any] = {k: first[k] for k in ("rps_gateway", "rps_direct", "added_ms_p50",
                                                 "added_ms_p99", "errors")}
    out["by_concurrency"] = by
    out["load_generator"] = "wrk -t1 (Lua POST of the noop's bodies)"
    out["duration_s"] = duration_s
    out["gateway_non_2xx"] = gateway_non_2xx
    # measured past the shabari policy's safe start: the warm-up teaches it thousands of
    # outcomes, and the phase it reports then is recorded here
    out["outcomes_learned_before_measuring"] = learned
    out["policy_phase_before_measuring"] = phase
    out["pods_started"] = stats.get("pool", {}).get("pods_started")
    out["cpus"] = os.cpu_count()
    out["load_average_before"] = list(load0)
    out["load_average_after"] = list(os.getloadavg())
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process `pid` so far (0 when it cannot be read)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def _text(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as r:
        data: bytes = r.read()
        return data.decode()


def _learning(gw: GatewayProcess) -> tuple[int, str]:
    for f in gw.get_json("/functions"):
        if f.get("name") == "noop":
            learning = f.get("learning") or {}
            n = learning.get("outcomes", learning.get("outcomes_seen", 0))
            return int(n or 0), str(learning.get("phase", "?"))
    return 0, "?"


def _table(result: dict[str, Any]) -> str:
    rows = ["connections  direct rps  direct p50  gateway rps  gateway p50  added p50  "
            "gw/direct  errors  gw cpu/req"]
    for c, r in result["by_concurrency"].items():
        rows.append(f"{c:>11}  {r['rps_direct']:>10.0f}  {r['direct_ms']['p50']:>8.2f}ms  "
                    f"{r['rps_gateway']:>11.0f}  {r['gateway_ms']['p50']:>9.2f}ms  "
                    f"{r['added_ms_p50']:>7.2f}ms  {r['ratio']:>8.2f}x  {r['errors']:>6}  "
                    f"{r['gateway_cpu_ms_per_request']:>7.3f}ms")
    la = result["load_average_before"]
    rows.append(f"load average before {la[0]:.2f} {la[1]:.2f} {la[2]:.2f}, "
                f"{result['cpus']} CPUs; gateway non-2xx: {result['gateway_non_2xx']}")
    return "\n".join(rows)


def run(args: argparse.Namespace) -> int:
    duration = float(getattr(args, "duration", None) or DEFAULT_DURATION_S)
    conns = getattr(args, "connections", None)
    connections = tuple(int(c) for c in str(conns).split(",")) if conns else CONNECTIONS
    result = measure(duration, int(getattr(args, "seed", 1) or 1), connections)
    text = json.dumps(result, indent=2)
    out = getattr(args, "json_out", None)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text + "\n")
    print(_table(result))
    return 0
