"""What one function's invocations have shown, per input class: full-information evidence.

A bandit learns only the cost of the size it tried. An outcome says much more: at CPU `c` an
invocation ran `e` ms and used `u` millicores (CPU seconds / run time) and `p` MiB at peak.
Under a work-conserving CPU cap (CFS quota, what every backend here enforces) that predicts the
run time at every other CPU of the grid (Lachesis' hindsight labels, MLArchSys'23):

* uncapped (`u` clearly below `c`): the input needs `u`, so at `c'` it runs `e * max(1, u/c')`;
* capped (`u` ~ `c`): the input needs at least `c`; at a smaller `c'` it runs `e * c/c'`,
  at a larger `c'` somewhere between `e * c/c'` and `e` (more CPU never slows it down);
* no CPU reading (OpenWhisk, stripped tables): at a smaller `c'` between `e` and `e * c/c'`,
  at a larger one between `e * c/c'` and `e`;
* peak memory is the same at every size (the grid only caps it).

So every arm of an input class (`Bin`) carries a lower and an upper estimate of its run time:
direct observations at that arm (log-mean and mean absolute deviation, so noise widens the
upper estimate), else the tightest projection from the arms that were observed. The agent
picks the cheapest arm whose upper estimate meets the SLO ("sure"), and explores only where
the evidence leaves a cheaper arm possible but unproven (`lb <= SLO < ub`). Without peak
readings (OpenWhisk, stripped tables) memory is learned from ok/OOM alone: each class keeps the
smallest memory that ran and the largest that was killed, and probes one grid step down after
a few clean runs, so it ends within one step of the smallest safe memory after at most one OOM
per step.

Plain floats in lists and dicts: a function with a few input classes is a few KiB, and the
state is JSON (checkpoints, no pickle).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from shabari.core.errors import ConfigError
from shabari.core.spec import FunctionSpec, Size


@dataclass(frozen=True, slots=True)
class Action:
    """One arm: a CPU/GPU pair and the grid sizes (by memory) that share it."""

    cpu_millicores: int
    gpu: int
    #: sizes with this CPU/GPU, ascending memory
    sizes: tuple[Size, ...]

    def size_for(self, memory_mib: float | None) -> Size:
        """Smallest size of this arm with at least `memory_mib` (largest when None or none)."""
        if memory_mib is not None:
            for s in self.sizes:
                if s.memory_mib >= memory_mib:
                    return s
        return self.sizes[-1]

    def step_below(self, memory_mib: int) -> int | None:
        """The next smaller memory of this arm below `memory_mib`, or None."""
        below = [s.memory_mib for s in self.sizes if s.memory_mib < memory_mib]
        return below[-1] if below else None


def actions_for(spec: FunctionSpec) -> tuple[Action, ...]:
    """The arms of `spec`'s grid in ascending (GPU, CPU) order."""
    groups: dict[tuple[int, int], list[Size]] = {}
    for s in spec.sizes:
        groups.setdefault((s.gpu, s.cpu_millicores), []).append(s)
    return tuple(Action(cpu, gpu, tuple(sorted(sizes, key=lambda s: s.memory_mib)))
                 for (gpu, cpu), sizes in sorted(groups.items()))


def arm_of(actions: Sequence[Action], size: Size) -> int:
    """The index of the arm with `size`'s CPU and GPU (-1: none, a size of another grid)."""
    for i, a in enumerate(actions):
        if a.cpu_millicores == size.cpu_millicores and a.gpu == size.gpu:
            return i
    return -1


def action_key(actions: Sequence[Action]) -> list[list[int]]:
    return [[a.cpu_millicores, a.gpu] for a in actions]


@dataclass(frozen=True, slots=True)
class EvidenceConfig:
    #: upper estimate = log-mean + `spread_k` x spread (mean absolute deviation of ln run time)
    spread_k: float = 1.5
    #: spread assumed for an arm seen once (divided by the number of observations)
    prior_spread: float = 0.10
    #: a run that used at least this fraction of its CPU limit counts as CPU-capped
    capped_fraction: float = 0.9
    #: observations after which the running means stop averaging and start tracking
    window: int = 20
    #: headroom over a peak reading
    memory_margin: float = 0.05
    #: clean runs at a class's smallest ok memory before probing one step lower (no peaks)
    memory_probe_after: int = 2

    def __post_init__(self) -> None:
        if self.spread_k < 0 or self.prior_spread < 0:
            raise ConfigError("spread_k and prior_spread must be >= 0")
        if not 0 < self.capped_fraction <= 1:
            raise ConfigError(f"capped_fraction must be in (0, 1], got {self.capped_fraction}")
        if self.window < 1 or self.memory_probe_after < 1:
            raise ConfigError("window and memory_probe_after must be >= 1")
        if self.memory_margin < 0:
            raise ConfigError(f"memory_margin must be >= 0, got {self.memory_margin}")


