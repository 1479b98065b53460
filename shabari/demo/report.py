"""Turn what the demo measured into summary.json (DESIGN 4.5 schema), a table and report.html.

Every number comes from a measurement: latency and failures from the HTTP client, sizing and
allocation from the gateway's decision log (the cgroup limits actually set on the pod times the
seconds the invocation held it), idle allocation from the gateway's pool ledger (warm pods
held while serving nothing), decision time from the gateway's own timing of featurize+decide.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shabari.demo.replay import Sample


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100); 0.0 for no values."""
    if not values:
        return 0.0
    xs = sorted(values)
    k = (len(xs) - 1) * q / 100.0
    lo, hi = math.floor(k), math.ceil(k)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


@dataclass
class PolicyRun:
    """Everything measured for one policy."""

    policy: str
    samples: list[Sample]
    records: list[dict[str, Any]]  # decision log records of this run (warm-up included)
    stats_before: dict[str, Any]
    stats_after: dict[str, Any]
    functions: list[dict[str, Any]]
    wall_seconds: float
    warmup_invocations: int
    extra: dict[str, Any] = field(default_factory=dict)

    def measured_records(self) -> list[dict[str, Any]]:
        """Decision-log records of the measured invocations, OOM-retry attempts included."""
        ids = {s.decision_id for s in self.samples if s.decision_id}
        return [r for r in self.records
                if r.get("decision_id") in ids or r.get("retry_of") in ids]


def summarize(run: PolicyRun) -> dict[str, Any]:
    s = run.samples
    lat = [x.latency_ms for x in s]
    viol = sum(1 for x in s if x.violated)
    recs = run.measured_records()
    alloc_v = alloc_g = used_v = used_g = 0.0
    for r in recs:
        held = float(r.get("held_ms") or 0.0) / 1000.0
        pod = r.get("pod_size") or {}
        alloc_v += pod.get("cpu_millicores", 0) / 1000.0 * held
        alloc_g += pod.get("memory_mib", 0) / 1024.0 * held
        out = r.get("outcome") or {}
        used_v += float(out.get("cpu_seconds") or 0.0)
        used_g += float(out.get("peak_memory_mib") or 0.0) / 1024.0 * held
    pb = run.stats_before.get("pool", {})
    pa = run.stats_after.get("pool", {})
    dec = [float(r["decision_us"]) for r in recs if r.get("decision_us") is not None]
    return {
        "invocations": len(s),
        "slo_violations": viol,
        "slo_violation_rate": viol / len(s) if s else 0.0,
        "failures": sum(1 for x in s if x.status != 200),
        "cold_starts": sum(1 for x in s if x.cold_start),
        "latency_ms": {"p50": percentile(lat, 50), "p90": percentile(lat, 90),
                       "p99": percentile(lat, 99)},
        "allocated_vcpu_seconds": alloc_v,
        "allocated_memory_gib_seconds": alloc_g,
        "idle_vcpu_seconds": pa.get("idle_vcpu_seconds", 0.0) - pb.get("idle_vcpu_seconds", 0.0),
        "idle_memory_gib_seconds": (pa.get("idle_memory_gib_seconds", 0.0)
                                    - pb.get("idle_memory_gib_seconds", 0.0)),
        "decision_us": {"p50": percentile(dec, 50), "p99": percentile(dec, 99)},
        "wall_seconds": run.wall_seconds,
        # extensions (not in the DESIGN 4.5 schema)
        "used_vcpu_seconds": used_v,
        "used_memory_gib_seconds": used_g,
        "oom_retries": sum(1 for x in s if x.retried),
        "warmup_invocations": run.warmup_invocations,
        **run.extra,
    }


_COLUMNS = (
    ("policy", "{}"), ("invocations", "{:d}"), ("SLO viol.", "{:.1%}"), ("failures", "{:d}"),
    ("cold", "{:d}"), ("p50 ms", "{:.0f}"), ("p99 ms", "{:.0f}"), ("vCPU-s", "{:.1f}"),
    ("GiB-s", "{:.1f}"), ("idle vCPU-s", "{:.1f}"), ("used vCPU-s", "{:.1f}"),
)


