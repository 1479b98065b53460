"""The Shabari paper's headline table from `shabari simulate --json` outputs (prints, asserts nothing).

The paper reports, for Shabari against each of Aquatope, Parrotfish and Cypress: the SLO
violation reduction (%), the median wasted vCPUs and the median wasted-memory reduction (%).
This reads one JSON per (table, seed), each with the `shabari` policy and the peers, and
prints that table in Markdown plus the goal of issue #11 for each JSON: shabari's violations
<= 0.89x each peer's, its median wasted memory <= 0.36x each peer's, its median wasted vCPUs
no more than the least of the peers'.

    .venv/bin/python bench/headline.py LABEL=out.json [LABEL=out.json ...]
        [--peers aquatope,parrotfish,cypress]

(docs/results.md, "The seed paper's headline" has the commands that made the JSONs.)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

PAPER_VIOLATION_RATIO = 0.89  # 11% fewer violations than the closest peer
PAPER_MEMORY_RATIO = 0.36  # 64% less wasted memory than the closest peer


def reduction(ours: float, theirs: float) -> str:
    """Reduction of `ours` against `theirs` in % (negative: ours is higher)."""
    if theirs == 0:
        return "n/a (peer 0)" if ours > 0 else "0% (both 0)"
    return f"{100.0 * (theirs - ours) / theirs:.0f}%"


def rows(label: str, doc: dict[str, Any], peers: list[str]) -> tuple[list[str], list[str]]:
    pols = doc["policies"]
    me = pols["shabari"]
    table: list[str] = []
    checks: list[str] = []
    ok_v = ok_m = True
    for peer in peers:
        p = pols[peer]
        table.append(
            f"| {label} | `{peer}` | {100 * p['slo_violation_rate']:.2f}% -> "
            f"{100 * me['slo_violation_rate']:.2f}% | "
            f"{reduction(me['slo_violations'], p['slo_violations'])} | "
            f"{p.get('wasted_vcpus_p50', '-')} -> {me.get('wasted_vcpus_p50', '-')} | "
            f"{p.get('wasted_memory_mib_p50', '-')} -> {me.get('wasted_memory_mib_p50', '-')} | "
            f"{reduction(me.get('wasted_memory_mib_p50', 0.0), p.get('wasted_memory_mib_p50', 0.0))} |")
        ok_v &= me["slo_violations"] <= PAPER_VIOLATION_RATIO * p["slo_violations"]
        ok_m &= me.get("wasted_memory_mib_p50", 0.0) <= (
            PAPER_MEMORY_RATIO * p.get("wasted_memory_mib_p50", 0.0))
    least_cpu = min(pols[p].get("wasted_vcpus_p50", 0.0) for p in peers)
    ok_c = me.get("wasted_vcpus_p50", 0.0) <= least_cpu

    def verdict(ok: bool) -> str:
        return "MET" if ok else "NOT MET"

    checks.append(f"| {label} | {verdict(ok_v)} | {verdict(ok_m)} | {verdict(ok_c)} |")
    if "oracle" in pols:
        o = pols["oracle"]
        checks[-1] += (f" oracle: {100 * o['slo_violation_rate']:.2f}% violations, "
                       f"{o.get('wasted_vcpus_p50', '-')} vCPU, "
                       f"{o.get('wasted_memory_mib_p50', '-')} MiB |")
    return table, checks


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="LABEL=path/to/simulate.json")
    ap.add_argument("--peers", default="aquatope,parrotfish,cypress")
    args = ap.parse_args(argv)
    peers = [p for p in args.peers.split(",") if p]
    table = ["| run | peer | SLO violations (peer -> shabari) | violation reduction | "
             "median wasted vCPUs (peer -> shabari) | median wasted MiB (peer -> shabari) | "
             "wasted-memory reduction |", "|---|---|---:|---:|---:|---:|---:|"]
    checks = ["| run | violations <= 0.89x each peer | wasted memory <= 0.36x each peer | "
              "wasted vCPUs <= least peer's | the oracle (physical limit) |",
              "|---|---|---|---|---|"]
    for run in args.runs:
        label, _, path = run.partition("=")
        doc = json.loads(Path(path).read_text())
        t, c = rows(label, doc, peers)
        table += t
        checks += c
    print("\n".join(table))
    print()
    print("\n".join(checks))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
