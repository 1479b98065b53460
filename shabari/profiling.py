"""`shabari profile FUNCTION`: measure a bundled function at each size of a grid on this machine.

Why: the simulator replays performance tables (DESIGN 4.4) and the gateway resolves slowdown
SLOs from them, so their rows must be real measurements of the real functions under the same
limits the local backend enforces. For every size this starts a fresh pod (its cold start is
the row's `cold_start_ms`) and runs one warm-up invocation; then every generated input runs at
every size, round-robin, `--repeats` times, recording latency, peak memory, CPU actually used and OK/failed (an OOM
kill at a small memory size is a row with `ok=0`, which is exactly what the agent must learn
to avoid). `feature.*` columns come from the real featurizers, as the gateway would see them.
Tables are written with `shabari.data.perf.write_perf_table`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
from collections.abc import Mapping, Sequence

import featurizers
from shabari.backends.local import LocalBackend, machine_gpus
from shabari.core import (
    BackendError,
    NodeId,
    OutcomeStatus,
    PodId,
    Size,
    SpecError,
    UnknownFunctionError,
    parse_cpu,
    parse_memory,
)
from shabari.data.perf import PerfRow, write_perf_table
from shabari.runtime.catalog import BundledFunction, GeneratedInput, bundled_functions

__all__ = ["memory_twin_ratios", "noise_line", "parse_size_arg", "profile_function", "run",
           "summary_markdown"]

DEFAULT_TIMEOUT_S = 120.0
#: the profiled pods together weigh as much as 32 ordinary processes: other work on the machine
#: then disturbs the measurements less, while each pod's CFS quota still caps it at its size
PROFILE_CPU_SHARES = 32 * 1024


def parse_size_arg(text: str) -> Size:
    """`250m:256Mi` (optionally `:1` for one GPU) -> Size."""
    parts = text.split(":")
    if len(parts) not in (2, 3):
        raise SpecError(f"invalid size {text!r} (expected CPU:MEMORY, e.g. 250m:256Mi)",
                        field="--sizes")
    gpu = int(parts[2]) if len(parts) == 3 and parts[2].isdigit() else 0
    return Size(parse_cpu(parts[0]), parse_memory(parts[1]), gpu)


def features_of(fn: BundledFunction, inp: GeneratedInput) -> dict[str, float]:
    """The featurizer output the gateway would compute for this input (numbers only)."""
    raw = featurizers.extract(inp.body, inp.content_type, fn.spec.featurizer,
                              dict(fn.spec.featurizer_options))
    return {k: float(v) for k, v in raw.items() if isinstance(v, int | float)}


async def profile_function(
    fn: BundledFunction,
    sizes: Sequence[Size],
    inputs: Sequence[GeneratedInput],
    *,
    repeats: int = 1,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    backend: LocalBackend | None = None,
    progress: bool = True,
) -> list[PerfRow]:
    """Measure `fn` on `inputs` at every size; one row per (size, input, repeat).

    Every size has its own warm pod and the sizes are measured round-robin per input, so
    whatever else loads the machine while profiling spreads over all sizes alike instead of
    skewing whichever size happened to run at that moment.
    """
    own = backend is None
    b = backend or LocalBackend({fn.name: fn}, cpu_shares=PROFILE_CPU_SHARES)
    if own:
        await b.start()
    feats = {inp.label: features_of(fn, inp) for inp in inputs}
    warmup = min(inputs, key=lambda i: len(i.body))
    node = NodeId(b.nodes()[0].node_id)
    rows: list[PerfRow] = []
    counter = 0

    async def fresh_pod(size: Size, warm: bool = True) -> tuple[PodId | None, float | None, str]:
        nonlocal counter
        counter += 1
        pid = PodId(f"profile-{fn.name}-{counter}")
        try:
            handle = await b.start_pod(pid, fn.spec, size, node)
        except BackendError as exc:
            return None, None, str(exc)
        if warm:  # first-call costs (lazy imports, allocator warm-up) are not an input's
            try:
                await b.invoke(pid, warmup.body, warmup.content_type, timeout_s)
            except BackendError:
                if pid not in b.pod_ids():  # the warm-up killed it: start clean, cold
                    return await fresh_pod(size, warm=False)
        return pid, handle.cold_start_ms, ""

    pods: dict[Size, tuple[PodId | None, float | None, str]] = {}
    try:
        for size in sizes:
            pods[size] = await fresh_pod(size)
        for _ in range(repeats):
            for inp in inputs:
                for size in sizes:
                    pod, cold_ms, _err = pods[size]
                    if pod is None:  # cannot even start at this size (e.g. OOM at import)
                        rows.append(PerfRow(fn.name, inp.label, size.cpu_millicores,
                                            size.memory_mib, 0.0, False, feats[inp.label],
                                            size.gpu, cold_ms))
                        continue
                    rows.append(await _measure(b, fn, pod, size, inp, feats[inp.label],
                                               cold_ms, timeout_s))
                    if pod not in b.pod_ids():  # OOM/crash/timeout took the pod down
                        pods[size] = await fresh_pod(size)
        if progress:
            for size in sizes:
                _print_size(fn.name, size, [r for r in rows if r.size == size], pods[size][2])
    finally:
        for pod, _cold, _err in pods.values():
            if pod is not None:
                await b.stop_pod(pod)
        if own:
            await b.close()
    return rows


async def _measure(b: LocalBackend, fn: BundledFunction, pod: PodId, size: Size,
                   inp: GeneratedInput, feats: Mapping[str, float], cold_ms: float | None,
                   timeout_s: float) -> PerfRow:
    try:
        result = await b.invoke(pod, inp.body, inp.content_type, timeout_s)
        outcome = result.outcome
    except BackendError as exc:
        if exc.outcome is None:
            raise
        outcome = exc.outcome
    ok = outcome.status is OutcomeStatus.OK
    if outcome.status is OutcomeStatus.ERROR:
        print(f"  warning: {fn.name} raised on generated input {inp.label}: {outcome.detail}",
              file=sys.stderr)
    used = (outcome.cpu_seconds / (outcome.latency_ms / 1000.0) * 1000.0
            if ok and outcome.latency_ms > 0 else None)
    return PerfRow(fn.name, inp.label, size.cpu_millicores, size.memory_mib,
                   round(outcome.latency_ms, 3), ok, feats, size.gpu, cold_ms,
                   round(outcome.peak_memory_mib, 2) if ok else None,
                   round(used, 1) if used is not None else None)


def _print_size(name: str, size: Size, rows: list[PerfRow], error: str) -> None:
    ok = [r for r in rows if r.ok]
    med = statistics.median(r.latency_ms for r in ok) if ok else float("nan")
    cold = rows[0].cold_start_ms if rows and rows[0].cold_start_ms is not None else float("nan")
    note = f"  ({len(rows) - len(ok)} failed{': ' + error if error else ''})" \
        if len(ok) < len(rows) else ""
    print(f"  {name:10s} {size!s:24s} median {med:9.1f} ms  cold start {cold:7.0f} ms  "
          f"{len(ok)}/{len(rows)} ok{note}", file=sys.stderr, flush=True)


def summary_markdown(rows: Sequence[PerfRow]) -> str:
    """Two Markdown tables of a profile: median latency per input x CPU (at the largest memory,
    failures as `fail`), and peak memory / CPU used per input (largest size). This is what
    `shabari profile` prints and what docs/functions.md shows."""
    if not rows:
        return ""
    cpus = sorted({r.cpu_millicores for r in rows})
    mem = max(r.memory_mib for r in rows)
    inputs = list(dict.fromkeys(r.input for r in rows))
    lines = [f"Median latency (ms) at {mem}Mi by CPU allocation:", "",
             "| input | " + " | ".join(f"{c}m" for c in cpus) + " |",
             "|---|" + "---:|" * len(cpus)]
    for inp in inputs:
        cells = []
        for c in cpus:
            sample = [r for r in rows if r.input == inp and r.cpu_millicores == c
                      and r.memory_mib == mem]
            ok = [r.latency_ms for r in sample if r.ok]
            cells.append(f"{statistics.median(ok):.0f}" if ok and len(ok) * 2 >= len(sample)
                         else "fail")
        lines.append(f"| {inp} | " + " | ".join(cells) + " |")
    top_cpu = max(cpus)
    lines += ["", f"Peak memory and CPU used by input (at {top_cpu}m, {mem}Mi), and the "
              "smallest memory size that never failed:", "",
              "| input | bytes | peak memory (MiB) | CPU used (millicores) | smallest OK memory |",
              "|---|---:|---:|---:|---:|"]
    for inp in inputs:
        at_top = [r for r in rows if r.input == inp and r.cpu_millicores == top_cpu
                  and r.memory_mib == mem and r.ok]
        peak = max((r.peak_memory_mib or 0.0) for r in at_top) if at_top else float("nan")
        used = [r.cpu_used_millicores for r in at_top if r.cpu_used_millicores is not None]
        mems = sorted({r.memory_mib for r in rows if r.input == inp})
        safe = next((m for m in mems if all(r.ok for r in rows
                                            if r.input == inp and r.memory_mib == m)), None)
        nbytes = next((r.features.get("bytes") for r in rows if r.input == inp), None)
        lines.append(f"| {inp} | {nbytes or 0:.0f} | {peak:.0f} | "
                     f"{statistics.median(used) if used else float('nan'):.0f} | "
                     f"{f'{safe}Mi' if safe else 'none'} |")
    return "\n".join(lines) + "\n"


def memory_twin_ratios(rows: Sequence[PerfRow]) -> list[float]:
    """A noise yardstick for a table: for every (function, input, CPU, GPU) measured at several
    memory sizes that all succeeded, the slowest median latency over the fastest.

    Memory that is not short does not change CPU-bound latency, so these ratios should be ~1;
    what exceeds 1 is measurement noise. A slowdown SLO of 1.5x cannot be judged from cells
    whose twins differ by more than 1.5x.
    """
    cells: dict[tuple[str, str, int, int, int], list[PerfRow]] = {}
    for r in rows:
        cells.setdefault((r.function, r.input, r.cpu_millicores, r.gpu, r.memory_mib),
                         []).append(r)
    medians: dict[tuple[str, str, int, int], list[float]] = {}
    for (fn, inp, cpu, gpu, _mem), sample in cells.items():
        if all(r.ok for r in sample):
            medians.setdefault((fn, inp, cpu, gpu), []).append(
                statistics.median(r.latency_ms for r in sample))
    return sorted(max(m) / min(m) for m in medians.values() if len(m) >= 2 and min(m) > 0)


def noise_line(rows: Sequence[PerfRow]) -> str:
    """One line summarising `memory_twin_ratios` (empty when the grid has one memory size)."""
    ratios = memory_twin_ratios(rows)
    if not ratios:
        return ""
    over = sum(1 for x in ratios if x > 1.5)
    return (f"noise: median latency across memory sizes at the same CPU differs by "
            f"{statistics.median(ratios):.2f}x (median), {ratios[-1]:.2f}x (max); "
            f"{over}/{len(ratios)} (input, CPU) pairs differ by more than 1.5x")


def run(args: argparse.Namespace) -> int:
    functions = bundled_functions()
    fn = functions.get(args.function)
    if fn is None:
        raise UnknownFunctionError(f"unknown function {args.function!r}",
                                   detail=f"bundled: {', '.join(sorted(functions))}")
    if args.sizes:
        sizes = [parse_size_arg(s) for s in args.sizes]
    else:
        gpus = machine_gpus()
        sizes = [s for s in fn.spec.sizes if s.gpu <= gpus]
        skipped = len(fn.spec.sizes) - len(sizes)
        if skipped:
            print(f"note: skipping {skipped} GPU size(s): this machine has {gpus} GPU(s)",
                  file=sys.stderr)
    if args.inputs < 1 or args.repeats < 1:
        raise SpecError("--inputs and --repeats must be at least 1")
    inputs = fn.generate_inputs(args.seed, args.inputs)
    timeout = float(getattr(args, "timeout", None) or DEFAULT_TIMEOUT_S)
    print(f"profiling {fn.name}: {len(inputs)} inputs x {len(sizes)} sizes x {args.repeats} "
          f"repeat(s) -> {args.out}", file=sys.stderr)
    load_before = os.getloadavg()[0]
    rows = asyncio.run(profile_function(fn, sizes, inputs, repeats=args.repeats,
                                        timeout_s=timeout))
    write_perf_table(rows, args.out)
    # other load on the machine skews latencies: say how busy it was, next to the numbers
    print(f"wrote {len(rows)} rows to {args.out} (1-min load average {load_before:.1f} before, "
          f"{os.getloadavg()[0]:.1f} after, on {os.cpu_count()} CPUs)", file=sys.stderr)
    noise = noise_line(rows)
    if noise:
        print(noise, file=sys.stderr)
    print(summary_markdown(rows))
    return 0