def _row(name: str, p: Mapping[str, Any]) -> list[str]:
    vals = [name, p["invocations"], p["slo_violation_rate"], p["failures"], p["cold_starts"],
            p["latency_ms"]["p50"], p["latency_ms"]["p99"], p["allocated_vcpu_seconds"],
            p["allocated_memory_gib_seconds"], p["idle_vcpu_seconds"], p["used_vcpu_seconds"]]
    return [fmt.format(v) for (_, fmt), v in zip(_COLUMNS, vals, strict=True)]


def comparison_table(policies: Mapping[str, Mapping[str, Any]]) -> str:
    rows = [[c for c, _ in _COLUMNS]] + [_row(n, p) for n, p in policies.items()]
    widths = [max(len(r[i]) for r in rows) for i in range(len(_COLUMNS))]
    lines = ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in
                       enumerate(zip(r, widths, strict=True))) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def verdict(policies: Mapping[str, Mapping[str, Any]]) -> str:
    """The demo's claim, checked against the numbers (never asserted: reported)."""
    if "shabari" not in policies or "static-max" not in policies:
        return "shabari vs static-max: not both run"
    a, b = policies["shabari"], policies["static-max"]
    dv = a["slo_violation_rate"] - b["slo_violation_rate"]
    cpu = a["allocated_vcpu_seconds"] / b["allocated_vcpu_seconds"] \
        if b["allocated_vcpu_seconds"] else float("nan")
    mem = a["allocated_memory_gib_seconds"] / b["allocated_memory_gib_seconds"] \
        if b["allocated_memory_gib_seconds"] else float("nan")
    ok = cpu < 1 and mem < 1 and dv <= 0.02
    return (f"shabari vs static-max: {cpu:.0%} of the vCPU-seconds, {mem:.0%} of the "
            f"memory GiB-seconds, SLO violation rate {dv * 100:+.1f} pp -> "
            f"{'claim holds' if ok else 'CLAIM DOES NOT HOLD on this run'}")


# -- plots ---------------------------------------------------------------------------------


