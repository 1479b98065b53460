"""`shabari demo`: the main job a new user runs first (DESIGN 4.2).

It starts the real gateway (`shabari gateway`, a child process) with the local backend and a
few bundled functions, replays the bundled trace (traces/demo.csv) with real generated inputs
over real HTTP to a fresh gateway per policy (shabari, static-max, static-default, one after
another), shows progress, prints a
comparison table and writes DIR/summary.json (DESIGN 4.5 per-policy schema) and
DIR/report.html with PNG plots.

Honesty rules the demo follows:
- Every policy sees the same arrivals and the same inputs (seeded), on a fresh gateway that
  has the machine to itself: the local node's capacity is the machine's real cores, so the
  cgroup limits a policy sets are CPU it really gets (an overcommitted node would let a
  "2 vCPU" pod share two cores with everything else, and allocation would mean nothing).
- SLO bounds (slowdown x the input's best latency) come from a calibration run before the
  policies: every replay and training input measured alone, warm, at the largest size
  (CALIBRATION_REPEATS runs each; the median counts), written as a performance table
  that every policy's gateway reads.
- The shabari agent is trained before the measured replay by a warm-up phase through the same
  gateway (real invocations of *different* generated inputs, same seed family); the warm-up is
  reported (`warmup_invocations`, the learning curve) and not counted in the comparison. The
  static policies get a short warm-up too, so every policy starts the replay with warm pods.
- Latency is measured by the HTTP client; allocation is the cgroup limits set on the pod times
  the time the invocation held it (the gateway's decision log); idle allocation is what warm
  pods held while serving nothing (the gateway's pool ledger).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from shabari.core import ConfigError, spec_to_mapping
from shabari.data.perf import PerfRow, write_perf_table
from shabari.data.traces import load_invocations
from shabari.demo.replay import Progress, Sample, closed_loop, replay
from shabari.demo.report import PolicyRun, comparison_table, summarize, verdict, write_report
from shabari.demo.trace import DEMO_FUNCTIONS
from shabari.gateway.decisionlog import read_decision_log
from shabari.gateway.process import GatewayProcess
from shabari.runtime.catalog import BundledFunction, GeneratedInput, bundled_functions

DEFAULT_POLICIES = ("shabari", "static-max", "static-default")
#: trace minutes replayed by default, and the replay speed-up over trace time
#: (3 trace minutes at 4x: 45 s of arrivals per policy)
DEFAULT_MINUTES = 3.0
SPEEDUP = 4.0
#: generated inputs per function for the replay, and for the warm-up (a different seed)
INPUTS_PER_FUNCTION = 14
#: warm-up invocations per function: the agent's training (shabari) / pod warm-up (static)
TRAIN_PER_FUNCTION = 90
WARM_PER_FUNCTION = 2
#: the demo's SLO: this x the input's best latency measured alone. The bundled specs say 1.5
#: (DESIGN 4.5's simulation default), but on a shared 2-core machine two invocations running
#: at once already double each other's latency, so 1.5x the alone latency is missed by every
#: size (measured: >= 90% violations for all three policies, 100% during the agent's safe
#: start at the default size); 2.5x leaves room for that contention and keeps the SLO a
#: constraint that the right size meets and a too-small one misses.
SLO_SLOWDOWN = 2.5
#: calibration runs per input (the median counts, as in DESIGN 4.5)
CALIBRATION_REPEATS = 3
#: no input above this many bytes (see select_inputs)
MAX_INPUT_BYTES = 1_500_000


def trace_path() -> Path:
    return Path(__file__).resolve().parents[2] / "traces" / "demo.csv"


def select_inputs(fn: BundledFunction, seed: int, n: int) -> list[GeneratedInput]:
    """Medium inputs: of `n` generated ones, drop the smallest quarter (tens of milliseconds
    of work, where a few milliseconds of scheduling jitter on a shared 2-core box decide the
    SLO whatever the size) and the largest fifth (seconds of work: too heavy for the box at
    trace rates), and anything above MAX_INPUT_BYTES."""
    raw = sorted(fn.generate_inputs(seed, n), key=lambda x: len(x.body))
    lo, hi = len(raw) // 4, max(len(raw) // 4 + 1, (len(raw) * 4) // 5)
    keep = [x for x in raw[lo:hi] if len(x.body) <= MAX_INPUT_BYTES]
    return keep or raw[:1]


def write_functions_config(path: Path, fns: dict[str, BundledFunction],
                           perf_table: Path | None = None) -> None:
    extra = {} if perf_table is None else {"perfTable": str(perf_table.resolve())}
    doc = {"functions": {name: {**spec_to_mapping(f.spec), "directory": str(f.directory),
                                "slo": {"slowdown": SLO_SLOWDOWN}, **extra}
                         for name, f in fns.items()}}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc, sort_keys=True))


def _interleave(inputs: dict[str, list[GeneratedInput]], per_function: int
                ) -> list[tuple[str, GeneratedInput]]:
    jobs: list[tuple[str, GeneratedInput]] = []
    for i in range(per_function):
        for name, xs in inputs.items():
            jobs.append((name, xs[i % len(xs)]))
    return jobs


async def calibrate(
    report: Path, config: Path, sets: list[tuple[dict[str, list[GeneratedInput]], int]],
    fns: dict[str, BundledFunction], show: bool,
) -> tuple[Path, list[dict[str, list[GeneratedInput]]]]:
    """Measure inputs alone, warm, at the largest size: each input's best latency.

    `sets` are (inputs, repeats) pairs; every run is a sample of the table, whose best median
    latency over the grid is what DESIGN 4.5 calls the input's best latency. The result is a
    performance table (DESIGN 4.4) the
    gateway of every policy reads to resolve the slowdown SLO per input, so all policies are
    judged against the same bounds and the agent trains against accurate ones. Inputs that
    fail even at the largest size are dropped (reported), since no size would help them.
    """
    import featurizers

    state = report / "calibration"
    gw = GatewayProcess(["--config", str(config), "--policy", "static-max",
                         "--max-concurrent", "1"],
                        log_path=state / "gateway.log")
    await asyncio.to_thread(gw.start)
    rows: list[PerfRow] = []
    kept_sets: list[dict[str, list[GeneratedInput]]] = []
    try:
        total = sum(len(fns) + sum(len(v) for v in inputs.values()) * rep
                    for inputs, rep in sets)
        progress = Progress("calibration (alone, largest)", total, show)
        for inputs, repeats in sets:
            kept: dict[str, list[GeneratedInput]] = {}
            for name, xs in inputs.items():
                warm = await closed_loop(gw.base, [(name, xs[0])], concurrency=1)
                progress.step(warm[0].status != 200)
                runs: list[list[Sample]] = [[] for _ in xs]
                for _ in range(repeats):
                    for i, run in enumerate(await closed_loop(
                            gw.base, [(name, x) for x in xs], concurrency=1)):
                        progress.step(run.status != 200)
                        runs[i].append(run)
                kept[name] = []
                spec = fns[name].spec
                for x, rs in zip(xs, runs, strict=True):
                    ok = [r for r in rs if r.status == 200 and r.cpu_millicores is not None
                          and r.memory_mib is not None]
                    if len(ok) < len(rs):
                        continue
                    kept[name].append(x)
                    feats = featurizers.extract(x.body, x.content_type, spec.featurizer,
                                                spec.featurizer_options)
                    for r in ok:  # every run is a sample; the table's median is the best
                        assert r.cpu_millicores is not None and r.memory_mib is not None
                        rows.append(PerfRow(name, x.label, r.cpu_millicores, r.memory_mib,
                                            r.latency_ms, True, feats))
            dropped = sum(len(inputs[n]) - len(kept[n]) for n in inputs)
            if dropped:
                print(f"  calibration: {dropped} input(s) failed at the largest size and "
                      "were dropped", file=sys.stderr)
            kept_sets.append({n: v for n, v in kept.items() if v})
    finally:
        await asyncio.to_thread(gw.stop)
    path = state / "perf.csv"
    write_perf_table(rows, path)
    return path, kept_sets


def _fresh_dir(path: Path) -> Path:
    if path.exists():
        for f in sorted(path.rglob("*"), reverse=True):
            if f.is_file():
                f.unlink()
    path.mkdir(parents=True, exist_ok=True)
    return path


async def run_policy(
    policy: str, *, report: Path, config: Path, arrivals: Any,
    replay_inputs: dict[str, list[GeneratedInput]],
    train_inputs: dict[str, list[GeneratedInput]], seed: int, show: bool,
) -> PolicyRun:
    """A fresh gateway for `policy`: training (shabari) or pod warm-up, then the replay.

    Policies run one after another, each alone on the machine: the local node is this
    machine's real capacity, so the cgroup limits a policy sets are CPU it really gets.
    """
    state = _fresh_dir(report / policy)
    gw = GatewayProcess(
        ["--config", str(config), "--policy", policy, "--seed", str(seed),
         "--state-dir", str(state), "--keep-alive", "60", "--max-concurrent", "4"],
        log_path=state / "gateway.log")
    await asyncio.to_thread(gw.start)
    try:
        per_fn = TRAIN_PER_FUNCTION if policy == "shabari" else WARM_PER_FUNCTION
        jobs = _interleave(train_inputs, per_fn)
        label = f"{policy}: training" if policy == "shabari" else f"{policy}: warm-up"
        t_warm = time.monotonic()
        warm = await closed_loop(gw.base, jobs, concurrency=2,
                                 progress=Progress(label, len(jobs), show))
        before = await gw.aget_json("/stats")
        t0 = time.monotonic()
        samples = await replay(gw.base, arrivals, replay_inputs, seed=seed, speedup=SPEEDUP,
                               progress=Progress(f"{policy}: replay", len(arrivals), show))
        wall = time.monotonic() - t0
        print(f"  {label} {t0 - t_warm:.0f}s ({len(jobs)} invocations), replay {wall:.0f}s",
              file=sys.stderr)
        after = await gw.aget_json("/stats")
        functions = await gw.aget_json("/functions")
    finally:
        code = await asyncio.to_thread(gw.stop)
    if code not in (0, -15):
        print(f"warning: gateway for {policy} exited with code {code}", file=sys.stderr)
    records = read_decision_log(state / "decisions.jsonl")
    return PolicyRun(policy, samples, records, before, after, functions, wall, len(warm),
                     extra={"warmup_failures": sum(1 for s in warm if s.status != 200)})


def _samples_json(samples: list[Sample]) -> list[dict[str, Any]]:
    return [{"function": s.function, "input": s.input_label, "status": s.status,
             "latency_ms": round(s.latency_ms, 3), "slo_ms": s.slo_ms,
             "cpu_millicores": s.cpu_millicores, "memory_mib": s.memory_mib,
             "cold_start": s.cold_start, "decision_id": s.decision_id, "error": s.error}
            for s in samples]


def run(args: argparse.Namespace) -> int:
    report = Path(args.report)
    seed = int(args.seed)
    policies = list(args.policies or DEFAULT_POLICIES)
    show = not getattr(args, "no_progress", False)
    catalog = bundled_functions()
    names = [n for n in DEMO_FUNCTIONS if n in catalog]
    if not names:
        raise ConfigError("none of the demo's functions is bundled",
                          detail=f"need {', '.join(DEMO_FUNCTIONS)}")
    fns = {n: catalog[n] for n in names}
    minutes = args.minutes if args.minutes is not None else DEFAULT_MINUTES
    trace = load_invocations(trace_path(), minutes=minutes)
    arrivals = [a for a in trace.arrivals if a.function in fns]
    if not arrivals:
        raise ConfigError(f"{trace_path()}: no arrivals for {', '.join(names)}")
    print(f"shabari demo: {len(arrivals)} invocations of {', '.join(names)} from "
          f"{trace_path().name} ({trace.duration_s / 60:.1f} trace minutes at {SPEEDUP:g}x), "
          f"policies {', '.join(policies)}", file=sys.stderr)
    t_gen = time.monotonic()
    replay_inputs = {n: select_inputs(f, seed, INPUTS_PER_FUNCTION) for n, f in fns.items()}
    train_inputs = {n: select_inputs(f, seed + 7919, INPUTS_PER_FUNCTION)
                    for n, f in fns.items()}
    print(f"  generated inputs in {time.monotonic() - t_gen:.1f}s", file=sys.stderr)
    t_all = time.monotonic()
    config = report / "functions.yaml"
    write_functions_config(config, fns)
    t_cal = time.monotonic()
    table, (replay_inputs, train_inputs) = asyncio.run(calibrate(
        report, config, [(replay_inputs, CALIBRATION_REPEATS), (train_inputs, CALIBRATION_REPEATS)],
        fns, show))
    print(f"  calibration {time.monotonic() - t_cal:.0f}s", file=sys.stderr)
    arrivals = [a for a in arrivals if a.function in replay_inputs]
    train_inputs = {n: v for n, v in train_inputs.items() if n in replay_inputs}
    write_functions_config(config, fns, table)
    runs = [asyncio.run(run_policy(
        p, report=report, config=config, arrivals=arrivals, replay_inputs=replay_inputs,
        train_inputs=train_inputs, seed=seed, show=show)) for p in policies]
    per_policy = {r.policy: summarize(r) for r in runs}
    summary: dict[str, Any] = {
        "trace": str(trace_path().name),
        "seed": seed,
        "slo_slowdown": SLO_SLOWDOWN,
        "functions": names,
        "speedup": SPEEDUP,
        "node": "this machine (local backend default capacity)",
        "slo_basis": "slowdown x the input's latency measured alone, warm, at the largest size "
                     "(calibration/perf.csv)",
        "policies": per_policy,
        "total_wall_seconds": time.monotonic() - t_all,
    }
    text = comparison_table(per_policy)
    note = verdict(per_policy)
    summary["verdict"] = note
    report.mkdir(parents=True, exist_ok=True)
    (report / "summary.json").write_text(json.dumps(summary, indent=2))
    for r in runs:
        (report / r.policy / "samples.json").write_text(json.dumps(_samples_json(r.samples)))
    page = write_report(report, summary, runs, text, note)
    print(text)
    print(note)
    print(f"report: {page}  summary: {report / 'summary.json'}")
    return 0
