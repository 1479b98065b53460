"""One function's learner: the CPU/GPU bandit, the memory model, and their counters.

The bandit's actions are the distinct (CPU, GPU) pairs of the function's grid; memory is not an
action (see `memory.py`). Each action line carries the action's identity, its log2 vCPU, its
GPU count and what the warm pool means for it right now: `cold` (needs a new pod) or `resize`
(only a warm pod of another CPU fits, so its CPU would be changed in place), so the model can
learn that a cold start, or for a function of a few milliseconds even a resize, makes a size
miss the SLO. Everything here is deterministic given the function's own
seeded RNG, whose state is part of the checkpoint, so a restored model continues exactly where
the saved one stopped.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from shabari.agent.memory import MemoryConfig, QuantileMemoryModel
from shabari.agent.vw import CBModel, VWConfig
from shabari.core.errors import ConfigError
from shabari.core.spec import FunctionSpec, Size

CHECKPOINT_MAGIC = b"SHABARI-AGENT-1\n"
_LEN = struct.Struct(">I")


@dataclass(frozen=True, slots=True)
class Action:
    """One bandit arm: a CPU/GPU pair and the grid sizes (by memory) that share it."""

    cpu_millicores: int
    gpu: int
    #: sizes with this CPU/GPU, ascending memory
    sizes: tuple[Size, ...]
    #: the VW line without the cold-start flag
    line: str

    def size_for(self, memory_mib: float | None) -> Size:
        """Smallest size of this arm with at least `memory_mib` (largest when None or none)."""
        if memory_mib is not None:
            for s in self.sizes:
                if s.memory_mib >= memory_mib:
                    return s
        return self.sizes[-1]


def actions_for(spec: FunctionSpec) -> tuple[Action, ...]:
    groups: dict[tuple[int, int], list[Size]] = {}
    for s in spec.sizes:
        groups.setdefault((s.cpu_millicores, s.gpu), []).append(s)
    out = []
    for i, ((cpu, gpu), sizes) in enumerate(sorted(groups.items())):
        line = f"|A a{i} lv:{math.log2(cpu / 1000.0):.4f}" + (f" g:{gpu}" if gpu else "")
        out.append(Action(cpu, gpu, tuple(sorted(sizes, key=lambda s: s.memory_mib)), line))
    return tuple(out)


def action_key(actions: Sequence[Action]) -> list[list[int]]:
    return [[a.cpu_millicores, a.gpu] for a in actions]


class FunctionModel:
    """Bandit + memory model + counters for one function. Not thread-safe (one owner)."""

    def __init__(
        self,
        actions: tuple[Action, ...],
        rng: random.Random,
        vw_config: VWConfig,
        memory_config: MemoryConfig,
        *,
        cb: CBModel | None = None,
        memory: QuantileMemoryModel | None = None,
    ) -> None:
        self.actions = actions
        self.rng = rng
        self.vw_config = vw_config
        self.cb = cb if cb is not None else CBModel(vw_config)
        self.memory = memory if memory is not None else QuantileMemoryModel(memory_config)
        #: outcomes learned from (any status)
        self.outcomes = 0
        #: bandit updates (SquareCB's counter)
        self.bandit_updates = 0
        self.model_version = 0
        #: trust region: per similarity key (`encoding.similarity_keys`), the smallest arm
        #: index that has met the SLO on an input with that key
        self.met_floor: dict[str, int] = {}
        #: resize guard: per SLO bin, (in-place resizes learned from, of them SLO misses)
        self.resize_stats: dict[str, tuple[int, int]] = {}

    def action_lines(self, flags: Sequence[str]) -> list[str]:
        """Each arm's line plus its warm-pool flag ("" | " cold" | " resize")."""
        return [a.line + f for a, f in zip(self.actions, flags, strict=True)]

    def sample(self, pmf: Sequence[float]) -> int:
        """Draw an action index from `pmf` with this function's seeded RNG."""
        u = self.rng.random() * sum(pmf)
        acc = 0.0
        last = 0
        for i, p in enumerate(pmf):
            if p <= 0.0:
                continue
            last = i
            acc += p
            if u < acc:
                return i
        return last

    # -- checkpoint ------------------------------------------------------------------------

    def checkpoint(self) -> bytes:
        state = self.rng.getstate()
        vw_bytes = self.cb.save()
        meta: dict[str, Any] = {
            "actions": action_key(self.actions),
            "outcomes": self.outcomes,
            "bandit_updates": self.bandit_updates,
            "model_version": self.model_version,
            "memory": self.memory.to_json(),
            "met_floor": self.met_floor,
            "resize_stats": self.resize_stats,
            "rng": [state[0], list(state[1]), state[2]],
            "vw_sha256": hashlib.sha256(vw_bytes).hexdigest(),
        }
        header = json.dumps(meta, separators=(",", ":")).encode()
        return CHECKPOINT_MAGIC + _LEN.pack(len(header)) + header + vw_bytes

    @staticmethod
    def parse_checkpoint(data: bytes) -> tuple[dict[str, Any], bytes]:
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

    @classmethod
    def from_checkpoint(
        cls,
        data: bytes,
        actions: tuple[Action, ...] | None,
        vw_config: VWConfig,
        memory_config: MemoryConfig,
    ) -> tuple[FunctionModel, list[list[int]]]:
        """Rebuild a model; returns it with the action key it was saved with."""
        meta, vw_bytes = cls.parse_checkpoint(data)
        try:
            key = [[int(c), int(g)] for c, g in meta["actions"]]
            rng_state = meta["rng"]
            rng = random.Random()
            rng.setstate((int(rng_state[0]), tuple(int(v) for v in rng_state[1]),
                          None if rng_state[2] is None else float(rng_state[2])))
            memory = QuantileMemoryModel.from_json(meta["memory"], memory_config)
            outcomes = int(meta["outcomes"])
            updates = int(meta["bandit_updates"])
            version = int(meta["model_version"])
            # absent in checkpoints written before the trust region existed
            met_floor = {str(k): int(v) for k, v in meta.get("met_floor", {}).items()}
            resize_stats = {str(k): (int(v[0]), int(v[1]))
                            for k, v in meta.get("resize_stats", {}).items()}
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ConfigError("corrupt Shabari agent checkpoint", detail=str(exc)) from exc
        try:
            cb = CBModel.load(vw_bytes, vw_config)
        except RuntimeError as exc:
            raise ConfigError("corrupt VW model in checkpoint", detail=str(exc)) from exc
        model = cls(actions or (), rng, vw_config, memory_config, cb=cb, memory=memory)
        model.outcomes = outcomes
        model.bandit_updates = updates
        model.model_version = version
        model.met_floor = met_floor
        model.resize_stats = resize_stats
        return model, key
