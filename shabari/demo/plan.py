"""The demo's design as data, and the pure arithmetic over its calibration table.

Why a module: what the demo runs (functions, the size menu, each function's SLO form, the input
range, the feature its plots use) is a set of choices docs/demo.md explains one by one; keeping
them here, with no I/O, lets tests check the arithmetic that turns a calibration table into SLO
bounds and oracle choices without starting a gateway.

The choices (docs/demo.md, "Why the demo is built this way"):
- one size menu for every function (the platform's offer), so static-max is the same
  "2 vCPU, 1 GiB" everywhere and every policy chooses from the same grid;
- static-default is a half core and 512 MiB: the size a user declares once at deploy time;
- multi-threaded functions (matmul: BLAS threads, classify: torch threads, transcode: ffmpeg
  threads) carry a slowdown SLO (1.5 x the input's best latency), the single-threaded,
  input-size-driven ones (thumbnail, markdown) an absolute `latencyMs`;
- inputs are the functions' own seeded, heavy-tailed generators, kept within a range of the
  function's work feature so the lightest still take tens of milliseconds (below that, a
  millisecond of scheduling jitter decides a relative SLO whatever the size) and the heaviest
  stay under about a second at the smallest sizes (the five-minute budget).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from shabari.core import Size
from shabari.core.units import parse_cpu, parse_memory

#: the platform's size menu, the same for every demo function
CPU_MENU = ("250m", "500m", "1", "2")
MEMORY_MENU = ("128Mi", "256Mi", "512Mi", "1Gi")
#: what a user declares once at deploy time (the static-default policy and the agent's safe start)
DEFAULT_SIZE = {"cpu": "500m", "memory": "512Mi"}
#: slowdown SLOs: bound = this x the input's best median latency over the grid (DESIGN 4.5)
SLO_SLOWDOWN = 1.5
#: absolute SLOs: latencyMs = this x the heaviest replay input's latency at the largest size,
#: rounded up to 10 ms; what a user would write after timing their heavy requests on the
#: largest size (the training set's single heaviest input may exceed it at every size)
LATENCY_HEADROOM = 1.5


@dataclass(frozen=True, slots=True)
class DemoFunction:
    """One bundled function as the demo runs it."""

    name: str
    #: "slowdown" or "latencyMs"
    slo_form: str
    #: the work feature the input range and the "what shabari chose" plot use
    feature: str
    lo: float
    hi: float
    threads: str  # how it uses more vCPUs (for the docs and plot titles)

    def work(self, features: Mapping[str, float]) -> float:
        """The function's work feature from the featurizer's output (0.0 when missing)."""
        if self.feature == "megapixel_frames":
            return float(features.get("megapixels", 0.0)) * float(features.get("frames", 0.0))
        return float(features.get(self.feature, 0.0))

    def in_range(self, features: Mapping[str, float]) -> bool:
        return self.lo <= self.work(features) <= self.hi


#: popularity order (the trace's Zipf rank): the cheap, frequent functions first
DEMO_PLAN: tuple[DemoFunction, ...] = (
    DemoFunction("thumbnail", "latencyMs", "megapixels", 0.3, 5.0, "single-threaded (Pillow)"),
    DemoFunction("compress", "slowdown", "bytes", 150_000, 1_500_000,
                 "a thread pool over blocks (lzma releases the GIL)"),
    DemoFunction("markdown", "latencyMs", "bytes", 20_000, 400_000,
                 "single-threaded (markdown-it)"),
    DemoFunction("classify", "slowdown", "megapixels", 0.15, 1.3, "torch threads"),
    DemoFunction("transcode", "slowdown", "megapixel_frames", 1.0, 40.0, "ffmpeg threads"),
)
PLAN_BY_NAME = {f.name: f for f in DEMO_PLAN}


def menu_sizes() -> tuple[Size, ...]:
    return tuple(Size(parse_cpu(c), parse_memory(m)) for c in CPU_MENU for m in MEMORY_MENU)


def largest_memory_mib() -> int:
    return max(parse_memory(m) for m in MEMORY_MENU)


def absolute_slo_ms(best_latencies_ms: Iterable[float], headroom: float = LATENCY_HEADROOM
                    ) -> float:
    """latencyMs for an absolute-SLO function: headroom x its heaviest input's best latency,
    rounded up to 10 ms (every input can meet it at the largest size)."""
    worst = max(best_latencies_ms, default=0.0)
    if worst <= 0:
        raise ValueError("no calibrated latency to set an absolute SLO from")
    return float(math.ceil(worst * headroom / 10.0) * 10)


@dataclass(frozen=True, slots=True)
class SizePoint:
    """One size of the calibration grid for one input: its median latency and peak memory."""

    cpu_millicores: int
    latency_ms: float
    peak_memory_mib: float | None


def oracle_choice(points: Sequence[SizePoint], bound_ms: float,
                  memory_menu_mib: Sequence[int]) -> tuple[int, int] | None:
    """The physical limit (DESIGN 4.5's `oracle`): the smallest CPU whose median latency meets
    `bound_ms`, and the smallest menu memory at or above the largest peak measured; None when
    no CPU meets the bound (the largest then, in practice, is what a policy should pick)."""
    ok = sorted(p.cpu_millicores for p in points if p.latency_ms <= bound_ms)
    if not ok:
        return None
    peaks = [p.peak_memory_mib for p in points if p.peak_memory_mib is not None]
    peak = max(peaks, default=0.0)
    mems = sorted(memory_menu_mib)
    mem = next((m for m in mems if m >= peak), mems[-1])
    return ok[0], mem


def allocation_cost(cpu_millicores: int, memory_mib: int, latency_ms: float
                    ) -> tuple[float, float]:
    """(vCPU-seconds, GiB-seconds) one invocation holds at this size: the Power-Tuning y-axis."""
    s = latency_ms / 1000.0
    return cpu_millicores / 1000.0 * s, memory_mib / 1024.0 * s