class Bin:
    """Evidence about one input class of one function (see the module docstring)."""

    __slots__ = ("d", "lb", "ls", "m", "mem_ok", "mem_ok_runs", "mem_oom", "n", "peak", "pn",
                 "ub", "uf", "w")

    def __init__(self, k: int) -> None:
        #: direct observations per arm: count, log-mean, mean abs deviation, used fraction
        #: of the CPU limit (-1: no CPU reading there yet)
        self.n = [0] * k
        self.m = [0.0] * k
        self.d = [0.0] * k
        self.uf = [-1.0] * k
        #: run-time estimates per arm (ms), refreshed after every observation
        self.lb = [0.0] * k
        self.ub = [math.inf] * k
        #: highest peak reading (MiB; 0 = none)
        self.peak = 0.0
        #: smallest memory that ran ok / largest that was OOM-killed (MiB; 0 = none)
        self.mem_ok = 0
        self.mem_oom = 0
        self.mem_ok_runs = 0
        #: where the class lies: runs placed, log-mean work coordinate of its inputs
        #: (`work_of`) and log-mean SLO they were judged against (`place`)
        self.pn = 0
        self.w = 0.0
        self.ls = 0.0

    @property
    def observed(self) -> bool:
        return any(self.n)

    def observe(self, arm: int, exec_ms: float, used_fraction: float | None,
                cfg: EvidenceConfig) -> None:
        """One run of `exec_ms` at arm `arm` that used `used_fraction` of its CPU (None: the
        platform reports no CPU time)."""
        x = math.log(max(exec_ms, 0.01))
        n = self.n[arm] + 1
        self.n[arm] = n
        w = 1.0 / min(n, cfg.window)
        if used_fraction is not None:
            uf = self.uf[arm]
            self.uf[arm] = used_fraction if uf < 0 else uf + w * (used_fraction - uf)
        if n == 1:
            self.m[arm] = x
            self.d[arm] = 0.0
            return
        dev = abs(x - self.m[arm])
        self.m[arm] += w * (x - self.m[arm])
        self.d[arm] += w * (dev - self.d[arm])

    def place(self, work: float, slo_ms: float, cfg: EvidenceConfig) -> None:
        """A run of an input at `work` (`work_of`) judged against `slo_ms` (finite, > 0)."""
        self.pn += 1
        a = 1.0 / min(self.pn, cfg.window)
        self.w += a * (work - self.w)
        self.ls += a * (math.log(slo_ms) - self.ls)

    def scaled(self, factor: float) -> Bin:
        """A copy whose run-time estimates are `factor` times this class's (the evidence of a
        neighbouring class, read for an input expected to run `factor` x as long). Its memory
        is not copied: a heavier input by the work coordinate is not always one that needs
        more memory (measured: copying it OOM-killed 20x more runs on the vSwarm day)."""
        k = len(self.n)
        out = Bin(k)
        out.n = list(self.n)
        out.lb = [v * factor for v in self.lb]
        out.ub = [v * factor for v in self.ub]
        return out

    def refresh(self, actions: Sequence[Action], cfg: EvidenceConfig) -> None:
        """Recompute every arm's (lb, ub) run-time estimate from the direct observations."""
        k = len(actions)
        n, m = self.n, self.m
        lb, ub = self.lb, self.ub
        exp = math.exp
        direct = [i for i in range(k) if n[i]]
        for i in direct:
            spread = max(self.d[i], cfg.prior_spread / n[i])
            lb[i] = exp(m[i])
            ub[i] = exp(m[i] + cfg.spread_k * spread)
        capped_at = cfg.capped_fraction
        for j in range(k):
            if n[j]:
                continue
            aj = actions[j]
            lo, hi = 0.0, math.inf
            for i in direct:
                ai = actions[i]
                if ai.gpu != aj.gpu:
                    continue
                ci, cj = ai.cpu_millicores, aj.cpu_millicores
                uf = self.uf[i]
                if 0 <= uf < capped_at:  # uncapped: the input needs uf * ci
                    f = max(1.0, uf * ci / cj)
                    p_lo, p_hi = lb[i] * f, ub[i] * f
                elif cj < ci:  # capped: exactly ci/cj slower; no reading: at most that
                    p_lo, p_hi = lb[i] * (ci / cj if uf >= 0 else 1.0), ub[i] * ci / cj
                else:  # more CPU: at most ci/cj faster, never slower
                    p_lo, p_hi = lb[i] * ci / cj, ub[i]
                lo = max(lo, p_lo)
                hi = min(hi, p_hi)
            lb[j] = lo
            ub[j] = max(hi, lo)

    def learn_oom(self, memory_mib: int) -> None:
        """A run was OOM-killed at `memory_mib`."""
        self.mem_oom = max(self.mem_oom, memory_mib)
        if self.mem_ok and self.mem_ok <= memory_mib:
            self.mem_ok = 0
        self.mem_ok_runs = 0
        if 0 < self.peak <= memory_mib:
            self.peak = memory_mib * 1.01  # the reading was wrong: the limit was not enough

    def learn_ok(self, memory_mib: int) -> None:
        """A run without a peak reading completed at `memory_mib`."""
        if not self.mem_ok or memory_mib < self.mem_ok:
            self.mem_ok = memory_mib
            self.mem_ok_runs = 1
        elif memory_mib == self.mem_ok:
            self.mem_ok_runs += 1

    def memory_need(self, cfg: EvidenceConfig) -> float | None:
        """MiB this class needs (None: nothing known yet)."""
        if self.peak > 0:
            need = self.peak * (1.0 + cfg.memory_margin)
            return max(need, self.mem_oom + 1.0) if self.mem_oom else need
        if self.mem_ok:
            return float(self.mem_ok)
        if self.mem_oom:
            return self.mem_oom + 1.0
        return None

    def to_json(self) -> list[Any]:
        return [self.n, self.m, self.d, self.uf, self.peak, self.mem_ok, self.mem_oom,
                self.mem_ok_runs, self.pn, self.w, self.ls]

    @classmethod
    def from_json(cls, data: Sequence[Any], actions: Sequence[Action],
                  cfg: EvidenceConfig) -> Bin:
        k = len(actions)
        b = cls(k)
        if len(data) not in (8, 11):
            raise ValueError(f"a class has 8 or 11 fields, got {len(data)}")
        n, m, d, uf, peak, mem_ok, mem_oom, runs = data[:8]
        if len(data) == 11:  # (checkpoints before classes were placed have 8)
            b.pn = int(data[8])
            b.w = float(data[9])
            b.ls = float(data[10])
            if b.pn < 0 or not (math.isfinite(b.w) and math.isfinite(b.ls)):
                raise ValueError("impossible class placement")
        if not (len(n) == len(m) == len(d) == len(uf) == k):
            raise ValueError("bin arrays do not match the number of arms")
        b.n = [int(v) for v in n]
        b.m = [float(v) for v in m]
        b.d = [float(v) for v in d]
        b.uf = [float(v) for v in uf]
        b.peak = float(peak)
        b.mem_ok = int(mem_ok)
        b.mem_oom = int(mem_oom)
        b.mem_ok_runs = int(runs)
        b.refresh(actions, cfg)
        return b


def work_of(scaled: Mapping[str, float]) -> float:
    """An input's work coordinate: the sum of its log-scaled features. Run time grows with
    input size, and size features (bytes, pixels, duration, rows) dominate the sum, so of two
    inputs of one function the one with the larger coordinate is the heavier one."""
    return sum(scaled.values())


def bin_key(scaled: Mapping[str, float], resolution: float) -> str:
    """The input class of an input: each log-scaled feature floored at `resolution` bins per
    unit of ln (2 = a new class every factor of about 1.65 in the raw value)."""
    if not scaled:
        return "*"
    floor = math.floor
    return " ".join(f"{k}{floor(v * resolution)}" for k, v in sorted(scaled.items()))
