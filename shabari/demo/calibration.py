"""Calibrate the demo on this machine, now: every input measured at every CPU size of the menu.

Why: a shared 2-core machine is faster or slower from one hour to the next, so SLO bounds written
in advance would be met by every size on a quiet machine and by none on a busy one. The demo
measures first, under the same conditions the policies will see, and derives everything from
that one table (DESIGN 4.4, `DIR/calibration/perf.csv`): the slowdown SLO's base (the input's
best median latency over the grid), the absolute SLOs' `latencyMs`, the oracle's choice per input
and the Power-Tuning trade-off chart.

How: one static gateway per CPU size of the menu (its grid is that one CPU at the largest
memory, so `static-max` runs exactly it), all started through the public CLI and driven over
HTTP like the policies; sizes are visited in turn for each input (the same background load for
all sizes of an input), one request at a time. Peak memory and CPU seconds come from each
gateway's decision log (what the cgroup measured).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from shabari.core import format_cpu, format_memory, parse_cpu
from shabari.data.perf import PerfRow
from shabari.demo.plan import largest_memory_mib
from shabari.demo.replay import Progress, Sample, closed_loop
from shabari.gateway.decisionlog import read_decision_log
from shabari.gateway.process import GatewayProcess
from shabari.runtime.catalog import BundledFunction, GeneratedInput


async def start_all(gws: Sequence[GatewayProcess]) -> None:
    """Start gateways side by side. When one fails, the others still finish starting and the
    first error is raised, so the caller's `finally` stops every one (none is left running)."""
    results = await asyncio.gather(*(asyncio.to_thread(g.start) for g in gws),
                                   return_exceptions=True)
    for r in results:
        if isinstance(r, BaseException):
            raise r


def _config(path: Path, fns: Mapping[str, BundledFunction], cpu: int,
            cpu_shares: int | None) -> None:
    mem = format_memory(largest_memory_mib())
    backend = {} if cpu_shares is None else {"backend": {"cpu_shares": cpu_shares}}
    doc = {**backend, "functions": {name: {"directory": str(f.directory), "featurizer": {
        "type": f.spec.featurizer, "options": dict(f.spec.featurizer_options)},
        "slo": {"slowdown": 1.5}, "sizes": {"cpu": [format_cpu(cpu)], "memory": [mem]},
        "gpuCapable": False} for name, f in fns.items()}}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc, sort_keys=True))


async def calibrate(
    out: Path, fns: Mapping[str, BundledFunction],
    inputs: Sequence[tuple[Mapping[str, Sequence[GeneratedInput]], Sequence[str], int]],
    features: Mapping[tuple[str, str], Mapping[str, float]], show: bool,
    cpu_shares: int | None = None, gateway_args: Sequence[str] = (),
) -> list[PerfRow]:
    """Measure input sets: (inputs by function, CPU sizes to measure, repeats) triples.

    Returns the table's rows (every run a sample; failed runs with ok=False).
    """
    cpus = sorted({parse_cpu(c) for _, sizes, _ in inputs for c in sizes}, reverse=True)
    gws: dict[int, GatewayProcess] = {}
    for cpu in cpus:
        d = out / f"cpu-{cpu}m"
        _config(d / "functions.yaml", fns, cpu, cpu_shares)
        gws[cpu] = GatewayProcess(
            ["--config", str(d / "functions.yaml"), "--policy", "static-max",
             "--state-dir", str(d), "--keep-alive", "3600", "--max-concurrent", "1",
             "--node-cpus", "64", "--node-memory-gib", "64", *gateway_args],
            log_path=d / "gateway.log")
    taken: list[tuple[int, str, str, Sample]] = []
    try:
        await start_all(list(gws.values()))
        jobs: list[tuple[int, str, GeneratedInput]] = []
        for by_fn, sizes, repeats in inputs:
            want = sorted({parse_cpu(c) for c in sizes}, reverse=True)
            for name, xs in by_fn.items():
                for r in range(repeats):
                    for i, x in enumerate(xs):
                        k = (i + r) % len(want)  # rotate which size goes first
                        jobs += [(cpu, name, x) for cpu in want[k:] + want[:k]]
        warm = [(cpu, name, min(xs, key=lambda x: len(x.body)))
                for cpu in cpus for name, xs in inputs[0][0].items()]
        progress = Progress("calibration (sizes x inputs)", len(warm) + len(jobs), show)
        for cpu, name, x in warm:  # start every pod once, not measured
            s = (await closed_loop(gws[cpu].base, [(name, x)], concurrency=1))[0]
            progress.step(s.status != 200)
        for cpu, name, x in jobs:
            s = (await closed_loop(gws[cpu].base, [(name, x)], concurrency=1))[0]
            progress.step(s.status != 200)
            taken.append((cpu, name, x.label, s))
    finally:
        await asyncio.gather(*(asyncio.to_thread(g.stop) for g in gws.values()))
    outcomes: dict[str, dict[str, Any]] = {}
    for cpu in cpus:
        for rec in read_decision_log(out / f"cpu-{cpu}m" / "decisions.jsonl"):
            if rec.get("decision_id"):
                outcomes[str(rec["decision_id"])] = rec
    rows: list[PerfRow] = []
    failed = 0
    mem = largest_memory_mib()
    for cpu, name, label, s in taken:
        rec = outcomes.get(s.decision_id or "", {})
        o = rec.get("outcome") or {}
        busy_s = max(float(o.get("latency_ms") or 0.0) - float(o.get("cold_start_ms") or 0.0),
                     0.0) / 1000.0
        cpu_s = float(o.get("cpu_seconds") or 0.0)
        ok = s.status == 200
        failed += not ok
        rows.append(PerfRow(
            name, label, cpu, mem, s.latency_ms, ok, features[(name, label)],
            peak_memory_mib=float(o["peak_memory_mib"]) if o.get("peak_memory_mib") else None,
            cpu_used_millicores=cpu_s / busy_s * 1000.0 if cpu_s > 0 and busy_s > 0 else None))
    if failed:
        print(f"  calibration: {failed} run(s) failed (kept as ok=0 samples)", file=sys.stderr)
    return rows
