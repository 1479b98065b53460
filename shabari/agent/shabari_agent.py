"""The Shabari learning agent: per-invocation CPU/GPU by contextual bandit, memory by quantile.

For every function (model created lazily on its first decision):

1. Safe start: until `safe_start_outcomes` outcomes are in, run the declared safe size
   (`spec.safe_default`) and learn from what happens (probability 1).
2. Then a VW SquareCB bandit (`vw.py`) picks the (CPU, GPU) pair from the input's features and
   the warm-pool state, sampling from its pmf with the function's own seeded RNG. Arms the
   model already estimates to cost more than `mask_gap` above the best one (a whole SLO
   violation worse) get probability zero: we never explore sizes predicted to miss by far.
   An arm that needs an in-place resize loses its mass to an idle warm pod's arm once this
   function's resizes have missed the SLO (`_guard_resize`: a 50 ms resize is fatal to a
   function of a few milliseconds).
3. Memory is never explored: the smallest grid memory at or above the high-quantile prediction
   of `memory.py` (the largest memory until that model has enough samples).
4. `learn` computes the cost once, with `shabari.core.cost.cost` against `ctx.slo_ms` (or the
   spec's absolute SLO), and updates the bandit; peaks go to the memory model. An OOM is the
   memory's fault, not the CPU's: it only teaches the memory model (a strong push up), and
   `escalate` gives the driver the same decision with the next larger memory for its one retry.

Decisions are reproducible: the same seed and the same sequence of calls give the same
decisions, because every random draw comes from a per-function RNG seeded from (seed, name).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from shabari.agent.bandit import FunctionModel, action_key, actions_for
from shabari.agent.encoding import FeatureVector, shared_line, similarity_keys
from shabari.agent.memory import MemoryConfig
from shabari.agent.policy import LearningState, Phase
from shabari.agent.vw import VWConfig
from shabari.core.context import DecisionContext
from shabari.core.cost import DEFAULT_COST, CostModel, cost
from shabari.core.errors import ConfigError
from shabari.core.ids import DecisionId, FunctionName
from shabari.core.spec import FunctionSpec, Size
from shabari.core.types import Decision, Outcome, OutcomeStatus


@dataclass(frozen=True, slots=True)
class AgentConfig:
    #: outcomes to collect at the safe size before the bandit takes over
    safe_start_outcomes: int = 40
    #: outcomes after which the function's phase is reported as "learned"
    learned_after: int = 300
    #: arms estimated this much costlier than the best get probability 0 (1.0 = one violation)
    mask_gap: float = 1.0
    #: tile-coding resolution: bins per unit of ln(1 + feature)
    tiles: float = 2.0
    vw: VWConfig = field(default_factory=VWConfig)
    memory: MemoryConfig = field(default_factory=MemoryConfig)
    cost_model: CostModel = DEFAULT_COST
    #: during the safe start, also teach one smaller arm per outcome what the safe outcome
    #: implies for it (see ShabariAgent._impute)
    safe_start_imputation: bool = True
    #: ... and when the safe size met the SLO, teach the smaller arm a violation (a pessimistic
    #: prior): fewer early violations, much slower discovery of small sizes (docs/agent.md)
    pessimistic_imputation: bool = False
    #: decisions awaiting their outcome whose encoded lines are kept (older ones re-encode)
    pending_limit: int = 10_000
    #: trust region: explore at most this many arms below the smallest arm known to meet the
    #: SLO for similar inputs (the safe default's arm until one is known); None: no limit
    trust_steps: int | None = 1
    #: resize guard: once this many in-place resizes of the function have been learned from,
    #: stop resizing (run on an idle warm pod of an adequate size instead) while more than
    #: `resize_max_violation` of them missed the SLO; None: never guard
    resize_probes: int | None = 1
    resize_max_violation: float = 0.1
    #: count resizes per SLO bin (True) or per function (False)
    resize_by_slo: bool = False

    def __post_init__(self) -> None:
        if self.safe_start_outcomes < 0:
            raise ConfigError(f"safe_start_outcomes must be >= 0, got {self.safe_start_outcomes}")
        if self.mask_gap <= 0:
            raise ConfigError(f"mask_gap must be > 0, got {self.mask_gap}")
        if self.tiles <= 0:
            raise ConfigError(f"tiles must be > 0, got {self.tiles}")
        if self.resize_probes is not None and self.resize_probes < 0:
            raise ConfigError(f"resize_probes must be >= 0 or None, got {self.resize_probes}")
        if not 0.0 <= self.resize_max_violation <= 1.0:
            raise ConfigError(f"resize_max_violation must be in [0, 1], "
                              f"got {self.resize_max_violation}")
        if self.trust_steps is not None and self.trust_steps < 0:
            raise ConfigError(f"trust_steps must be >= 0 or None, got {self.trust_steps}")


@dataclass(slots=True)
class _Encoded:
    """What `decide` computed that `learn` needs again (kept per pending decision)."""

    features: FeatureVector
    shared: str
    actions: list[str]
    #: the input's similarity keys (trust region)
    keys: tuple[str, ...]
    #: the warm-pool flag of each arm ("" | " cold" | " resize")
    flags: list[str]
    #: the SLO bin the resize guard keeps its counts under
    slo_key: str


def _safe_index(model: FunctionModel, spec: FunctionSpec) -> int:
    """The arm of the spec's safe default size."""
    safe = spec.safe_default
    return next(i for i, a in enumerate(model.actions)
                if a.cpu_millicores == safe.cpu_millicores and a.gpu == safe.gpu)


