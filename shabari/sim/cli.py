"""`shabari simulate` and `shabari trace synth` (DESIGN 4.2): argument handling only."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from shabari.core import ConfigError, DataFormatError
from shabari.data.perf import PerfRow, PerfTable, load_perf_tables, read_perf_rows
from shabari.data.synth import synthesize
from shabari.data.traces import load_trace, write_invocations
from shabari.data.vswarm import load_vswarm_rows
from shabari.sim.engine import PolicyResult, SimConfig, Workload, run_policy
from shabari.sim.policies import POLICY_NAMES, make_policy
from shabari.sim.report import format_table, to_json, write_json, write_plots

__all__ = ["load_perf_sources", "run", "simulate"]


def load_perf_sources(paths: Sequence[str | Path], *, strip_usage: bool = False
                      ) -> PerfTable:
    """Performance tables (CSV, DESIGN 4.4) and vSwarm profiles (`.json`) merged into one.

    `strip_usage` drops the peak-memory and CPU-used readings, as a platform without them
    (OpenWhisk) would show the agent: the simulator then reports no usage to any policy.
    """
    csvs = [p for p in paths if not str(p).endswith(".json")]
    rows: list[PerfRow] = []
    for p in paths:
        if str(p).endswith(".json"):
            rows.extend(load_vswarm_rows(p))
    if not rows and not strip_usage:
        return load_perf_tables(csvs)
    if csvs:
        csv_table_rows = [r for c in csvs for r in read_perf_rows(c)]
        names = {r.function for r in rows}
        clash = names & {r.function for r in csv_table_rows}
        if clash:
            raise DataFormatError(f"function(s) {', '.join(sorted(clash))} defined twice")
        rows.extend(csv_table_rows)
    if strip_usage:
        rows = [dataclasses.replace(r, peak_memory_mib=None, cpu_used_millicores=None)
                for r in rows]
    return PerfTable(rows, source=",".join(str(p) for p in paths))


def simulate(work: Workload, policies: Sequence[str], *, verbose: bool = False,
             keep_per_invocation: bool = False) -> dict[str, PolicyResult]:
    """Run each policy over the same workload; results in the order given."""
    results: dict[str, PolicyResult] = {}
    for name in policies:
        policy = make_policy(name, work)
        if verbose:
            print(f"  {name}: simulating {len(work)} invocations ...", file=sys.stderr,
                  flush=True)
        results[name] = run_policy(work, policy, keep_per_invocation=keep_per_invocation)
    return results


def _run_simulate(args: argparse.Namespace) -> int:
    policies = list(args.policies) if args.policies else list(POLICY_NAMES)
    unknown = [p for p in policies if p not in POLICY_NAMES]
    if unknown:
        raise ConfigError(f"unknown policy {unknown[0]!r}; known: {', '.join(POLICY_NAMES)}")
    config = SimConfig(slo_slowdown=args.slo_slowdown, seed=args.seed, nodes=args.nodes,
                       node_vcpus=args.node_vcpus, node_memory_gib=args.node_memory_gib,
                       keep_alive_s=getattr(args, "keep_alive_s", 600.0),
                       default_cold_start_ms=getattr(args, "cold_start_ms", 1000.0),
                       resize_latency_ms=getattr(args, "resize_latency_ms", 50.0),
                       supports_resize=not getattr(args, "no_resize", False))
    t0 = time.perf_counter()
    trace = load_trace(args.trace, args.trace_format, minutes=args.minutes, seed=args.seed)
    table = load_perf_sources(args.perf, strip_usage=getattr(args, "strip_usage", False))
    work = Workload(trace, table, config)
    print(f"loaded {len(trace)} invocations of {len(trace.functions())} functions and "
          f"{len(table.functions())} table functions in {time.perf_counter() - t0:.1f} s",
          file=sys.stderr)
    results = simulate(work, policies, verbose=True)
    doc = to_json(trace.name, args.seed, args.slo_slowdown, results)
    print(format_table(doc))
    if args.json_out:
        write_json(doc, args.json_out)
    if getattr(args, "plots", None):
        for path in write_plots(doc, args.plots):
            print(f"wrote {path}", file=sys.stderr)
    return 0


def _run_synth(args: argparse.Namespace) -> int:
    trace = synthesize(args.functions, args.minutes, args.rate, args.seed)
    write_invocations(trace, args.out)
    print(f"wrote {len(trace)} invocations of {len(trace.functions())} functions to {args.out}")
    return 0


def run(args: argparse.Namespace) -> int:
    if args.command == "simulate":
        return _run_simulate(args)
    if args.command == "trace" and args.trace_command == "synth":
        return _run_synth(args)
    raise ConfigError(f"unsupported command {args.command!r}")
