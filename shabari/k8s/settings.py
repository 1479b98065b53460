"""Operator settings, read once from the environment the Helm chart sets.

Kept apart from the handlers so the pure reconciliation and the tests can build settings
without kopf, and so every knob is documented in one place (docs/operator.md).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from shabari.core.errors import ConfigError, SpecError
from shabari.core.units import parse_cpu, parse_memory
from shabari.k8s.sizing import DefaultSizes

DEFAULT_REGISTRY_CONFIGMAP = "shabari-functions"
REGISTRY_KEY = "functions.yaml"


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in {"1", "true", "yes", "on"}:
        return True
    if raw.lower() in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number of seconds, got {raw!r}") from None
    if not value > 0:
        raise ConfigError(f"{name} must be > 0, got {raw!r}")
    return value


def _quantity(env: Mapping[str, str], name: str, default: int, parse: Any) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(parse(raw))
    except SpecError as exc:
        raise ConfigError(f"{name}: {exc.reason}") from None


def _default_sizes(env: Mapping[str, str]) -> DefaultSizes:
    d = DefaultSizes()
    try:
        return DefaultSizes(
            min_cpu=_quantity(env, "SHABARI_DEFAULT_MIN_CPU", d.min_cpu, parse_cpu),
            max_cpu=_quantity(env, "SHABARI_DEFAULT_MAX_CPU", d.max_cpu, parse_cpu),
            min_memory=_quantity(env, "SHABARI_DEFAULT_MIN_MEMORY", d.min_memory, parse_memory),
            max_memory=_quantity(env, "SHABARI_DEFAULT_MAX_MEMORY", d.max_memory, parse_memory),
        )
    except SpecError as exc:
        raise ConfigError(f"SHABARI_DEFAULT_*: {exc.reason}") from None


@dataclass(frozen=True, slots=True)
class OperatorSettings:
    """Where the registry goes, where the gateway is, and which modes are enabled."""

    #: namespace of the registry ConfigMap (the operator's own namespace)
    namespace: str = "default"
    #: ConfigMap whose data[`functions.yaml`] is the gateway's `--config` document
    registry_configmap: str = DEFAULT_REGISTRY_CONFIGMAP
    #: base URL of the gateway (`GET /functions` statistics); empty: not configured
    gateway_url: str = ""
    #: how often the statistics are read back into each policy's status
    stats_interval_s: float = 30.0
    #: retry period of a policy whose target does not exist yet
    retry_s: float = 30.0
    #: may the operator patch targets so their pods allow CPU resize without restart?
    inplace_enabled: bool = True
    #: may the operator create Knative Configurations and Routes for the Variants mode?
    variants_enabled: bool = True
    #: bounds of the grids derived for policies without sizes (chart operator.defaultSizes)
    default_sizes: DefaultSizes = field(default_factory=DefaultSizes)
    #: functions in this namespace keep their plain name at the gateway (sizing.function_name)
    home_namespace: str = "default"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> OperatorSettings:
        env = os.environ if env is None else env
        return cls(
            namespace=env.get("SHABARI_NAMESPACE") or env.get("POD_NAMESPACE") or "default",
            registry_configmap=env.get("SHABARI_REGISTRY_CONFIGMAP") or DEFAULT_REGISTRY_CONFIGMAP,
            gateway_url=(env.get("SHABARI_GATEWAY_URL") or "").rstrip("/"),
            stats_interval_s=_seconds(env, "SHABARI_STATS_INTERVAL_S", 30.0),
            retry_s=_seconds(env, "SHABARI_RETRY_S", 30.0),
            inplace_enabled=_flag(env, "SHABARI_INPLACE", True),
            variants_enabled=_flag(env, "SHABARI_VARIANTS", True),
            default_sizes=_default_sizes(env),
            home_namespace=env.get("SHABARI_HOME_NAMESPACE") or "default",
        )
