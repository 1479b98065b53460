"""Replicated gateway benchmark: aggregate throughput of N replicas that learn as one.

Starts the Lease-serving Kubernetes API emulator (tests/replicas/lease_api.py: kmock plus
optimistic concurrency) and N real `shabari gateway --lease ...` processes (local backend,
the bundled no-op function), then loads every replica at once with its own wrk (one thread,
`--connections` each: what a round-robin load balancer in front of them does) for
`--duration` seconds. Before that, for comparison, one plain gateway (no Lease, one process
playing every role) gets one wrk with N x connections. Reports requests per second per
replica and in total, the non-2xx count, whether every replica's learned outcomes equal the
invocations of all of them after the stated distribution delay, the followers' model ages,
and the learner's learning capacity (outcomes per second its `receive` takes, measured
in-process on shipped records: the figure that bounds how far the design scales, see
docs/gateway.md). Prints numbers, asserts nothing.

    .venv/bin/python bench/replicas.py [--replicas 3] [--connections 8] [--duration 8]
        [--json bench/replicas.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "replicas"))

from lease_api import lease_api  # noqa: E402
from replica_cluster import replicas, until, write_config  # noqa: E402

from shabari.agent import make_policy  # noqa: E402
from shabari.bench.gateway import _LUA, parse_wrk, wrk_binary  # noqa: E402
from shabari.core import DecisionContext, Outcome  # noqa: E402
from shabari.gateway.process import GatewayProcess  # noqa: E402
from shabari.gateway.replica import decode_outcome, encode_outcome  # noqa: E402
from shabari.runtime.catalog import bundled_functions  # noqa: E402

DISTRIBUTION_DELAY_S = 2.0
#: seconds of load before measuring: pods started, past the safe start
WARMUP_S = 6


async def wrk(url: str, connections: int, duration_s: float, script: Path, bodies: Path
              ) -> dict[str, Any]:
    proc = await asyncio.create_subprocess_exec(
        wrk_binary(), "-t1", f"-c{connections}", f"-d{round(duration_s)}s", "--timeout=10s",
        "-s", str(script), url, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "SHABARI_BENCH_BODIES": str(bodies)})
    out, _ = await proc.communicate()
    r = parse_wrk(out.decode())
    return {"rps": r.rps, "requests": r.requests, "p50_ms": r.p50_ms, "p99_ms": r.p99_ms,
            "errors": r.errors}


def learner_capacity(n: int = 3000) -> dict[str, float]:
    """Outcomes per second one learner learns from shipped records (decode + learn)."""
    noop = bundled_functions()["noop"]
    spec = noop.spec
    follower = make_policy("shabari", 1)
    records = []
    for i, x in enumerate(noop.generate_inputs(1, n)):
        ctx = DecisionContext(spec=spec, features={"bytes": float(len(x.body))}, now=i * 0.01)
        d = follower.decide(ctx)
        records.append(encode_outcome(ctx, d, Outcome(latency_ms=1.0 + (i % 7))))
    payload = json.dumps({"records": records}).encode()
    learner = make_policy("shabari", 2)
    t0 = time.process_time()
    docs = json.loads(payload)["records"]
    for rec in docs:
        learner.learn(*decode_outcome(rec, spec))
    cpu = time.process_time() - t0
    ckpt = learner.checkpoint(spec.name)  # type: ignore[attr-defined]
    t1 = time.process_time()
    for _ in range(20):
        learner.checkpoint(spec.name)  # type: ignore[attr-defined]
    snap_ms = (time.process_time() - t1) / 20 * 1000
    return {"outcomes_per_cpu_second": n / cpu, "record_bytes": len(payload) / n,
            "snapshot_bytes": float(len(ckpt)), "snapshot_cpu_ms": snap_ms}


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    n, c, dur = args.replicas, args.connections, args.duration
    noop = bundled_functions()["noop"]
    result: dict[str, Any] = {"replicas": n, "connections_per_replica": c, "duration_s": dur,
                              "cpus": os.cpu_count(), "load_average_before": os.getloadavg()}
    with tempfile.TemporaryDirectory(prefix="shabari-bench-replicas-") as tmp_s:
        tmp = Path(tmp_s)
        script, bodies = tmp / "post.lua", tmp / "bodies.jsonl"
        script.write_text(_LUA)
        bodies.write_bytes(b"\n".join(x.body for x in noop.generate_inputs(1, 64)) + b"\n")
        # one plain gateway, every role in one process, the same total connections
        cfg = write_config(tmp / "single.yaml")
        single = GatewayProcess(["--config", str(cfg), "--max-concurrent", str(n * c),
                                 "--max-queue", str(4 * n * c)], log_path=tmp / "single.log")
        await asyncio.to_thread(single.start)
        try:
            url = f"{single.base}/invoke/noop"
            await wrk(url, n * c, WARMUP_S, script, bodies)
            result["single_gateway"] = await wrk(url, n * c, dur, script, bodies)
        finally:
            await asyncio.to_thread(single.stop)
        async with lease_api() as (emulator, api_url), replicas(api_url, tmp, n) as rs:
            await until(lambda: _one_learner(rs), 30, "a learner")
            urls = [f"{p.base}/invoke/noop" for p in rs.procs]
            await asyncio.gather(*(wrk(u, c, WARMUP_S, script, bodies) for u in urls))
            await asyncio.sleep(DISTRIBUTION_DELAY_S)
            before = [await rs.outcomes(p) for p in rs.procs]
            runs = await asyncio.gather(*(wrk(u, c, dur, script, bodies) for u in urls))
            served = sum(r["requests"] for r in runs)
            t_end = time.monotonic()
            want = max(before) + served
            try:
                took = await until(lambda: _all_at_least(rs, want), 60, "distribution")
            except AssertionError:
                took = None
            after = [await rs.outcomes(p) for p in rs.procs]
            states = await rs.states()
            result["per_replica"] = runs
            result["aggregate_rps"] = sum(r["rps"] for r in runs)
            result["errors"] = sum(r["errors"] for r in runs)
            result["served"] = served
            result["learned_on_each_replica"] = [a - min(before) for a in after]
            result["distribution_delay_s"] = (None if took is None
                                              else time.monotonic() - t_end)
            result["roles"] = {s["identity"]: s["role"] for s in states}
            result["model_age"] = {s["identity"]: s["model_age"] for s in states}
            result["lease_verbs"] = sorted({v for v, _ in emulator.verbs})
    result["learner_capacity"] = await asyncio.to_thread(learner_capacity)
    result["load_average_after"] = os.getloadavg()
    return result


async def _one_learner(rs: Any) -> bool:
    return len(await rs.learners()) == 1


async def _all_at_least(rs: Any, n: int) -> bool:
    return all([await rs.outcomes(p) >= n for p in rs.procs])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--replicas", type=int, default=3)
    p.add_argument("--connections", type=int, default=8, help="wrk connections per replica")
    p.add_argument("--duration", type=float, default=8.0)
    p.add_argument("--json", default=None)
    args = p.parse_args()
    result = asyncio.run(main_async(args))
    text = json.dumps(result, indent=2, default=str)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
