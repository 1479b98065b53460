"""Learning quality across seeds and agent settings (a measurement script, not a test).

    .venv/bin/python tests/agent/agent_sweep.py [--seeds 10] [--gamma-scale 10 20] [--tiles 2]
    .venv/bin/python tests/agent/agent_sweep.py --variant default trust_steps=None

Prints, per setting, the worst SLO-violation rate and the mean/max vCPU ratio to the oracle
over the last 500 of 2,000 invocations of the synthetic function of test_agent_quality.py.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from agent_synthetic import SyntheticFunction
from test_agent_quality import replay

from shabari.agent import AgentConfig, VWConfig


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--gamma-scale", type=float, nargs="+", default=[10.0])
    p.add_argument("--tiles", type=float, nargs="+", default=[2.0])
    p.add_argument("--variant", nargs="+", default=[],
                   help="'default' or AgentConfig overrides 'field=literal,...'")
    args = p.parse_args()
    fn = SyntheticFunction()
    settings: list[tuple[str, AgentConfig]] = []
    for text in args.variant:
        overrides = {} if text == "default" else {
            k.strip(): ast.literal_eval(v.strip())
            for k, _, v in (part.partition("=") for part in text.split(","))}
        settings.append((text, dataclasses.replace(AgentConfig(), **overrides)))
    if not settings:
        settings = [(f"gamma_scale={gamma:g} tiles={tiles:g}",
                     AgentConfig(tiles=tiles, vw=VWConfig(gamma_scale=gamma)))
                    for gamma in args.gamma_scale for tiles in args.tiles]
    for label, cfg in settings:
        viol, ratio = [], []
        for seed in range(1, args.seeds + 1):
            last = replay(seed, config=cfg)[-500:]
            viol.append(sum(1 for r in last if not r.outcome.ok
                            or r.outcome.latency_ms > r.slo_ms) / len(last))
            ratio.append(sum(r.size.vcpu for r in last)
                         / sum(fn.oracle_cpu(r.mb) / 1000 for r in last))
        print(f"{label}: violations max {max(viol):.3f}, "
              f"vCPU/oracle mean {sum(ratio) / len(ratio):.3f} max {max(ratio):.3f}")


if __name__ == "__main__":
    main()
