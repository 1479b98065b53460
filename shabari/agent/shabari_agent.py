"""The Shabari learning agent: per-invocation sizing from full-information evidence.

Each outcome (run time, CPU seconds used, peak memory, OOM or not) is turned into estimates for
every size of the grid, not only the one that ran (`evidence.py`): per function and input class
(`evidence.bin_key`), each CPU arm carries a lower and an upper estimate of its run time.

Deciding (`decide`):

1. The arms' overheads for this invocation from the warm pool: none on an idle pod of exactly
   that CPU, the platform's in-place resize delay (learned across functions from outcomes),
   or the function's cold start (learned from outcomes; a cross-function value until then).
2. A known class: the cheapest arm whose upper estimate plus overhead meets the SLO ("sure").
   Only when the evidence leaves a cheaper arm possible (its lower estimate meets the SLO) does
   the agent probe it, with probability `explore / (1 + runs seen there)`, logged honestly.
   With no sure arm, the cheapest arm whose middle estimate meets it (`fallback`); when the
   overheads make every arm miss (a cold start), the arm the run itself needs, so the new
   pod is the right size.
3. An unseen class lighter than one seen: the function's nearest heavier class decides
   (`_heavier`: its estimates scaled by the SLO ratio and a margin, never probing).
4. Any other unseen class: the cross-function prior (`vw.SharedPrior`, one VW model for all
   functions) predicts `ln(run time / SLO)` per arm from function-agnostic quantities; until it
   has learned enough, the declared safe default.
5. Memory: the class's peak reading plus a margin; without peak readings the smallest memory
   that ran (probing one grid step lower after a few clean runs); for a new class the
   function's quantile model of peaks (`memory.py`; for a borrowing class at most the most
   any class needs; on an idle pod that holds it without its headroom when one does) or the
   largest need of its classes.

Every random draw comes from a per-function RNG seeded from (seed, name), so the same seed and
the same calls give the same decisions. The cost of a decision (`shabari.core.cost`) orders the
arms: cheapest = fewest allocation units.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import struct
from dataclasses import dataclass, field
from typing import Any, Literal

from shabari.agent.encoding import FeatureVector
from shabari.agent.evidence import (
    Action,
    Bin,
    EvidenceConfig,
    action_key,
    actions_for,
    arm_of,
    bin_key,
    work_of,
)
from shabari.agent.memory import MemoryConfig, QuantileMemoryModel
from shabari.agent.policy import Explanation, LearningState, Phase, SizeExplanation, Verdict
from shabari.agent.vw import SharedPrior, VWConfig
from shabari.core.context import DecisionContext
from shabari.core.cost import DEFAULT_COST, CostModel, cost
from shabari.core.errors import ConfigError
from shabari.core.ids import DecisionId, FunctionName
from shabari.core.spec import FunctionSpec, Size
from shabari.core.types import Decision, Outcome, OutcomeStatus, PlacementKind

CHECKPOINT_MAGIC = b"SHABARI-AGENT-2\n"
_LEN = struct.Struct(">I")

#: warm-pool flags of an arm: an idle pod of exactly its CPU, an in-place resize, a cold start,
#: a wait behind a busy pod (its latency then holds the wait: no run-time evidence)
WARM, RESIZE, COLD, QUEUE = 0, 1, 2, 3
_FLAG = {PlacementKind.WARM: WARM, PlacementKind.RESIZE: RESIZE, PlacementKind.COLD: COLD,
         PlacementKind.QUEUE: QUEUE, PlacementKind.REJECT: COLD}

Unseen = Literal["prior", "default", "largest"]
Fallback = Literal["cheapest", "likely", "safest"]


@dataclass(frozen=True, slots=True)
class AgentConfig:
    #: outcomes at the declared safe size before the agent decides (0: from the first)
    safe_start_outcomes: int = 0
    #: outcomes after which the function's phase is reported as "learned"
    learned_after: int = 300
    #: input classes: bins per unit of ln(1 + feature)
    resolution: float = 16.0
    #: coarser classes an unseen class borrows evidence from (None: straight to the prior)
    coarse_resolution: float | None = None
    #: tile-coding resolution of the memory model's features
    tiles: float = 2.0
    #: probability of probing a cheaper arm the evidence allows but does not prove, divided
    #: by 1 + the runs already seen there (0: never probe)
    explore: float = 0.2
    #: an unseen class decides with the evidence of its function's nearest heavier class
    #: (run times scaled by the ratio of their SLOs) before asking `unseen`
    borrow: bool = True
    #: a borrowed estimate is taken this much slower (in ln: 0.25 = 28 %)
    borrow_margin: float = 0.25
    #: a borrowing class's memory need is at most the most any of the function's classes
    #: needs (the quantile model's prediction otherwise)
    borrow_memory_cap: bool = True
    #: a class without memory readings whose predicted need no idle pod has runs on an idle
    #: pod that holds the prediction without its headroom (the OOM retry covers a miss)
    memory_warm_fit: bool = True
    #: with no arm sure to meet the SLO, of the arms whose lower estimate meets it: the
    #: cheapest ("cheapest"), the cheapest whose geometric middle estimate meets it, else the
    #: "safest" ("likely"), or the one whose upper estimate is lowest ("safest")
    fallback: Fallback = "likely"
    #: what an input class nobody has seen runs at
    unseen: Unseen = "prior"
    #: examples the shared prior must have learned before it sizes unseen classes
    prior_min_updates: int = 50
    #: the prior's estimate must meet the SLO with this much room (in ln: 0.25 = 28 %)
    prior_margin: float = 0.25
    #: observations per input class taught to the shared prior
    prior_train_per_bin: int = 3
    evidence: EvidenceConfig = field(default_factory=EvidenceConfig)
    memory: MemoryConfig = field(default_factory=lambda: MemoryConfig(min_samples=3))
    vw: VWConfig = field(default_factory=VWConfig)
    cost_model: CostModel = DEFAULT_COST
    #: decisions awaiting their outcome whose encodings are kept (older ones re-encode)
    pending_limit: int = 10_000

    def __post_init__(self) -> None:
        if self.safe_start_outcomes < 0:
            raise ConfigError(f"safe_start_outcomes must be >= 0, got {self.safe_start_outcomes}")
        if self.resolution <= 0 or self.tiles <= 0:
            raise ConfigError("resolution and tiles must be > 0")
        if not 0.0 <= self.explore <= 1.0:
            raise ConfigError(f"explore must be in [0, 1], got {self.explore}")
        if self.fallback not in ("cheapest", "likely", "safest"):
            raise ConfigError(f"fallback must be cheapest, likely or safest, got {self.fallback!r}")
        if self.unseen not in ("prior", "default", "largest"):
            raise ConfigError(f"unseen must be prior, default or largest, got {self.unseen!r}")
        if self.prior_min_updates < 0 or self.prior_train_per_bin < 0:
            raise ConfigError("prior_min_updates and prior_train_per_bin must be >= 0")


class FunctionState:
    """Everything the agent knows about one function (a few KiB; JSON in checkpoints)."""

    __slots__ = ("actions", "bins", "cold_ms", "fmean", "fmean_n", "memory",
                 "model_version", "order", "outcomes", "rng", "uf_mean")

    def __init__(self, actions: tuple[Action, ...], rng: random.Random,
                 memory: QuantileMemoryModel, cost_model: CostModel) -> None:
        self.actions = actions
        #: arm indices, cheapest first
        self.order = sorted(range(len(actions)), key=lambda i: (
            cost_model.allocation_units(actions[i].sizes[0]), i))
        self.rng = rng
        self.memory = memory
        self.bins: dict[str, Bin] = {}
        self.outcomes = 0
        self.model_version = 0
        #: the function's cold start (ms; 0 = not seen yet)
        self.cold_ms = 0.0
        #: mean used fraction of the CPU limit over its runs (-1 = no run yet)
        self.uf_mean = -1.0
        #: running means of its log-scaled features (input scale relative to the function)
        self.fmean: dict[str, float] = {}
        self.fmean_n = 0

    def to_json(self, key: list[list[int]]) -> dict[str, Any]:
        state = self.rng.getstate()
        return {
            "actions": key, "outcomes": self.outcomes,
            "model_version": self.model_version, "rng": [state[0], list(state[1]), state[2]],
            "bins": {k: b.to_json() for k, b in self.bins.items()},
            "memory": self.memory.to_json(), "cold_ms": self.cold_ms, "uf_mean": self.uf_mean,
            "fmean": self.fmean, "fmean_n": self.fmean_n,
        }


@dataclass(slots=True)
class _Pending:
    """What `decide` computed that `learn` needs again."""

    features: FeatureVector
    #: the input's class and its coarse class ("" when coarse classes are off)
    key: str
    coarse: str
    #: the warm-pool flag of the chosen arm
    flag: int
    #: whether the flag is the driver's scheduler preview (`ctx.warm_fit`)
    previewed: bool = False


def _flags(ctx: DecisionContext, sizes: list[Size]) -> list[int]:
    """Each size's warm-pool flag: the scheduler's own answer (`ctx.placement_kind`, which is
    `Scheduler.preview` in the gateway and the simulator: the smallest idle memory class that
    fits, an idle pod of exactly the CPU, else a resize where its node has the CPU headroom)."""
    if not ctx.warm_idle:
        return [COLD] * len(sizes)
    return [_FLAG[ctx.placement_kind(s)] for s in sizes]


def _warmup(spec: FunctionSpec, cfg: AgentConfig) -> int:
    """Outcomes at the safe size before deciding: the spec's `exploration.warmupInvocations`
    (the FunctionSizingPolicy's), else the agent's own."""
    warmup = spec.exploration.warmup_invocations
    return cfg.safe_start_outcomes if warmup is None else warmup


def _explore(spec: FunctionSpec, cfg: AgentConfig, via: str) -> tuple[float, float]:
    """(probe rate, cap on a probe's probability) under the spec's `exploration`: disabled
    means never probe; `rate` caps the probability of any probe (so the share of
    exploratory decisions stays below it). A class deciding with a heavier class's evidence
    (`via` = `_BORROWED`) never probes: the estimates it would probe between are not its own."""
    e = spec.exploration
    if not e.enabled or via == _BORROWED:
        return 0.0, 0.0
    return cfg.explore, 1.0 if e.rate is None else e.rate


def _slo_of(ctx: DecisionContext) -> float:
    slo = ctx.slo_ms if ctx.slo_ms is not None else ctx.spec.slo.latency_ms
    if slo is None or not (slo > 0 and math.isfinite(slo)):
        return math.inf  # no bound (or a broken one from the driver): judge failures only
    return float(slo)


class ShabariAgent:
    """The `shabari` policy (implements `Policy` and `LearningPolicy`)."""

    name = "shabari"

    def __init__(self, seed: int, config: AgentConfig | None = None,
                 id_prefix: str | None = None) -> None:
        """`id_prefix` starts every decision id; the default is derived from the seed (the
        simulator's runs are reproducible), the gateway passes one unique to the process so
        ids do not repeat across restarts."""
        self.seed = seed
        self.config = config if config is not None else AgentConfig()
        self._fns: dict[FunctionName, FunctionState] = {}
        self._keys: dict[FunctionName, list[list[int]]] = {}
        self._pending: dict[DecisionId, _Pending] = {}
        self._ids = 0
        self._id_prefix = id_prefix or f"sh{random.Random(seed).getrandbits(32):08x}"
        self._prior = SharedPrior(self.config.vw)
        #: the platform's in-place resize delay (ms), learned from outcomes (None: not yet)
        self._resize_ms: float | None = None
        self._resize_samples: list[float] = []
        #: cold start across functions (ms; 0 = none seen), for functions without their own
        self._cold_prior = 0.0

    # -- state lookup ----------------------------------------------------------------------

    def _fn(self, spec: FunctionSpec) -> FunctionState:
        fs = self._fns.get(spec.name)
        if fs is not None and fs.actions:
            return fs
        actions = actions_for(spec)
        if fs is not None and self._keys.get(spec.name) == action_key(actions):
            fs.actions = actions  # a restored state meets its spec
            fs.order = sorted(range(len(actions)), key=lambda i: (
                self.config.cost_model.allocation_units(actions[i].sizes[0]), i))
            for b in fs.bins.values():
                b.refresh(actions, self.config.evidence)
            return fs
        rng = random.Random(f"{self.seed}:{spec.name}")
        fs = FunctionState(actions, rng, QuantileMemoryModel(self.config.memory),
                           self.config.cost_model)
        self._fns[spec.name] = fs
        self._keys[spec.name] = action_key(actions)
        return fs

    def _next_id(self) -> DecisionId:
        self._ids += 1
        return DecisionId(f"{self._id_prefix}-{self._ids}")

    def _phase(self, fs: FunctionState) -> Phase:
        if fs.outcomes == 0 or fs.outcomes < self.config.safe_start_outcomes:
            return "safe-start"
        if fs.outcomes < self.config.learned_after:
            return "exploring"
        return "learned"

    def _remember(self, decision_id: DecisionId, pending: _Pending) -> None:
        store = self._pending
        if len(store) >= self.config.pending_limit:
            del store[next(iter(store))]
        store[decision_id] = pending

    # -- Policy ----------------------------------------------------------------------------

    def decide(self, ctx: DecisionContext) -> Decision:
        spec = ctx.spec
        cfg = self.config
        fs = self._fn(spec)
        fv = FeatureVector.of(ctx.features, cfg.tiles)
        key, coarse = self._keys_of(fv)
        slo = _slo_of(ctx)
        b, via = self._class_of(fs, key, coarse, fv, slo)
        need, mem_note = self._memory_need(fs, b, fv, spec, via, ctx.warm_idle)
        actions = fs.actions
        decision_id = self._next_id()
        if fs.outcomes < _warmup(spec, cfg):
            safe = spec.safe_default
            index = arm_of(actions, safe)
            size = safe if need <= safe.memory_mib else actions[index].size_for(need)
            flag = _flags(ctx, [size])[0]
            self._remember(decision_id, _Pending(fv, key, coarse, flag))
            return Decision(decision_id, spec.name, size, index, 1.0, fs.model_version,
                            "safe-start", explored=False, policy=self.name)
        sizes = [a.size_for(need) for a in actions]
        flags = _flags(ctx, sizes)
        overhead = [self._overhead(fs, f) for f in flags]
        probability = 1.0
        explored = False
        if b is None or not b.observed:
            index, reason = self._unseen(ctx, fs, fv, slo, overhead, flags)
        else:
            index, probability, explored, reason = self._known(
                fs, b, slo, overhead, _explore(spec, cfg, via))
            reason += via
        size = sizes[index]
        if b is not None and b.peak <= 0 and b.mem_ok and b.mem_ok_runs >= \
                cfg.evidence.memory_probe_after:
            lower = actions[index].step_below(b.mem_ok)
            if lower is not None and lower > b.mem_oom:
                size = actions[index].size_for(lower)
                mem_note = " mem-probe"
                flags[index] = _flags(ctx, [size])[0]
        self._remember(decision_id, _Pending(fv, key, coarse, flags[index],
                                             ctx.warm_fit is not None))
        return Decision(decision_id, spec.name, size, index, probability, fs.model_version,
                        reason + mem_note, explored=explored, policy=self.name)

    def ran_at(self, ctx: DecisionContext, decision: Decision, size: Size) -> Decision:
        """`RecommendingPolicy`: the decision as run at `size` (Recommend mode). Its outcome
        is evidence for every arm (full information), so the recommendations improve too."""
        fs = self._fn(ctx.spec)
        index = arm_of(fs.actions, size)
        pending = self._pending.get(decision.decision_id)
        if pending is not None:
            self._pending[decision.decision_id] = _Pending(pending.features, pending.key,
                                                           pending.coarse, _flags(ctx, [size])[0])
        return Decision(decision.decision_id, decision.function, size, index, 1.0,
                        decision.model_version, f"recommend-only ({decision.reason})",
                        explored=False, policy=self.name)

    def explain(self, ctx: DecisionContext) -> Explanation:
        """Why `decide(ctx)` picks what it picks (`ExplainingPolicy`): the input class, each
        size's run-time estimate, overhead, expected cost and probability. Changes nothing:
        no decision id, no pending record, no random draw (a probe's probability is given)."""
        spec = ctx.spec
        cfg = self.config
        fs = self._fn(spec)  # attaches a restored model to its spec (or starts an empty one)
        fv = FeatureVector.of(ctx.features, cfg.tiles)
        key, coarse = self._keys_of(fv)
        slo = _slo_of(ctx)
        b, via = self._class_of(fs, key, coarse, fv, slo)
        need, _note = self._memory_need(fs, b, fv, spec, via, ctx.warm_idle)
        actions = fs.actions
        sizes = [a.size_for(need) for a in actions]
        flags = _flags(ctx, sizes)
        overhead = [self._overhead(fs, f) for f in flags]
        probs = [0.0] * len(actions)
        notes: list[str] = []
        if fs.outcomes < _warmup(spec, cfg):
            safe = spec.safe_default
            chosen = arm_of(actions, safe)
            probs[chosen] = 1.0
            reason = "safe-start"
            why = (f"safe start: {fs.outcomes} of {_warmup(spec, cfg)} outcomes seen, so "
                   f"the declared default {safe} runs")
        elif b is None or not b.observed:
            chosen, reason = self._unseen(ctx, fs, fv, slo, overhead, list(flags))
            probs[chosen] = 1.0
            why = (f"no input of this class has run yet ({reason}): the "
                   + ("cross-function prior's estimate" if reason.startswith("prior")
                      else "declared default") + " decides")
        else:
            chosen, probs, reason, why = self._explain_known(
                fs, b, slo, overhead, _explore(spec, cfg, via))
            if via:
                reason += via
                why += (" (no input of this class has run yet: the evidence is its function's "
                        "nearest heavier class's, scaled by their SLOs)" if via == _BORROWED
                        else " (no input of this class has run yet: its coarse class's evidence)")
        out = []
        for j, _a in enumerate(actions):
            lo = b.lb[j] if b is not None and b.observed else None
            hi = b.ub[j] if b is not None and b.observed else None
            if lo is not None and lo <= 0:
                lo = None
            if hi is not None and not math.isfinite(hi):
                hi = None
            verdict: Verdict = "unknown"
            if hi is not None and hi + overhead[j] <= slo:
                verdict = "sure"
            elif lo is not None and lo + overhead[j] <= slo:
                verdict = "possible"
            elif lo is not None:
                verdict = "misses"
            expected = None
            if lo is not None and hi is not None and math.isfinite(slo):
                mid = math.sqrt(lo * hi) + (overhead[j] if math.isfinite(overhead[j]) else 0)
                expected = cost(sizes[j], Outcome(latency_ms=mid), slo, spec.largest,
                                cfg.cost_model)
            out.append(SizeExplanation(
                size=sizes[j], probability=probs[j], latency_low_ms=lo, latency_high_ms=hi,
                overhead_ms=overhead[j] if math.isfinite(overhead[j]) else -1.0,
                cost=expected, verdict=verdict, runs=b.n[j] if b is not None else 0))
        if any(f == COLD for f in flags) and not (fs.cold_ms or self._cold_prior):
            notes.append("no cold start measured yet: sizes without an idle pod are unknown "
                         "overhead (shown as -1)")
        return Explanation(
            function=spec.name, policy=self.name, phase=self._phase(fs),
            features=dict(ctx.features), slo_ms=slo if math.isfinite(slo) else None,
            chosen=sizes[chosen], reason=reason, why=why, sizes=tuple(out), input_class=key,
            model_version=fs.model_version, notes=tuple(notes))

    def _explain_known(self, fs: FunctionState, b: Bin, slo: float, overhead: list[float],
                       explore: tuple[float, float]) -> tuple[int, list[float], str, str]:
        """`_known` without its random draw: the arm(s) it picks and with what probability."""
        k = len(fs.actions)
        probs = [0.0] * k
        lb, ub = b.lb, b.ub
        order = fs.order
        for ov, suffix in ((overhead, ""), ([0.0] * k, " (for the run)")):
            sure = next((j for j in order if ub[j] + ov[j] <= slo), None)
            if sure is None:
                opt = self._possible(fs, b, slo, ov)
                if opt is None:
                    continue
                probs[opt] = 1.0
                return opt, probs, "possible" + suffix, (
                    f"no size is sure to meet the {slo:g} ms SLO; {fs.actions[opt].cpu_millicores}m "
                    + _FALLBACK_WHY[self.config.fallback] + suffix)
            candidate = None
            for j in order:
                if j == sure:
                    break
                if lb[j] + ov[j] <= slo:
                    candidate = j
            cheaper = [fs.actions[j].cpu_millicores for j in order[:order.index(sure)]]
            why = (f"{fs.actions[sure].cpu_millicores}m is the cheapest size whose upper "
                   f"run-time estimate ({ub[sure]:.0f} ms + {ov[sure]:.0f} ms overhead) meets "
                   f"the {slo:g} ms SLO" + suffix)
            if cheaper:
                why += f"; cheaper sizes ({', '.join(f'{c}m' for c in cheaper)}) may miss it"
            rate, cap = explore
            if candidate is None or rate <= 0:
                probs[sure] = 1.0
                return sure, probs, "sure" + suffix, why
            p = min(rate / (1 + b.n[candidate]), cap)
            probs[candidate] = p
            probs[sure] = 1.0 - p
            return sure, probs, f"sure p={1.0 - p:.2f}" + suffix, (
                why + f"; {fs.actions[candidate].cpu_millicores}m could too and is probed "
                f"with probability {p:.2f}")
        j = min(order, key=lambda i: lb[i])
        probs[j] = 1.0
        return j, probs, "fastest", "every size is estimated to miss the SLO: the fastest runs"

    def _class_of(self, fs: FunctionState, key: str, coarse: str, fv: FeatureVector,
                  slo: float) -> tuple[Bin | None, str]:
        """The evidence to decide with for an input of class `key` (`_keys_of`): its class;
        else, when coarse classes are on, its observed coarse class; else, when borrowing is
        on, its function's nearest heavier class (`_heavier`); and a note saying which."""
        b = fs.bins.get(key)
        if b is not None and b.observed:
            return b, ""
        if coarse:
            cb = fs.bins.get(coarse)
            if cb is not None and cb.observed:
                return cb, " (coarse)"
        if self.config.borrow and math.isfinite(slo):
            hb = _heavier(fs, work_of(fv.scaled))
            if hb is not None:
                return hb.scaled(math.exp(math.log(slo) - hb.ls + self.config.borrow_margin)), \
                    _BORROWED
        return b, ""

    def _memory_need(self, fs: FunctionState, b: Bin | None, fv: FeatureVector,
                     spec: FunctionSpec, via: str,
                     warm_idle: tuple[Size, ...]) -> tuple[float, str]:
        """MiB to give the input, and a note when it is the declared default's."""
        cfg = self.config
        ecfg = cfg.evidence
        need = b.memory_need(ecfg) if b is not None else None
        if need is None:
            need = fs.memory.predict_mib(fv)
            if need is not None and via == _BORROWED and cfg.borrow_memory_cap:
                # lighter than a class seen: no more than the most any class needs now
                most = _most_need(fs, ecfg)
                if most is not None:
                    need = min(need, most)
            if need is not None and cfg.memory_warm_fit and warm_idle and \
                    all(w.memory_mib < need for w in warm_idle):
                raw = need / (1.0 + cfg.memory.margin)
                fits = [w.memory_mib for w in warm_idle if w.memory_mib >= raw]
                if fits:
                    return float(min(fits)), " mem=warm-fit"
        if need is None:
            # the most any of its classes needs now (without peaks: where probing is)
            need = _most_need(fs, ecfg)
        if need is None:
            return float(spec.safe_default.memory_mib), " mem=default"
        return need, ""

    def _keys_of(self, fv: FeatureVector) -> tuple[str, str]:
        cfg = self.config
        coarse = ("~" + bin_key(fv.scaled, cfg.coarse_resolution)
                  if cfg.coarse_resolution is not None else "")
        return bin_key(fv.scaled, cfg.resolution), coarse

    def _overhead(self, fs: FunctionState, flag: int) -> float:
        if flag == WARM:
            return 0.0
        if flag == RESIZE:
            return self._resize_ms or 0.0
        cold = fs.cold_ms or self._cold_prior
        return cold if cold > 0 else math.inf

    def _known(self, fs: FunctionState, b: Bin, slo: float, overhead: list[float],
               explore: tuple[float, float]) -> tuple[int, float, bool, str]:
        got = self._choose(fs, b, slo, overhead, explore)
        if got is not None:
            return got
        # the overheads (a cold start) make every arm miss: size the run itself, so the new
        # pod is the right one for what follows
        got = self._choose(fs, b, slo, [0.0] * len(overhead), explore)
        if got is not None:
            index, p, explored, reason = got
            return index, p, explored, f"{reason} (for the run)"
        lb = b.lb
        return min(fs.order, key=lambda j: lb[j]), 1.0, False, "fastest"

    def _possible(self, fs: FunctionState, b: Bin, slo: float,
                  overhead: list[float]) -> int | None:
        """With no arm sure to meet the SLO, the arm to run among those whose lower estimate
        does (`AgentConfig.fallback`); None when none does."""
        lb, ub = b.lb, b.ub
        able = [j for j in fs.order if lb[j] + overhead[j] <= slo]
        if not able:
            return None
        if self.config.fallback == "cheapest":
            return able[0]
        if self.config.fallback == "likely":
            # the cheapest whose middle estimate meets it: a projection's bounds are often
            # wide ("at most as slow as the capped run at the smaller arm")
            likely = next((j for j in able if math.isfinite(ub[j])
                           and math.sqrt(lb[j] * ub[j]) + overhead[j] <= slo), None)
            if likely is not None:
                return likely
        # the lowest upper estimate (ties: the cheaper)
        return min(able, key=lambda j: ub[j] + overhead[j])

    def _choose(self, fs: FunctionState, b: Bin, slo: float, overhead: list[float],
                explore: tuple[float, float]) -> tuple[int, float, bool, str] | None:
        """The cheapest sure arm (maybe a probe of a cheaper possible one), else the cheapest
        possible arm, else None."""
        lb, ub = b.lb, b.ub
        order = fs.order
        sure = next((j for j in order if ub[j] + overhead[j] <= slo), None)
        if sure is None:
            opt = self._possible(fs, b, slo, overhead)
            return None if opt is None else (opt, 1.0, False, "possible")
        candidate = None
        for j in order:
            if j == sure:
                break
            if lb[j] + overhead[j] <= slo:
                candidate = j
        rate, cap = explore
        if candidate is None or rate <= 0:
            return sure, 1.0, False, "sure"
        p = min(rate / (1 + b.n[candidate]), cap)
        if fs.rng.random() < p:
            return candidate, p, True, f"probe p={p:.2f}"
        return sure, 1.0 - p, False, f"sure p={1.0 - p:.2f}"

    # -- the cross-function prior ----------------------------------------------------------

    def _prior_features(self, fs: FunctionState, fv: FeatureVector, slo: float,
                        action: Action) -> str:
        parts = ["|s"]
        if math.isfinite(slo):
            x = math.log1p(slo)
            parts.append(f"l:{x / 5:.4f} l{math.floor(x * 2)}")
        if fs.uf_mean >= 0:
            parts.append(f"u:{fs.uf_mean:.3f} u{math.floor(fs.uf_mean * 4)}")
        if fs.fmean:
            rel = [v - fs.fmean.get(k, v) for k, v in fv.scaled.items()]
            r = sum(rel) / len(rel) if rel else 0.0
            parts.append(f"r:{r:.3f} r{math.floor(r * 2)}")
        parts.append(f"|a v:{math.log2(action.cpu_millicores / 1000):.3f} "
                     f"c{action.cpu_millicores}")
        if action.gpu:
            parts.append(f"g:{action.gpu}")
        return " ".join(parts)

    def _unseen(self, ctx: DecisionContext, fs: FunctionState, fv: FeatureVector, slo: float,
                overhead: list[float], flags: list[int]) -> tuple[int, str]:
        index, reason = self._unseen_arm(ctx, fs, fv, slo, overhead)
        if flags[index] != WARM:
            # nothing is known of this class: an idle pod as it is gives a clean measurement
            # and no resize or cold start; the nearest one at or above the pick, else below
            warm = [j for j in fs.order if flags[j] == WARM]
            if warm:
                cpu = fs.actions[index].cpu_millicores
                up = [j for j in warm if fs.actions[j].cpu_millicores >= cpu]
                index = up[0] if up else warm[-1]
                reason += " (warm pod)"
        return index, reason

    def _unseen_arm(self, ctx: DecisionContext, fs: FunctionState, fv: FeatureVector,
                    slo: float, overhead: list[float]) -> tuple[int, str]:
        cfg = self.config
        actions = fs.actions
        if cfg.unseen == "largest":
            return fs.order[-1], "unseen: largest"
        safe = ctx.spec.safe_default
        default = arm_of(actions, safe)
        if cfg.unseen == "default" or self._prior.updates < cfg.prior_min_updates \
                or not math.isfinite(slo):
            return default, "unseen: default"
        room = math.exp(-cfg.prior_margin)
        est = [math.exp(self._prior.predict(self._prior_features(fs, fv, slo, a))) * slo
               for a in actions]
        for j in fs.order:
            if est[j] + overhead[j] <= slo * room:
                return j, "prior"
        # the overheads (a cold start) miss anyway: the cheapest arm whose estimate meets the
        # SLO, else the fastest estimate; the run's CPU reading then sizes the class
        for j in fs.order:
            if est[j] <= slo:
                return j, "prior (for the run)"
        return min(fs.order, key=lambda j: est[j]), "prior: fastest"

    def _teach_prior(self, fs: FunctionState, b: Bin, fv: FeatureVector, slo: float,
                     arm: int, exec_ms: float, first: bool) -> None:
        """The measured arm, and on a class's first run every arm the evidence pins down."""
        prior = self._prior
        actions = fs.actions
        prior.learn(self._prior_features(fs, fv, slo, actions[arm]), math.log(exec_ms / slo))
        if not first:
            return
        for j, a in enumerate(actions):
            if j != arm and math.isfinite(b.ub[j]) and b.lb[j] > 0:
                mid = math.sqrt(b.lb[j] * b.ub[j])
                prior.learn(self._prior_features(fs, fv, slo, a), math.log(mid / slo), 0.5)

    # -- learning --------------------------------------------------------------------------

    def learn(self, ctx: DecisionContext, decision: Decision, outcome: Outcome) -> None:
        cfg = self.config
        ecfg = cfg.evidence
        spec = ctx.spec
        fs = self._fn(spec)
        pending = self._pending.pop(decision.decision_id, None)
        if pending is None:  # not decided by this agent (e.g. before a restart): re-encode
            fv = FeatureVector.of(ctx.features, cfg.tiles)
            pending = _Pending(fv, *self._keys_of(fv), COLD if outcome.cold_start else WARM)
        fv = pending.features
        fs.outcomes += 1
        fs.model_version += 1
        arm = decision.action_index
        actions = fs.actions
        if not 0 <= arm < len(actions) or (
                actions[arm].cpu_millicores != decision.size.cpu_millicores):
            return  # a decision of another grid (e.g. before a spec change): nothing to learn
        bins = []
        for k in (pending.key, pending.coarse):
            if k:
                got = fs.bins.get(k)
                if got is None:
                    got = fs.bins[k] = Bin(len(actions))
                bins.append(got)
        b = bins[0]
        memory = decision.size.memory_mib
        if outcome.status is OutcomeStatus.OOM:
            for x in bins:
                x.learn_oom(memory)
            fs.memory.learn_oom(fv, float(memory))
            return
        peak = outcome.peak_memory_mib
        if peak > 0 and math.isfinite(peak):
            fs.memory.learn(fv, peak)
            for x in bins:
                x.peak = max(x.peak, peak)
        elif outcome.status is OutcomeStatus.OK:
            for x in bins:
                x.learn_ok(memory)
        if outcome.cold_start and outcome.cold_start_ms > 0:
            c = outcome.cold_start_ms
            fs.cold_ms = c if fs.cold_ms <= 0 else fs.cold_ms + 0.2 * (c - fs.cold_ms)
            self._cold_prior = (c if self._cold_prior <= 0
                                else self._cold_prior + 0.05 * (c - self._cold_prior))
        if decision.reason == "oom-escalation" or outcome.status not in (
                OutcomeStatus.OK, OutcomeStatus.ERROR, OutcomeStatus.TIMEOUT):
            return  # the latency holds another attempt's time (or none): no run-time evidence
        if pending.flag >= COLD and pending.previewed and not outcome.cold_start:
            # the scheduler's preview said a new pod, yet none started: it waited for a busy
            # pod instead (sooner than a cold start), so its latency holds an unknown wait
            return
        exec_ms = outcome.latency_ms
        if outcome.cold_start:
            exec_ms -= outcome.cold_start_ms
        elif pending.flag == RESIZE:
            # the resize delay is the platform's: learn it across functions from classes
            # whose run time at this arm is known (measured, else its lower estimate)
            ref = math.exp(b.m[arm]) if b.n[arm] else b.lb[arm]
            if ref > 0:
                # the median of the latest samples: queueing in a full cluster makes some
                # samples huge, and one early sample must not set it for long
                window = self._resize_samples
                if len(window) >= 63:
                    window.pop(0)
                window.append(max(0.0, exec_ms - ref))
                self._resize_ms = sorted(window)[len(window) // 2]
            if self._resize_ms is None:
                return  # the resize cannot be told from the run yet
            exec_ms -= self._resize_ms
        exec_ms = max(exec_ms, 0.01)
        cpu = actions[arm].cpu_millicores
        used = (min(1.0, outcome.cpu_seconds * 1e6 / exec_ms / cpu)
                if outcome.cpu_seconds > 0 else None)
        first = not b.observed
        for x in bins:
            x.observe(arm, exec_ms, used, ecfg)
            x.refresh(actions, ecfg)
        if used is not None:
            fs.uf_mean = used if fs.uf_mean < 0 else fs.uf_mean + 0.05 * (used - fs.uf_mean)
        slo = _slo_of(ctx)
        if math.isfinite(slo):  # where the class lies, for `_heavier` (coarse ones never lend)
            b.place(work_of(fv.scaled), slo, ecfg)
        if math.isfinite(slo) and sum(b.n) <= cfg.prior_train_per_bin:
            self._teach_prior(fs, b, fv, slo, arm, exec_ms, first)
        fs.fmean_n += 1
        w = 1.0 / min(fs.fmean_n, 100)
        fmean = fs.fmean
        for k, v in fv.scaled.items():
            fmean[k] = v if k not in fmean else fmean[k] + w * (v - fmean[k])

    @property
    def cost_model(self) -> CostModel:
        """The cost it learns from (`CostAwarePolicy`): drivers log and report this one."""
        return self.config.cost_model

    # -- OOM retry -------------------------------------------------------------------------

    def escalate(self, ctx: DecisionContext, decision: Decision) -> Decision | None:
        """The same decision with the next larger memory of its arm, or None at the maximum.

        The driver retries an OOM-killed invocation once with it; it keeps the arm and its
        probability, and its outcome teaches memory (its latency holds both attempts).
        """
        current = decision.size
        actions = self._fn(ctx.spec).actions
        arm = arm_of(actions, current)
        bigger = [s for s in actions[arm].sizes
                  if s.memory_mib > current.memory_mib] if arm >= 0 else []
        if not bigger:
            return None
        decision_id = self._next_id()
        pending = self._pending.get(decision.decision_id)
        if pending is not None:
            self._remember(decision_id, pending)
        return Decision(decision_id, decision.function, bigger[0], decision.action_index,
                        decision.probability, decision.model_version, "oom-escalation",
                        explored=decision.explored, policy=self.name)

    # -- LearningPolicy --------------------------------------------------------------------

    def state(self, function: FunctionName) -> LearningState:
        fs = self._fns.get(function)
        if fs is None:
            return LearningState(0, 0, "safe-start")
        return LearningState(fs.outcomes, fs.model_version, self._phase(fs))

    def checkpoint(self, function: FunctionName) -> bytes:
        """Magic + length + JSON (the function's state and the agent's shared estimates) +
        the shared prior's VW model bytes. No pickle."""
        fs = self._fns.get(function)
        if fs is None:
            raise ConfigError(f"no model for function {function!r} to checkpoint")
        vw_bytes = self._prior.save()
        meta = {
            "function": fs.to_json(self._keys[function]), "resize_ms": self._resize_ms,
            "resize_samples": self._resize_samples,
            "cold_prior": self._cold_prior, "prior_updates": self._prior.updates,
            "vw_sha256": hashlib.sha256(vw_bytes).hexdigest(),
        }
        header = json.dumps(meta, separators=(",", ":")).encode()
        return CHECKPOINT_MAGIC + _LEN.pack(len(header)) + header + vw_bytes

    def restore(self, function: FunctionName, data: bytes) -> None:
        """Replace `function`'s state by a checkpoint (raises ConfigError when invalid).

        The shared prior and platform estimates are taken from the checkpoint when it knows
        more than this agent. If the function's grid has changed since, the next decision
        starts afresh.
        """
        meta, vw_bytes = _parse_checkpoint(data)
        try:
            f = meta["function"]
            key = [[int(c), int(g)] for c, g in f["actions"]]
            actions = tuple(Action(c, g, ()) for c, g in key)
            rng_state = f["rng"]
            rng = random.Random()
            rng.setstate((int(rng_state[0]), tuple(int(v) for v in rng_state[1]),
                          None if rng_state[2] is None else float(rng_state[2])))
            fs = FunctionState((), rng, QuantileMemoryModel.from_json(
                f["memory"], self.config.memory), self.config.cost_model)
            fs.outcomes = int(f["outcomes"])
            fs.model_version = int(f["model_version"])
            fs.cold_ms = float(f["cold_ms"])
            fs.uf_mean = float(f["uf_mean"])
            fs.fmean = {str(k): float(v) for k, v in dict(f["fmean"]).items()}
            fs.fmean_n = int(f["fmean_n"])
            fs.bins = {str(k): Bin.from_json(v, actions, self.config.evidence)
                       for k, v in dict(f["bins"]).items()}
            resize_ms = meta["resize_ms"]
            resize_samples = [float(v) for v in meta["resize_samples"]][-63:]
            cold_prior = float(meta["cold_prior"])
            prior_updates = int(meta["prior_updates"])
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ConfigError("corrupt Shabari agent checkpoint", detail=str(exc)) from exc
        _check_counters(fs, prior_updates, cold_prior)
        if prior_updates > self._prior.updates:
            try:
                prior = SharedPrior.load(vw_bytes, self.config.vw)
            except RuntimeError as exc:
                raise ConfigError("corrupt VW model in checkpoint", detail=str(exc)) from exc
            # a checksum only proves the bytes are the ones written with it: VW reads a
            # truncated model without complaint (missing weights become zeros) but saves it
            # back shorter; a whole model saves back to its own length
            resaved = len(prior.save())
            if resaved != len(vw_bytes):
                prior.close()
                raise ConfigError("corrupt VW model in checkpoint",
                                  detail=f"{len(vw_bytes)} model bytes read back as {resaved}: "
                                         "truncated or padded")
            prior.updates = prior_updates
            self._prior.close()
            self._prior = prior
            self._resize_ms = None if resize_ms is None else float(resize_ms)
            self._resize_samples = resize_samples
            self._cold_prior = cold_prior
        self._fns[function] = fs
        self._keys[function] = key


def _most_need(fs: FunctionState, ecfg: EvidenceConfig) -> float | None:
    """The most memory any of the function's classes needs now (MiB; None: none known)."""
    return max((x.memory_need(ecfg) or 0.0 for x in fs.bins.values()), default=0.0) or None


#: `explain`'s words for each `AgentConfig.fallback`
_FALLBACK_WHY: dict[str, str] = {
    "cheapest": "is the cheapest whose lower estimate does",
    "likely": "is the cheapest whose lower estimate does and whose middle estimate does too "
              "(else the lowest upper estimate)",
    "safest": "has the lowest upper estimate of those whose lower estimate does",
}

#: the note on a decision made with a neighbouring class's evidence (`_heavier`)
_BORROWED = " (heavier class)"


def _heavier(fs: FunctionState, work: float) -> Bin | None:
    """The function's observed class nearest above `work` (its inputs' mean work coordinate
    is at least as large), placed against an SLO; None when every class is lighter.

    Run time grows with input size, so the heavier neighbour's evidence bounds this input's
    from above under an absolute SLO; under a slowdown SLO the bound scales with the input,
    which the caller's SLO-ratio scaling follows. A lighter neighbour would have to be
    extrapolated, so an input heavier than every class seen is left to the prior. Only
    classes with a CPU reading lend: without one (OpenWhisk, stripped tables) a class's
    estimates away from the arms it ran are loose bounds, and borrowing them cost violations
    (bundled tables without usage columns: 11.97 % against the prior's 11.56 %)."""
    best: Bin | None = None
    for k, x in fs.bins.items():
        if x.pn and x.w >= work and not k.startswith("~") and max(x.uf) >= 0 and (
                best is None or x.w < best.w):
            best = x
    return best


#: counters beyond this are not from a real run (2**53: exact in a JSON number)
_MAX_COUNT = 1 << 53


def _check_counters(fs: FunctionState, prior_updates: int, cold_prior: float) -> None:
    """Refuse a checkpoint whose counters no run could have produced."""
    counts = {"outcomes": fs.outcomes, "model_version": fs.model_version,
              "fmean_n": fs.fmean_n, "prior_updates": prior_updates}
    for key, b in fs.bins.items():
        counts.update({f"bins[{key}].n": min(b.n, default=0), f"bins[{key}].mem_ok": b.mem_ok,
                       f"bins[{key}].mem_oom": b.mem_oom})
    problems = [f"{k} {v}" for k, v in counts.items() if not 0 <= v < _MAX_COUNT]
    # (uf_mean is -1 until a first measurement)
    reals = {"cold_ms": (fs.cold_ms, 0.0), "uf_mean": (fs.uf_mean, -1.0),
             "cold_prior": (cold_prior, 0.0)}
    problems += [f"{k} {v}" for k, (v, low) in reals.items()
                 if not (math.isfinite(v) and v >= low)]
    if problems:
        raise ConfigError("corrupt Shabari agent checkpoint",
                          detail="impossible counters: " + ", ".join(problems[:5]))


def _parse_checkpoint(data: bytes) -> tuple[dict[str, Any], bytes]:
    """Split a checkpoint into its JSON metadata and the VW model bytes (validated)."""
    if not isinstance(data, bytes | bytearray) or not data.startswith(CHECKPOINT_MAGIC):
        raise ConfigError("not a Shabari agent checkpoint (bad magic)")
    start = len(CHECKPOINT_MAGIC)
    if len(data) < start + _LEN.size:
        raise ConfigError("truncated Shabari agent checkpoint")
    (n,) = _LEN.unpack_from(data, start)
    start += _LEN.size
    try:
        meta = json.loads(bytes(data[start:start + n]))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigError("corrupt Shabari agent checkpoint", detail=str(exc)) from exc
    if not isinstance(meta, dict):
        raise ConfigError("corrupt Shabari agent checkpoint", detail="metadata not an object")
    vw_bytes = bytes(data[start + n:])
    if meta.get("vw_sha256") != hashlib.sha256(vw_bytes).hexdigest():
        raise ConfigError("corrupt VW model in checkpoint", detail="checksum mismatch")
    return meta, vw_bytes
