"""What a function is allowed to be sized to, and what it must achieve.

A `FunctionSpec` is built from a gateway YAML config, a FunctionSizingPolicy, Knative
annotations or a performance table; all of them go through the same validation here so the
errors read the same wherever the spec came from.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from shabari.core.errors import SpecError
from shabari.core.ids import FunctionName

#: Below this a Python worker cannot even start; a grid that offers less is a config error.
MEMORY_FLOOR_MIB = 64


@dataclass(frozen=True, order=True, slots=True)
class Size:
    """One point of a function's size grid: CPU millicores x memory MiB x GPUs."""

    cpu_millicores: int
    memory_mib: int
    gpu: int = 0

    def __post_init__(self) -> None:
        if self.cpu_millicores <= 0:
            raise SpecError(f"must be positive, got {self.cpu_millicores}", field="cpu")
        if self.memory_mib <= 0:
            raise SpecError(f"must be positive, got {self.memory_mib}", field="memory")
        if self.gpu < 0:
            raise SpecError(f"must be >= 0, got {self.gpu}", field="gpu")

    @property
    def vcpu(self) -> float:
        return self.cpu_millicores / 1000.0

    @property
    def memory_gib(self) -> float:
        return self.memory_mib / 1024.0

    def to_dict(self) -> dict[str, int]:
        """The JSON form every record and API answer uses (DESIGN 4.x: snake_case keys)."""
        return {"cpu_millicores": self.cpu_millicores, "memory_mib": self.memory_mib,
                "gpu": self.gpu}

    def with_cpu(self, cpu_millicores: int) -> Size:
        return Size(cpu_millicores, self.memory_mib, self.gpu)

    def with_memory(self, memory_mib: int) -> Size:
        return Size(self.cpu_millicores, memory_mib, self.gpu)

    def __str__(self) -> str:
        gpu = f",gpu={self.gpu}" if self.gpu else ""
        return f"cpu={self.cpu_millicores}m,mem={self.memory_mib}Mi{gpu}"


@dataclass(frozen=True, slots=True)
class SLO:
    """Latency objective: an absolute bound, or a slowdown over the input's best latency.

    Exactly one of the two is set. With `slowdown`, the bound of one invocation is
    `slowdown x` the best median latency its input achieves over the grid (DESIGN 4.5); the
    component that knows that best latency (the simulator's table, the gateway's estimate)
    resolves it through `bound_ms`.
    """

    latency_ms: float | None = None
    slowdown: float | None = None

    def __post_init__(self) -> None:
        if (self.latency_ms is None) == (self.slowdown is None):
            raise SpecError("set exactly one of latencyMs and slowdown", field="slo")
        if self.latency_ms is not None and not self.latency_ms > 0:
            raise SpecError(f"must be > 0, got {self.latency_ms}", field="slo.latencyMs")
        if self.slowdown is not None and not self.slowdown >= 1.0:
            raise SpecError(f"must be >= 1.0, got {self.slowdown}", field="slo.slowdown")

    def bound_ms(self, best_latency_ms: float | None = None) -> float:
        if self.latency_ms is not None:
            return self.latency_ms
        assert self.slowdown is not None
        if best_latency_ms is None or best_latency_ms <= 0:
            raise SpecError("a slowdown SLO needs the input's best latency", field="slo")
        return self.slowdown * best_latency_ms


#: how a function's sizes are applied (DESIGN 4.8); `Recommend` decides and learns but runs
#: every invocation at the function's own size (`FunctionSpec.own_size`)
MODES = ("InPlace", "Variants", "Recommend", "Off")


@dataclass(frozen=True, slots=True)
class Exploration:
    """Bounds on the learning policy's exploration (the CRD's `spec.exploration`).

    `enabled=False`: always the size the model estimates best (probability 1).
    `warmup_invocations`: outcomes at the safe size before the model decides (None: the
    policy's own default). `rate`: at most this share of decisions deviate from the best
    size (None: the policy's own exploration).
    """

    enabled: bool = True
    warmup_invocations: int | None = None
    rate: float | None = None

    def __post_init__(self) -> None:
        if self.warmup_invocations is not None and self.warmup_invocations < 0:
            raise SpecError(f"must be >= 0, got {self.warmup_invocations}",
                            field="exploration.warmupInvocations")
        if self.rate is not None and not 0.0 <= self.rate <= 1.0:
            raise SpecError(f"must be in [0, 1], got {self.rate}", field="exploration.rate")