def _known_floor(model: FunctionModel, keys: tuple[str, ...], safe_index: int) -> int:
    """The smallest arm known to meet the SLO for inputs like this one (trust region).

    The largest of the input's keys' floors; a key never seen meeting the SLO counts as the
    safe default's arm.
    """
    floors = model.met_floor
    return max(floors.get(k, safe_index) for k in keys)


class ShabariAgent:
    """The `shabari` policy (implements `Policy` and `LearningPolicy`)."""

    name = "shabari"

    def __init__(self, seed: int, config: AgentConfig | None = None) -> None:
        self.seed = seed
        self.config = config if config is not None else AgentConfig()
        self._models: dict[FunctionName, FunctionModel] = {}
        self._action_keys: dict[FunctionName, list[list[int]]] = {}
        self._pending: dict[DecisionId, _Encoded] = {}
        self._ids = 0
        self._id_prefix = f"sh{random.Random(seed).getrandbits(32):08x}"

    # -- model lookup ----------------------------------------------------------------------

    def _model(self, spec: FunctionSpec) -> FunctionModel:
        model = self._models.get(spec.name)
        if model is not None and model.actions:
            return model
        actions = actions_for(spec)
        if model is not None and self._action_keys.get(spec.name) == action_key(actions):
            model.actions = actions  # a restored model meets its spec
            return model
        rng = random.Random(f"{self.seed}:{spec.name}")
        model = FunctionModel(actions, rng, self.config.vw, self.config.memory)
        self._models[spec.name] = model
        self._action_keys[spec.name] = action_key(actions)
        return model

    def _next_id(self) -> DecisionId:
        self._ids += 1
        return DecisionId(f"{self._id_prefix}-{self._ids}")

    def _phase(self, model: FunctionModel) -> Phase:
        if model.outcomes < self.config.safe_start_outcomes:
            return "safe-start"
        if model.outcomes < self.config.learned_after:
            return "exploring"
        return "learned"

    def _encode(self, ctx: DecisionContext, model: FunctionModel, fv: FeatureVector,
                memory: float | None) -> _Encoded:
        warm = ctx.warm_idle
        if warm:
            # the most memory a warm pod of each exact (CPU, GPU) offers: no resize needed
            exact: dict[tuple[int, int], int] = {}
            for w in warm:
                key = (w.cpu_millicores, w.gpu)
                if w.memory_mib > exact.get(key, 0):
                    exact[key] = w.memory_mib
            flags = []
            for a in model.actions:
                size = a.size_for(memory)
                if ctx.would_cold_start(size):
                    flags.append(" cold")
                elif (not ctx.supports_resize
                      or exact.get((size.cpu_millicores, size.gpu), 0) >= size.memory_mib):
                    flags.append("")  # an exact warm pod, or a bigger one used as it is
                else:
                    flags.append(" resize")
        else:
            flags = [" cold"] * len(model.actions)
        tiles = self.config.tiles
        slo = ctx.slo_ms
        slo_key = (str(math.floor(math.log1p(slo) * tiles))
                   if self.config.resize_by_slo and slo is not None and slo > 0
                   and math.isfinite(slo) else "*")
        return _Encoded(fv, shared_line(fv, slo, tiles), model.action_lines(flags),
                        similarity_keys(fv, slo, tiles), flags, slo_key)

    def _encode_fresh(self, ctx: DecisionContext, model: FunctionModel) -> _Encoded:
        fv = FeatureVector.of(ctx.features, self.config.tiles)
        return self._encode(ctx, model, fv, model.memory.predict_mib(fv))

    def _remember(self, decision_id: DecisionId, enc: _Encoded) -> None:
        pending = self._pending
        if len(pending) >= self.config.pending_limit:
            del pending[next(iter(pending))]
        pending[decision_id] = enc

    # -- Policy ----------------------------------------------------------------------------

    def decide(self, ctx: DecisionContext) -> Decision:
        spec = ctx.spec
        model = self._model(spec)
        fv = FeatureVector.of(ctx.features, self.config.tiles)
        memory = model.memory.predict_mib(fv)
        enc = self._encode(ctx, model, fv, memory)
        decision_id = self._next_id()
        self._remember(decision_id, enc)
        safe = spec.safe_default
        safe_index = _safe_index(model, spec)
        if model.outcomes < self.config.safe_start_outcomes:
            index = safe_index
            size = safe
            if memory is not None and memory > safe.memory_mib:
                size = model.actions[index].size_for(memory)
            return Decision(decision_id, spec.name, size, index, 1.0, model.model_version,
                            "safe-start", explored=False, policy=self.name)
        pmf = self._mask(model.cb.predict(enc.shared, enc.actions), model)
        if self.config.trust_steps is not None:
            pmf = self._trust(pmf, model, enc.keys, safe_index, self.config.trust_steps)
        if self.config.resize_probes is not None and " resize" in enc.flags:
            pmf = self._guard_resize(pmf, model, enc, safe_index)
        index = model.sample(pmf)
        probability = pmf[index] / sum(pmf)
        best = max(range(len(pmf)), key=pmf.__getitem__)
        size = model.actions[index].size_for(memory)
        mem_note = "" if memory is not None else " mem=max"
        return Decision(decision_id, spec.name, size, index, probability, model.model_version,
                        f"bandit p={probability:.2f}{mem_note}", explored=index != best,
                        policy=self.name)

    def _mask(self, pmf: list[float], model: FunctionModel) -> list[float]:
        """Zero the arms SquareCB's pmf says are estimated > mask_gap worse than the best.

        SquareCB gives a non-best arm p = 1 / (K + gamma * gap), so gap > mask_gap exactly
        when p < 1 / (K + gamma * mask_gap); gamma follows VW's own update counter.
        """
        if model.bandit_updates == 0:
            return pmf
        k = len(pmf)
        floor = 1.0 / (k + self.config.vw.gamma(model.bandit_updates) * self.config.mask_gap)
        masked = [p if p >= floor else 0.0 for p in pmf]
        return masked if sum(masked) > 0 else pmf

    @staticmethod
    def _trust(pmf: list[float], model: FunctionModel, keys: tuple[str, ...],
               safe_index: int, steps: int) -> list[float]:
        """Zero the arms more than `steps` below the smallest arm known to meet the SLO.

        "Known" is per similarity key: the floor of an input is the largest of its keys'
        floors (a key not seen meeting the SLO yet counts as the safe default's arm), so the
        bandit walks down the grid one step per success instead of trying sizes it knows
        nothing about (VW's estimate for an untried arm is 0, i.e. optimistic).
        """
        lo = _known_floor(model, keys, safe_index) - steps
        if lo <= 0:
            return pmf
        trusted = [p if i >= lo else 0.0 for i, p in enumerate(pmf)]
        if sum(trusted) > 0:
            return trusted
        return [1.0 if i == lo else 0.0 for i in range(len(pmf))]

    def _guard_resize(self, pmf: list[float], model: FunctionModel, enc: _Encoded,
                      safe_index: int) -> list[float]:
        """Move the mass of arms that need an in-place resize to an idle warm pod's arm,
        when resizes have been missing the SLO for this function (or SLO bin).

        A resize costs an absolute delay (50 ms in the simulator), which a function of a few
        milliseconds cannot absorb and a function of seconds does not notice; the agent
        cannot know the backend's delay, so it counts: after `resize_probes` resizes,
        resizing stops while more than `resize_max_violation` of them missed. Once it stops,
        only resizes with no warm alternative add to the count, so the verdict is sticky.
        Each resize arm's mass goes to the smallest arm with an idle warm pod of exactly its
        size (no resize) that is not slower (at least the CPU, same GPUs) or is known to meet
        the SLO for similar inputs (at or above the trust region's floor); with none, it stays.
        The result is still a pmf, so the chosen arm's probability stays honest for IPS.
        """
        cfg = self.config
        n, missed = model.resize_stats.get(enc.slo_key, (0, 0))
        if n < (cfg.resize_probes or 0) or missed <= cfg.resize_max_violation * n:
            return pmf
        actions = model.actions
        flags = enc.flags
        known = _known_floor(model, enc.keys, safe_index)
        out = list(pmf)
        for i, p in enumerate(pmf):
            if p <= 0.0 or flags[i] != " resize":
                continue
            a = actions[i]
            target = next((j for j, b in enumerate(actions)
                           if flags[j] == "" and b.gpu == a.gpu
                           and (b.cpu_millicores >= a.cpu_millicores or j >= known)), None)
            if target is not None:
                out[i] = 0.0
                out[target] += p
        return out

    def learn(self, ctx: DecisionContext, decision: Decision, outcome: Outcome) -> None:
        spec = ctx.spec
        model = self._model(spec)
        enc = self._pending.pop(decision.decision_id, None)
        if enc is None:
            enc = self._encode_fresh(ctx, model)
        model.outcomes += 1
        model.model_version += 1
        size = decision.size
        if outcome.status is OutcomeStatus.OOM:
            model.memory.learn_oom(enc.features, float(size.memory_mib))
            return
        if outcome.peak_memory_mib > 0:
            model.memory.learn(enc.features, outcome.peak_memory_mib)
        if not 0 <= decision.action_index < len(model.actions):
            return  # a decision of another grid (e.g. before a spec change): nothing to learn
        slo = ctx.slo_ms if ctx.slo_ms is not None else spec.slo.latency_ms
        if slo is not None and not (slo > 0 and math.isfinite(slo)):
            slo = None  # a broken bound (NaN, <= 0) from the driver: judge failures only
        c = cost(size, outcome, slo if slo is not None else math.inf,
                 spec.largest,
                 self.config.cost_model)
        model.cb.learn(enc.shared, enc.actions, decision.action_index, c,
                       decision.probability)
        model.bandit_updates += 1
        met = outcome.status is OutcomeStatus.OK and (slo is None or outcome.latency_ms <= slo)
        if enc.flags[decision.action_index] == " resize":
            n, missed = model.resize_stats.get(enc.slo_key, (0, 0))
            model.resize_stats[enc.slo_key] = (n + 1, missed + (not met))
        if met:
            floors = model.met_floor
            index = decision.action_index
            for k in enc.keys:
                if floors.get(k, index + 1) > index:
                    floors[k] = index
        if decision.reason == "safe-start" and self.config.safe_start_imputation:
            self._impute(model, enc, decision, outcome, slo, spec.largest)

    def _impute(self, model: FunctionModel, enc: _Encoded, decision: Decision,
                outcome: Outcome, slo: float | None, largest: Size) -> None:
        """Teach one smaller arm (round robin) what the safe size's outcome implies for it.

        A smaller CPU (same or fewer GPUs) is never faster. So if the safe size missed the SLO,
        the smaller arm misses it at least as badly: its cost from the same outcome is a sure
        lower bound, and the bandit need not pay a violation to find out. If the safe size met
        the SLO nothing is known; with `pessimistic_imputation` the arm is taught a violation
        anyway (VW's initial estimate for an unseen arm is 0, i.e. optimistic).
        """
        safe = decision.size
        smaller = [i for i, a in enumerate(model.actions)
                   if i != decision.action_index and a.cpu_millicores <= safe.cpu_millicores
                   and a.gpu <= safe.gpu]
        if not smaller:
            return
        index = smaller[model.outcomes % len(smaller)]
        size = model.actions[index].size_for(float(safe.memory_mib))
        cm = self.config.cost_model
        bound = slo if slo is not None else math.inf
        if outcome.status is OutcomeStatus.OK and outcome.latency_ms > bound:
            c = cost(size, outcome, bound, largest, cm)
        elif self.config.pessimistic_imputation:
            c = cm.violation + cm.allocation * cm.allocation_units(size) / max(
                cm.allocation_units(largest), 1e-9)
        else:
            return
        model.cb.learn(enc.shared, enc.actions, index, c, 1.0)
        model.bandit_updates += 1

    # -- OOM retry -------------------------------------------------------------------------

    def escalate(self, ctx: DecisionContext, decision: Decision) -> Decision | None:
        """The same decision with the next larger memory of its arm, or None at the maximum.

        The driver retries an OOM-killed invocation once with it; it keeps the arm and its
        probability, so learning from the retry's outcome is an ordinary bandit update.
        """
        current = decision.size
        bigger = sorted(
            (s for s in ctx.spec.sizes
             if s.cpu_millicores == current.cpu_millicores and s.gpu == current.gpu
             and s.memory_mib > current.memory_mib),
            key=lambda s: s.memory_mib,
        )
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
        model = self._models.get(function)
        if model is None:
            return LearningState(0, 0, "safe-start")
        return LearningState(model.outcomes, model.model_version, self._phase(model))

    def checkpoint(self, function: FunctionName) -> bytes:
        """VW model bytes + JSON (memory model, counters, RNG state); no pickle."""
        model = self._models.get(function)
        if model is None:
            raise ConfigError(f"no model for function {function!r} to checkpoint")
        return model.checkpoint()

    def restore(self, function: FunctionName, data: bytes) -> None:
        """Replace `function`'s model by a checkpoint (raises ConfigError when invalid).

        If the function's grid has changed since, the next decision starts a fresh model.
        """
        model, key = FunctionModel.from_checkpoint(data, None, self.config.vw,
                                                   self.config.memory)
        old = self._models.get(function)
        if old is not None:
            old.cb.close()
        self._models[function] = model
        self._action_keys[function] = key