def _plots(runs: Sequence[PolicyRun], out: Path) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made: list[tuple[str, str]] = []
    n = len(runs)

    # 1. allocation vs usage per invocation over time
    fig, axes = plt.subplots(2, n, figsize=(5 * n, 6.5), squeeze=False, sharey="row")
    for j, run in enumerate(runs):
        recs = run.measured_records()
        if not recs:
            continue
        t0 = min(r["ts"] for r in recs)
        ts = [r["ts"] - t0 for r in recs]
        held = [max(float(r.get("held_ms") or 0.0), 1e-3) / 1000.0 for r in recs]
        cpu_a = [(r.get("pod_size") or {}).get("cpu_millicores", 0) / 1000.0 for r in recs]
        cpu_u = [float((r.get("outcome") or {}).get("cpu_seconds") or 0.0) / h
                 for r, h in zip(recs, held, strict=True)]
        mem_a = [(r.get("pod_size") or {}).get("memory_mib", 0) for r in recs]
        mem_u = [float((r.get("outcome") or {}).get("peak_memory_mib") or 0.0) for r in recs]
        ax = axes[0][j]
        ax.scatter(ts, cpu_a, s=10, label="allocated vCPU", color="tab:red", alpha=0.6)
        ax.scatter(ts, cpu_u, s=10, label="used vCPU (cpu-s / held s)", color="tab:blue",
                   alpha=0.6)
        ax.set_title(run.policy)
        ax.set_ylabel("vCPU")
        ax = axes[1][j]
        ax.scatter(ts, mem_a, s=10, label="memory limit MiB", color="tab:red", alpha=0.6)
        ax.scatter(ts, mem_u, s=10, label="peak memory MiB", color="tab:blue", alpha=0.6)
        ax.set_ylabel("MiB")
        ax.set_xlabel("seconds into the replay")
    axes[0][0].legend(fontsize=8)
    axes[1][0].legend(fontsize=8)
    fig.suptitle("Allocation vs usage per invocation")
    fig.tight_layout()
    fig.savefig(out / "allocation.png", dpi=90)
    plt.close(fig)
    made.append(("allocation.png", "Allocation (cgroup limits set) vs measured usage, per "
                 "invocation over time"))

    # 2. latency vs SLO
    fig, axes2 = plt.subplots(1, n, figsize=(5 * n, 4.2), squeeze=False)
    for j, run in enumerate(runs):
        ax = axes2[0][j]
        ok = [x for x in run.samples if x.slo_ms is not None]
        good = [x for x in ok if not x.violated]
        bad = [x for x in ok if x.violated]
        ax.scatter([x.slo_ms for x in good], [x.latency_ms for x in good], s=10,
                   color="tab:green", label="met", alpha=0.6)
        ax.scatter([x.slo_ms for x in bad], [x.latency_ms for x in bad], s=10,
                   color="tab:red", label="violated", alpha=0.6)
        if ok:
            hi = max(max(x.slo_ms or 0 for x in ok), max(x.latency_ms for x in ok))
            ax.plot([1, hi], [1, hi], color="gray", lw=1, ls="--", label="latency = SLO")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("SLO (ms)")
        ax.set_ylabel("HTTP latency (ms)")
        ax.set_title(run.policy)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "latency_vs_slo.png", dpi=90)
    plt.close(fig)
    made.append(("latency_vs_slo.png", "Latency measured over HTTP vs the invocation's SLO"))

    # 3. learning curve of the agent (warm-up and measured replay, in decision order)
    learner = next((r for r in runs if r.policy == "shabari"), None)
    if learner is not None and learner.records:
        recs = [r for r in learner.records if r.get("cost") is not None]
        w = 25
        xs = list(range(len(recs)))
        cost = [float(r["cost"]) for r in recs]
        viol = [1.0 if r.get("violated") else 0.0 for r in recs]
        vcpu = [r["action"]["cpu_millicores"] / 1000.0 for r in recs]

        def roll(v: list[float]) -> list[float]:
            out_v: list[float] = []
            acc = 0.0
            for i, x in enumerate(v):
                acc += x
                if i >= w:
                    acc -= v[i - w]
                out_v.append(acc / min(i + 1, w))
            return out_v

        fig, ax = plt.subplots(figsize=(9, 4))
        ax.plot(xs, roll(cost), label=f"cost (rolling {w})")
        ax.plot(xs, roll(viol), label=f"SLO violation rate (rolling {w})")
        ax.plot(xs, roll(vcpu), label=f"decided vCPU (rolling {w})")
        if learner.warmup_invocations:
            ax.axvline(learner.warmup_invocations, color="gray", ls="--", lw=1)
            ax.text(learner.warmup_invocations, ax.get_ylim()[1] * 0.95, " replay starts",
                    fontsize=8, va="top")
        ax.set_xlabel("decision (all functions, in order)")
        ax.set_title("Learning curve of the shabari agent")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / "learning_curve.png", dpi=90)
        plt.close(fig)
        made.append(("learning_curve.png", "The shabari agent's cost, violations and decided "
                     "vCPU over its decisions (warm-up, then the measured replay)"))
    return made


def write_report(out: Path, summary: Mapping[str, Any], runs: Sequence[PolicyRun],
                 table: str, note: str) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    plots = _plots(runs, out)
    imgs = "\n".join(f'<figure><img src="{html.escape(f)}" alt="{html.escape(c)}">'
                     f"<figcaption>{html.escape(c)}</figcaption></figure>" for f, c in plots)
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Shabari demo report</title>
<style>body{{font-family:sans-serif;max-width:1400px;margin:2em auto;padding:0 1em}}
pre{{background:#f4f4f4;padding:1em;overflow-x:auto}} img{{max-width:100%}}
figure{{margin:2em 0}}</style></head><body>
<h1>Shabari demo</h1>
<p>Trace <code>{html.escape(str(summary.get("trace")))}</code>, seed {summary.get("seed")},
SLO slowdown {summary.get("slo_slowdown")} (per invocation: slowdown x the input's best
latency, measured alone at the largest size). One fresh gateway per policy, replayed one
after another through the real gateway, real worker
processes under cgroup limits, over real HTTP.</p>
<pre>{html.escape(table)}</pre>
<p>{html.escape(note)}</p>
{imgs}
<p>Raw numbers: <a href="summary.json">summary.json</a>.</p>
</body></html>
"""
    path = out / "report.html"
    path.write_text(page, encoding="utf-8")
    return path