def size_grid(
    cpu_millicores: Iterable[int], memory_mib: Iterable[int], gpu: Iterable[int] = (0,)
) -> tuple[Size, ...]:
    """The cross product, sorted (smallest CPU first): the usual way to declare a grid."""
    mems = list(memory_mib)
    gpus = list(gpu)
    return tuple(sorted(Size(c, m, g) for c in cpu_millicores for m in mems for g in gpus))


@dataclass(frozen=True, slots=True)
class FunctionSpec:
    """Everything the decision logic needs to know about one function."""

    name: FunctionName
    slo: SLO
    sizes: tuple[Size, ...]
    featurizer: str = "auto"
    featurizer_options: Mapping[str, object] = field(default_factory=lambda: MappingProxyType({}))
    gpu_capable: bool = False
    default_size: Size | None = None
    memory_floor_mib: int = MEMORY_FLOOR_MIB
    #: one of MODES; only `Recommend` changes what the gateway runs
    mode: str = "InPlace"
    exploration: Exploration = field(default_factory=Exploration)
    #: derived once in __post_init__ (read on every decision and every cost)
    _largest: Size = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.name or not isinstance(self.name, str):
            raise SpecError("must be a non-empty string", field="name")
        if not self.sizes:
            raise SpecError("size grid is empty", field="sizes")
        seen: set[Size] = set()
        for s in self.sizes:
            if s in seen:
                raise SpecError(f"duplicate size {s}", field="sizes")
            seen.add(s)
            if s.memory_mib < self.memory_floor_mib:
                raise SpecError(
                    f"memory {s.memory_mib}Mi is below the floor of {self.memory_floor_mib}Mi",
                    field="sizes.memory",
                )
            if s.gpu and not self.gpu_capable:
                raise SpecError(
                    f"size {s} has a GPU but the function is not GPU-capable", field="sizes.gpu"
                )
        if self.mode not in MODES:
            raise SpecError(f"must be one of {', '.join(MODES)}, got {self.mode!r}",
                            field="mode")
        if self.default_size is not None and self.default_size not in seen:
            raise SpecError(f"default size {self.default_size} is not in the grid",
                            field="defaultSize")
        object.__setattr__(self, "sizes", tuple(sorted(self.sizes)))
        object.__setattr__(self, "_largest", max(
            self.sizes, key=lambda s: (s.cpu_millicores, s.memory_mib, s.gpu)))
        object.__setattr__(
            self, "featurizer_options", MappingProxyType(dict(self.featurizer_options))
        )

    @property
    def largest(self) -> Size:
        """The safe size: most CPU, then most memory, then most GPU."""
        return self._largest

    @property
    def safe_default(self) -> Size:
        return self.default_size if self.default_size is not None else self.largest

    @property
    def recommend_only(self) -> bool:
        """Recommend mode: decide and learn, but run every invocation at `safe_default`
        (the target's own size, which the operator sets as the default size)."""
        return self.mode == "Recommend"

    @property
    def cpu_options(self) -> tuple[int, ...]:
        return tuple(sorted({s.cpu_millicores for s in self.sizes}))

    @property
    def memory_options(self) -> tuple[int, ...]:
        return tuple(sorted({s.memory_mib for s in self.sizes}))

    @property
    def gpu_options(self) -> tuple[int, ...]:
        return tuple(sorted({s.gpu for s in self.sizes}))

    def check_featurizer(self, known: Collection[str]) -> None:
        """Raise `SpecError` if the featurizer kind is not one of `known` (featurizers.kinds())."""
        if self.featurizer not in known:
            raise SpecError(
                f"unknown featurizer {self.featurizer!r}; known: {', '.join(sorted(known))}",
                field="featurizer",
            )
