"""The simulation result: the exact JSON of DESIGN 4.5, a readable table, optional plots."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from shabari.sim.engine import PolicyResult

__all__ = ["format_table", "to_json", "write_json", "write_plots"]


def to_json(trace: str, seed: int, slo_slowdown: float,
            results: Mapping[str, PolicyResult]) -> dict[str, Any]:
    return {
        "trace": trace,
        "seed": seed,
        "slo_slowdown": slo_slowdown,
        "policies": {name: r.to_json() for name, r in results.items()},
    }


def write_json(doc: Mapping[str, Any], path: str | Path) -> None:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2, sort_keys=False) + "\n")


def format_table(doc: Mapping[str, Any]) -> str:
    """One row per policy; ratios against the oracle when it ran."""
    pols: Mapping[str, Mapping[str, Any]] = doc["policies"]
    oracle = pols.get("oracle")
    # waste columns (DESIGN 4.5) only when the table measured usage
    waste = [(k, h) for k, h in (("wasted_vcpus_p50", "waste vCPU"),
                                 ("wasted_memory_mib_p50", "waste MiB"))
             if any(k in p for p in pols.values())]
    head = (f"{'policy':<15}{'invocations':>12}{'SLO viol.':>10}{'fail':>7}{'cold':>8}"
            f"{'p50 ms':>10}{'p99 ms':>11}{'vCPU-s':>13}{'x oracle':>9}{'GiB-s':>13}"
            f"{'idle vCPU-s':>13}" + "".join(f"{h:>11}" for _, h in waste)
            + f"{'dec us p50':>11}{'wall s':>8}")
    lines = [f"trace {doc['trace']}  seed {doc['seed']}  SLO slowdown {doc['slo_slowdown']}",
             head, "-" * len(head)]
    for name, p in pols.items():
        ratio = ""
        if oracle and oracle["allocated_vcpu_seconds"] > 0:
            ratio = f"{p['allocated_vcpu_seconds'] / oracle['allocated_vcpu_seconds']:.2f}"
        lines.append(
            f"{name:<15}{p['invocations']:>12}{100 * p['slo_violation_rate']:>9.2f}%"
            f"{p['failures']:>7}{p['cold_starts']:>8}{p['latency_ms']['p50']:>10.1f}"
            f"{p['latency_ms']['p99']:>11.1f}{p['allocated_vcpu_seconds']:>13.0f}{ratio:>9}"
            f"{p['allocated_memory_gib_seconds']:>13.0f}{p['idle_vcpu_seconds']:>13.0f}"
            + "".join(f"{p[k]:>11.2f}" if k in p else f"{'-':>11}" for k, _ in waste)
            + f"{p['decision_us']['p50']:>11.1f}{p['wall_seconds']:>8.1f}")
    return "\n".join(lines)


def write_plots(doc: Mapping[str, Any], directory: str | Path) -> list[Path]:
    """Bar charts of violation rate and allocated vCPU-seconds per policy (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    pols: Mapping[str, Mapping[str, Any]] = doc["policies"]
    names = list(pols)
    written: list[Path] = []
    for key, label, scale in (("slo_violation_rate", "SLO violation rate (%)", 100.0),
                              ("allocated_vcpu_seconds", "allocated vCPU-seconds", 1.0),
                              ("idle_vcpu_seconds", "idle vCPU-seconds", 1.0)):
        fig, ax = plt.subplots(figsize=(7, 3.5))
        ax.bar(names, [scale * float(pols[n][key]) for n in names], color="#4878a8")
        ax.set_ylabel(label)
        ax.set_title(f"{label} - {doc['trace']}")
        ax.tick_params(axis="x", rotation=30)
        fig.tight_layout()
        path = out / f"{key}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written
