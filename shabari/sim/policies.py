"""The fixed policy names of DESIGN 4.5 and how the simulator builds each one.

`shabari`, `static-max` and `static-default` are the gateway's own objects (`shabari.agent`);
the baselines and the oracle live in `shabari.sim.baselines`. A fresh instance per run, so
no state leaks between policies.
"""

from __future__ import annotations

import math

from shabari.agent import Policy
from shabari.agent import make_policy as make_agent_policy
from shabari.core import ConfigError, DecisionContext, Size
from shabari.sim.aquatope import Aquatope
from shabari.sim.baselines import VPA, Oracle, Parrotfish, PowerTuning
from shabari.sim.cypress import Cypress
from shabari.sim.engine import Workload

__all__ = ["POLICY_NAMES", "make_policy"]

POLICY_NAMES = ("shabari", "static-max", "static-default", "power-tuning", "parrotfish", "vpa",
                "cypress", "aquatope", "oracle")


def make_policy(name: str, work: Workload) -> Policy:
    """A fresh policy object for `name` (one of `POLICY_NAMES`), bound to `work` if needed."""
    if name in ("shabari", "static-max", "static-default"):
        return make_agent_policy(name, work.config.seed)
    if name == "power-tuning":
        return PowerTuning()
    if name == "parrotfish":
        return Parrotfish()
    if name == "vpa":
        return VPA()
    if name == "cypress":
        return Cypress()
    if name == "aquatope":
        return Aquatope(seed=work.config.seed)
    if name == "oracle":
        table = work.table
        mapping = work.mapping

        def latency(ctx: DecisionContext, size: Size) -> float:
            i = work.current
            lat, ok = table.latency_at(mapping[ctx.spec.name], work.input_of[i], size,
                                       work.u_sample[i])
            return lat if ok else math.inf

        def cold(ctx: DecisionContext) -> float:
            return work.cold_ms[mapping[ctx.spec.name]]

        return Oracle(latency, cold, work.config.resize_latency_ms)
    raise ConfigError(f"unknown policy {name!r}; known: {', '.join(POLICY_NAMES)}")
