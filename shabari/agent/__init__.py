"""Sizing policies: the learning Shabari agent and the simple baselines, behind one protocol.

Drivers (simulator, gateway, demo) use `Policy.decide(ctx)` then `Policy.learn(ctx, decision,
outcome)` with the same `ctx`; `make_policy(name, seed)` builds a policy by its fixed name.
Only `shabari.agent.vw` imports Vowpal Wabbit. See docs/agent.md.
"""

from __future__ import annotations

from shabari.agent.evidence import EvidenceConfig
from shabari.agent.memory import MemoryConfig, QuantileMemoryModel
from shabari.agent.policy import PHASES, LearningPolicy, LearningState, Phase, Policy
from shabari.agent.shabari_agent import AgentConfig, ShabariAgent
from shabari.agent.simple import RandomPolicy, StaticDefault, StaticMax
from shabari.agent.vw import VWConfig
from shabari.core.errors import ConfigError

#: the policies this package implements, by their fixed names
POLICY_NAMES = ("shabari", "static-max", "static-default", "random")


def make_policy(name: str, seed: int = 0, id_prefix: str | None = None) -> Policy:
    """The policy called `name` (one of POLICY_NAMES), seeded where it draws randomness;
    `id_prefix` starts its decision ids (default: derived from the name and seed)."""
    if name == "shabari":
        return ShabariAgent(seed, id_prefix=id_prefix)
    if name == "static-max":
        return StaticMax(id_prefix)
    if name == "static-default":
        return StaticDefault(id_prefix)
    if name == "random":
        return RandomPolicy(seed, id_prefix)
    raise ConfigError(f"unknown policy {name!r}; known here: {', '.join(POLICY_NAMES)}")


__all__ = [
    "PHASES",
    "POLICY_NAMES",
    "AgentConfig",
    "EvidenceConfig",
    "LearningPolicy",
    "LearningState",
    "MemoryConfig",
    "Phase",
    "Policy",
    "QuantileMemoryModel",
    "RandomPolicy",
    "ShabariAgent",
    "StaticDefault",
    "StaticMax",
    "VWConfig",
    "make_policy",
]
