"""Pure helpers for what a policy does not spell out: its size grid and its function name.

One SLO annotation is enough (DESIGN 4.8). Without `sizes` or `resourcePolicy` the grid is
derived from the target container's own requests and limits and the chart's defaults
(`operator.defaultSizes`): doubling steps from the chart's minimum up to the container's
limit (its request, or the chart's maximum, when it has no limit), plus the container's own
size, which becomes the policy's `defaultSize` (the safe start, and the size every
invocation runs at in `Recommend` mode). A Service with limits cpu 2 / memory 1Gi and the
chart's defaults gets cpu 250m, 500m, 1, 2 x memory 128Mi, 256Mi, 512Mi, 1Gi.

A function's identity includes its namespace (DESIGN 4.3). Gateway function names must stay
DNS-1123 labels, so `function_name` maps (namespace, name) onto one label: the plain name in
the operator's home namespace for functions (`default` unless the chart says otherwise), and
`<name>--<namespace>` elsewhere; a pair that would not be unambiguous or would not fit 63
characters becomes `<prefix>--h<8 hex digits of sha256("namespace/name")>`. The mapping is
injective for every pair of valid Kubernetes names whose namespace is not itself of the form
`h<8 hex digits>`.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from shabari.core.errors import SpecError
from shabari.core.units import format_cpu, format_memory, parse_cpu, parse_memory
from shabari.k8s.types import WorkloadBody

#: the longest DNS-1123 label (gateway names are checked by core.specdict.check_function_name)
MAX_LABEL = 63
SEPARATOR = "--"


@dataclass(frozen=True, slots=True)
class DefaultSizes:
    """The chart's bounds for derived grids (`operator.defaultSizes`)."""

    min_cpu: int = 250
    max_cpu: int = 2000
    min_memory: int = 128
    max_memory: int = 2048

    def __post_init__(self) -> None:
        if self.min_cpu > self.max_cpu:
            raise SpecError("minCpu exceeds maxCpu", field="defaultSizes")
        if self.min_memory > self.max_memory:
            raise SpecError("minMemory exceeds maxMemory", field="defaultSizes")


@dataclass(frozen=True, slots=True)
class ContainerResources:
    """The target container's own requests and limits (None where unset)."""

    container: str
    cpu_request: int | None = None
    cpu_limit: int | None = None
    memory_request: int | None = None
    memory_limit: int | None = None


def target_container(workload: WorkloadBody) -> ContainerResources:
    """Requests and limits of the workload's first container (Knative's user container).

    Raises `SpecError` (field `resources`) when a quantity cannot be read.
    """
    containers = workload.get("spec", {}).get("template", {}).get("spec", {}).get(
        "containers") or []
    if not containers:
        return ContainerResources(container="")
    c = containers[0]
    res: Mapping[str, Any] = c.get("resources") or {}
    requests: Mapping[str, Any] = res.get("requests") or {}
    limits: Mapping[str, Any] = res.get("limits") or {}
    name = c.get("name", "")

    def read(values: Mapping[str, Any], key: str, parse: Any, where: str) -> int | None:
        if values.get(key) is None:
            return None
        try:
            return int(parse(values[key]))
        except SpecError as exc:
            raise SpecError(f"container {name!r}: {exc.reason}",
                            field=f"resources.{where}.{key}") from None

    return ContainerResources(
        container=name,
        cpu_request=read(requests, "cpu", parse_cpu, "requests"),
        cpu_limit=read(limits, "cpu", parse_cpu, "limits"),
        memory_request=read(requests, "memory", parse_memory, "requests"),
        memory_limit=read(limits, "memory", parse_memory, "limits"),
    )


def _steps(lo: int, hi: int, own: int) -> list[int]:
    """Doubling steps from `lo` up to `hi`, plus `hi` and the container's own value."""
    lo = min(lo, hi)
    values = {hi, own}
    v = lo
    while v < hi:
        values.add(v)
        v *= 2
    return sorted(values)


def derived_sizes(resources: ContainerResources, defaults: DefaultSizes) -> dict[str, Any]:
    """`sizes` and `defaultSize` (shared spec schema) for a policy that names neither.

    Upper bound: the container's limit, else the larger of its request and the chart's
    maximum. The container's own size (limit, else request, else the upper bound) is always
    in the grid and is the default size.
    """
    cpu_hi = resources.cpu_limit or max(resources.cpu_request or 0, defaults.max_cpu)
    mem_hi = resources.memory_limit or max(resources.memory_request or 0, defaults.max_memory)
    cpu_own = resources.cpu_limit or resources.cpu_request or cpu_hi
    mem_own = resources.memory_limit or resources.memory_request or mem_hi
    cpus = _steps(defaults.min_cpu, cpu_hi, cpu_own)
    mems = _steps(defaults.min_memory, mem_hi, mem_own)
    return {
        "sizes": {"cpu": [format_cpu(c) for c in cpus],
                  "memory": [format_memory(m) for m in mems]},
        "defaultSize": {"cpu": format_cpu(cpu_own), "memory": format_memory(mem_own)},
    }


def needs_derived_sizes(spec: Mapping[str, Any]) -> bool:
    return "sizes" not in spec and "resourcePolicy" not in spec


def function_name(namespace: str, name: str, home_namespace: str = "default") -> str:
    """The gateway function name of policy target `name` in `namespace` (see module doc)."""
    if not namespace or (namespace == home_namespace and SEPARATOR not in name):
        return name
    qualified = f"{name}{SEPARATOR}{namespace}"
    if (SEPARATOR not in name and SEPARATOR not in namespace
            and len(qualified) <= MAX_LABEL and not _hashed_shape(namespace)):
        return qualified
    digest = hashlib.sha256(f"{namespace}/{name}".encode()).hexdigest()[:8]
    suffix = f"{SEPARATOR}h{digest}"
    prefix = name.replace(SEPARATOR, "-")[: MAX_LABEL - len(suffix)].rstrip("-") or "f"
    return prefix + suffix


def _hashed_shape(namespace: str) -> bool:
    return bool(re.fullmatch(r"h[0-9a-f]{8}", namespace))
